package frontdoor

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// Set is one loaded backends file. It never changes; a reload makes a new
// one (Door swaps them).
type Set struct {
	byHash   map[[32]byte]*Backend
	byName   map[string]*Backend
	backends int
	admins   int
}

// Backend is one entry of the file, ready for requests.
type Backend struct {
	Name  string
	Admin bool
	// Rate and Burst are the quota; Rate 0 means none.
	Rate  float64
	Burst int

	limiter *rate.Limiter // nil without a quota
	exact   map[string]bool
	prefix  []string
	all     bool
	hashes  [][32]byte
}

func newSet(entries []Entry) *Set {
	s := &Set{byHash: map[[32]byte]*Backend{}, byName: map[string]*Backend{}}
	for _, e := range entries {
		b := &Backend{Name: e.Name, Admin: e.Admin, Rate: e.Rate, Burst: e.Burst, exact: map[string]bool{}, all: len(e.Tables) == 0}
		if b.Rate > 0 {
			if b.Burst == 0 {
				b.Burst = max(1, int(math.Ceil(b.Rate)))
			}
			b.limiter = rate.NewLimiter(rate.Limit(b.Rate), b.Burst)
		}
		for _, t := range e.Tables {
			if p, ok := strings.CutSuffix(t, "*"); ok {
				if p == "" {
					b.all = true
				}
				b.prefix = append(b.prefix, p)
			} else {
				b.exact[t] = true
			}
		}
		for _, k := range e.Keys {
			h := hashOf(k.SHA256)
			b.hashes = append(b.hashes, h)
			s.byHash[h] = b
		}
		s.byName[b.Name] = b
		if b.Admin {
			s.admins++
		} else {
			s.backends++
		}
	}
	return s
}

// keepBuckets carries the token buckets of unchanged quotas over from old,
// so that a reload does not hand every backend a fresh burst.
func (s *Set) keepBuckets(old *Set) {
	if old == nil {
		return
	}
	for name, b := range s.byName {
		if o, ok := old.byName[name]; ok && o.limiter != nil && o.Rate == b.Rate && o.Burst == b.Burst {
			b.limiter = o.limiter
		}
	}
}

// Counts are how many backends and admin entries the set has.
func (s *Set) Counts() (backends, admins int) { return s.backends, s.admins }

// Backend is the entry named name, or nil.
func (s *Set) Backend(name string) *Backend { return s.byName[name] }

// Errors of Authenticate, for the client: they say what to send, never
// which keys exist.
var (
	ErrNoKey        = errors.New("missing API key: send Authorization: Bearer <key> or X-API-Key: <key>")
	ErrMalformedKey = errors.New("malformed Authorization header: want Bearer <key>")
	ErrUnknownKey   = errors.New("unknown API key")
)

// Authenticate finds the entry whose key r presents. The key is hashed
// once and looked up by its hash; the hash is then compared in constant
// time, so that no timing tells how much of a guess was right (the map's
// own comparison sees only SHA-256 outputs, which a guesser cannot steer).
func (s *Set) Authenticate(r *http.Request) (*Backend, error) {
	key, err := presentedKey(r)
	if err != nil {
		return nil, err
	}
	h := hashKey(key)
	b := s.byHash[h]
	if b == nil {
		return nil, ErrUnknownKey
	}
	for _, k := range b.hashes {
		if subtle.ConstantTimeCompare(k[:], h[:]) == 1 {
			return b, nil
		}
	}
	return nil, ErrUnknownKey
}

// hashKey hashes a presented key without allocating: keys gatekeeper
// makes are 55 bytes, copied to the stack; a longer string (not a key of
// ours) takes the allocating path.
func hashKey(key string) [32]byte {
	var buf [128]byte
	if len(key) <= len(buf) {
		n := copy(buf[:], key)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(key))
}

func presentedKey(r *http.Request) (string, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, key, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" || strings.ContainsAny(key, " \t") {
			return "", ErrMalformedKey
		}
		return key, nil
	}
	if key := r.Header.Get("X-API-Key"); key != "" {
		return key, nil
	}
	return "", ErrNoKey
}

// Refused lists the tables of a payload the backend may not write, sorted;
// nil when it may write them all.
func (b *Backend) Refused(tables []string) []string {
	if b.all {
		return nil
	}
	var refused []string
	for _, t := range tables {
		if !b.mayWrite(t) {
			refused = append(refused, t)
		}
	}
	sort.Strings(refused)
	return refused
}

func (b *Backend) mayWrite(table string) bool {
	if b.exact[table] {
		return true
	}
	for _, p := range b.prefix {
		if strings.HasPrefix(table, p) {
			return true
		}
	}
	return false
}

// Verdict is a quota's answer to one request.
type Verdict struct {
	// Allowed: a token was taken.
	Allowed bool
	// Remaining is the whole tokens left after this request.
	Remaining int
	// Wait is how long until the next token.
	Wait time.Duration
	// Full is how long until the bucket is full again; Limited says the
	// backend has a quota at all (else Remaining, Wait and Full are 0).
	Full    time.Duration
	Limited bool
}

// Take takes one token from the backend's bucket. A backend without a
// quota is always allowed.
func (b *Backend) Take(now time.Time) Verdict {
	if b.limiter == nil {
		return Verdict{Allowed: true}
	}
	if b.limiter.AllowN(now, 1) {
		tokens := b.limiter.TokensAt(now)
		return Verdict{Allowed: true, Limited: true, Remaining: int(tokens), Full: b.untilFull(tokens)}
	}
	tokens := b.limiter.TokensAt(now)
	wait := time.Duration((1 - tokens) / b.Rate * float64(time.Second))
	return Verdict{Limited: true, Remaining: max(0, int(tokens)), Wait: max(wait, 0), Full: b.untilFull(tokens)}
}

// untilFull is how long the bucket, holding tokens, takes to fill.
func (b *Backend) untilFull(tokens float64) time.Duration {
	return max(0, time.Duration((float64(b.Burst)-tokens)/b.Rate*float64(time.Second)))
}

// Window is the quota's window in whole seconds: how long an empty bucket
// takes to fill, at least 1.
func (b *Backend) Window() int {
	if b.Rate <= 0 {
		return 0
	}
	return max(1, int(math.Ceil(float64(b.Burst)/b.Rate)))
}
