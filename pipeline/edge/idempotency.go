package edge

import (
	"container/list"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/gatekeeper/gatekeeper/messages"
)

// IdempotencyNamespace is the UUID namespace payload ids are derived under
// from an Idempotency-Key: the id is UUIDv5(IdempotencyNamespace, backend
// + NUL + key). It is fixed forever: changing it would give a retry after an
// upgrade a new id, and the ledger would apply it twice.
var IdempotencyNamespace = uuid.MustParse("954b5284-fb5d-4836-b835-59c5707e832f")

// MaxIdempotencyKeyLength is the longest Idempotency-Key accepted, in bytes.
const MaxIdempotencyKeyLength = 255

// IdempotentPayloadID is the payload id of backend's requests with key.
// Every ingestion process derives the same one, so a retry that reaches
// another process is still a duplicate in the ledger.
func IdempotentPayloadID(backend, key string) string {
	return uuid.NewSHA1(IdempotencyNamespace, []byte(backend+"\x00"+key)).String()
}

// KeyError is a malformed Idempotency-Key header: 400.
type KeyError struct{ Reason string }

func (e *KeyError) Error() string { return "Idempotency-Key " + e.Reason }

// ErrKeyInFlight is the answer to a key whose first request is still being
// published here: 409. The client retries once that one has its answer.
var ErrKeyInFlight = errors.New("a request with this Idempotency-Key is still being processed; retry when it has its answer")

// ErrKeyReused is the answer to a key this process accepted for a
// different payload: 422.
var ErrKeyReused = errors.New("this Idempotency-Key was used for a different payload; use a new key for new content")

// parseIdempotencyKey reads the header's values: none is no key; one, bare
// (as Stripe's clients send it) or as the draft's Structured Field string
// ("..."), of 1 to MaxIdempotencyKeyLength printable ASCII characters.
func parseIdempotencyKey(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", &KeyError{Reason: "must be sent once"}
	}
	key := values[0]
	if len(key) >= 2 && key[0] == '"' && key[len(key)-1] == '"' {
		unquoted, ok := unquoteSFString(key[1 : len(key)-1])
		if !ok {
			return "", &KeyError{Reason: `is not a valid quoted string: inside the quotes, only \" and \\ may be escaped`}
		}
		key = unquoted
	}
	switch {
	case key == "":
		return "", &KeyError{Reason: "must not be empty"}
	case len(key) > MaxIdempotencyKeyLength:
		return "", &KeyError{Reason: fmt.Sprintf("must be at most %d characters, got %d", MaxIdempotencyKeyLength, len(key))}
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", &KeyError{Reason: fmt.Sprintf("must be printable ASCII; byte %d is 0x%02x", i, key[i])}
		}
	}
	return key, nil
}

// unquoteSFString undoes a Structured Field string's escapes (RFC 8941
// 3.3.3): \" and \\ only, and no bare quote.
func unquoteSFString(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			if i+1 == len(s) || (s[i+1] != '"' && s[i+1] != '\\') {
				return "", false
			}
			i++
			b.WriteByte(s[i])
		case c == '"':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// keyRecord remembers, per payload id derived from a key, whether its
// first request is being published (in flight) or was accepted with which
// payload hash (done), for the fast answers: 409, 422, and 200 replayed.
// It is an optimisation, not what makes a retry safe: the ledger is, in
// every process and across restarts.
//
// Done entries live for ttl and at most max are kept; the oldest goes
// first, so the bound only shortens how long keys are remembered. In-flight
// entries are not counted: each is one request the HTTP server is serving.
type keyRecord struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*keyEntry
	done    list.List // of *keyEntry, oldest first
}

type keyEntry struct {
	id      string
	hash    string // "" while in flight
	expires time.Time
	elem    *list.Element
}

func newKeyRecord(ttl time.Duration, max int, now func() time.Time) *keyRecord {
	return &keyRecord{ttl: ttl, max: max, now: now, entries: map[string]*keyEntry{}}
}

// keyState is what the record knows of an id when a request arrives.
type keyState int

const (
	keyNew      keyState = iota // unknown: the request goes on and holds the claim
	keyInFlight                 // its first request is still being handled
	keyDone                     // accepted, with the hash begin returns
)

// begin looks id up and, when unknown, claims it for this request: the
// claim returned must be finished or abandoned.
func (r *keyRecord) begin(id string) (keyState, string, *keyEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire()
	if e, ok := r.entries[id]; ok {
		if e.hash == "" {
			return keyInFlight, "", nil
		}
		return keyDone, e.hash, nil
	}
	e := &keyEntry{id: id}
	r.entries[id] = e
	return keyNew, "", e
}

// finish records the verdict on claim's request: accepted with hash, it is
// remembered for ttl; anything else forgets the key, so that the client's
// retry (after a 503, say) is handled in full.
func (r *keyRecord) finish(claim *keyEntry, hash string, accepted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries[claim.id] != claim || claim.hash != "" {
		return
	}
	if !accepted || hash == "" {
		delete(r.entries, claim.id)
		return
	}
	claim.hash, claim.expires = hash, r.now().Add(r.ttl)
	claim.elem = r.done.PushBack(claim)
	for r.done.Len() > r.max {
		r.drop(r.done.Front())
	}
}

// abandon forgets claim if its request never got a verdict.
func (r *keyRecord) abandon(claim *keyEntry) {
	r.finish(claim, "", false)
}

// expire drops the done entries past their time. r.mu is held.
func (r *keyRecord) expire() {
	now := r.now()
	for f := r.done.Front(); f != nil && !now.Before(f.Value.(*keyEntry).expires); f = r.done.Front() {
		r.drop(f)
	}
}

func (r *keyRecord) drop(elem *list.Element) {
	e := r.done.Remove(elem).(*keyEntry)
	delete(r.entries, e.id)
}

// len is how many keys are remembered, in flight or done.
func (r *keyRecord) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// idempotencyRefusal maps the key errors to their statuses and rules.
func idempotencyRefusal(err error) (refusal, bool) {
	var bad *KeyError
	switch {
	case errors.As(err, &bad):
		return refusal{400, "Invalid Idempotency-Key", []messages.Problem{{Message: bad.Error()}},
			[]messages.Rule{messages.RuleIdempotencyKey}, nil}, true
	case errors.Is(err, ErrKeyInFlight):
		return refusal{409, "Conflict", []messages.Problem{{Message: err.Error()}},
			[]messages.Rule{messages.RuleIdempotencyInFlight}, nil}, true
	case errors.Is(err, ErrKeyReused):
		return refusal{422, "Unprocessable Content", []messages.Problem{{Message: err.Error()}},
			[]messages.Rule{messages.RuleIdempotencyMismatch}, nil}, true
	}
	return refusal{}, false
}
