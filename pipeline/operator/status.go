package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// StatusPath is where a backend asks what became of one payload.
const StatusPath = "/api/activities/{id}"

// PayloadStatus is the answer to GET /api/activities/{id}.
type PayloadStatus struct {
	ID           string       `json:"id"`
	Status       string       `json:"status"`
	ReceivedAt   *time.Time   `json:"received_at"`
	AppliedAt    *time.Time   `json:"applied_at"`
	Tables       []string     `json:"tables"`
	RowsAffected *int64       `json:"rows_affected"`
	Error        *StatusError `json:"error"`
	Replays      int          `json:"replays"`

	// backend sent the payload, as far as this process knows: "" when
	// unauthenticated or unknown (an applied payload another process
	// accepted: the ledger does not record it).
	backend string
}

// StatusError is why a payload was poisoned.
type StatusError struct {
	Class  string `json:"class"`
	Reason string `json:"reason"`
}

// final reports whether the status can no longer change: an applied
// payload stays applied, and a purged one is never replayed.
func (p PayloadStatus) final() bool {
	return p.Status == messages.StatusApplied || p.Status == messages.StatusPurged
}

// Status is what the warehouse knows about one payload, in one indexed
// read. It cannot know that a payload was accepted and is on its way; the
// process that accepted it can (Status.Lookup).
func (c *Console) Status(ctx context.Context, payloadID string) (PayloadStatus, error) {
	st, err := c.store.State(ctx, payloadID)
	if err != nil {
		return PayloadStatus{}, fmt.Errorf("read the warehouse: %w", err)
	}
	return statusOf(payloadID, st), nil
}

func statusOf(id string, st warehouse.PayloadState) PayloadStatus {
	p := PayloadStatus{ID: id, Status: messages.StatusUnknown, Tables: []string{}}
	if e := st.Entry; e != nil {
		p.Replays = e.Replays
		p.ReceivedAt = timePtr(e.Poisoned.ReceivedAt)
		p.backend = e.Poisoned.Attributes[messages.MetaBackend]
		if e.Poisoned.Tables != nil {
			p.Tables = e.Poisoned.Tables
		}
		switch e.State {
		case warehouse.EventPoisoned:
			p.Status = messages.StatusPoisoned
		case warehouse.EventPurged:
			p.Status = messages.StatusPurged
		case warehouse.EventReplayed:
			p.Status = messages.StatusAccepted
		}
		if e.State != warehouse.EventReplayed {
			p.Error = &StatusError{Class: e.Poisoned.ErrorClass, Reason: e.Poisoned.Reason}
		}
	}
	if st.Applied {
		p.Status, p.Error = messages.StatusApplied, nil
		p.AppliedAt = timePtr(st.AppliedAt)
		if st.RowsAffected >= 0 {
			n := st.RowsAffected
			p.RowsAffected = &n
		}
	}
	return p
}

// recentPayloads is what an ingestion process remembers without asking
// the warehouse: the payloads it accepted lately (for "accepted", which no
// warehouse knows), and the final statuses it was asked about (so a
// backend polling an applied payload costs no read). Both are bounded;
// the oldest go first.
type recentPayloads struct {
	mu       sync.Mutex
	received map[string]received
	order    []string
	next     int
	final    map[string]PayloadStatus
	forder   []string
	fnext    int
}

// received is when an accepted payload arrived, and from which backend.
type received struct {
	at      time.Time
	backend string
}

const recentCapacity = 100_000

func newRecentPayloads() *recentPayloads {
	return &recentPayloads{
		received: make(map[string]received), order: make([]string, 0, 1024),
		final: make(map[string]PayloadStatus), forder: make([]string, 0, 1024),
	}
}

func (r *recentPayloads) accepted(id string, at time.Time, backend string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.order, r.next = remember(r.received, r.order, r.next, id)
	r.received[id] = received{at, backend}
}

func (r *recentPayloads) receivedAt(id string) (received, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.received[id]
	return rec, ok
}

func (r *recentPayloads) cached(id string) (PayloadStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.final[id]
	return p, ok
}

func (r *recentPayloads) keep(p PayloadStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forder, r.fnext = remember(r.final, r.forder, r.fnext, p.ID)
	r.final[p.ID] = p
}

// remember adds id to a ring of at most recentCapacity keys, evicting the
// oldest key from m when the ring is full.
func remember[V any](m map[string]V, ring []string, next int, id string) ([]string, int) {
	if _, ok := m[id]; ok {
		return ring, next
	}
	if len(ring) < recentCapacity {
		return append(ring, id), next
	}
	delete(m, ring[next])
	ring[next] = id
	return ring, (next + 1) % recentCapacity
}

// StatusConfig is where a Status looks a payload up.
type StatusConfig struct {
	// Console reads the warehouse, asked for on each lookup the memory
	// cannot answer, so that a process may open its warehouse on first
	// use. Required.
	Console func(ctx context.Context) (*Console, error)
}

// Validate reports every problem of c at once.
func (c StatusConfig) Validate() error {
	var errs []error
	if c.Console == nil {
		errs = append(errs, errors.New("status: Console is required"))
	}
	return errors.Join(errs...)
}

// Status is GET /api/activities/{id}: what became of one payload, from
// what this process remembers and what the warehouse knows.
type Status struct {
	cfg    StatusConfig
	logger *slog.Logger
	recent *recentPayloads
}

// NewStatus validates cfg and returns a Status that remembers nothing yet.
func NewStatus(cfg StatusConfig, logger *slog.Logger) (*Status, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Status{cfg: cfg, logger: logger, recent: newRecentPayloads()}, nil
}

// Accepted remembers that this process accepted the payload id at at, from
// backend (empty without authentication): no warehouse knows that.
func (s *Status) Accepted(id string, at time.Time, backend string) {
	s.recent.accepted(id, at, backend)
}

// Lookup answers for one payload: from the cache when final, else from the
// warehouse, completed with what this process accepted.
func (s *Status) Lookup(ctx context.Context, id string) (PayloadStatus, error) {
	if p, ok := s.recent.cached(id); ok {
		return p, nil
	}
	console, err := s.cfg.Console(ctx)
	if err != nil {
		return PayloadStatus{}, err
	}
	p, err := console.Status(ctx, id)
	if err != nil {
		return PayloadStatus{}, err
	}
	if rec, ok := s.recent.receivedAt(id); ok {
		if p.ReceivedAt == nil {
			p.ReceivedAt = &rec.at
		}
		if p.backend == "" {
			p.backend = rec.backend
		}
		if p.Status == messages.StatusUnknown {
			p.Status = messages.StatusAccepted
		}
	}
	if p.final() {
		s.recent.keep(p)
	}
	return p, nil
}

// ServeHTTP is GET /api/activities/{id}. A request whose context names a
// backend (edge.WithBackend) learns only about that backend's payloads.
func (s *Status) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	w.Header().Set("Content-Type", "application/json")
	if !validPayloadID(id) {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "not a payload id: " + id})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	p, err := s.Lookup(ctx, id)
	if err != nil {
		code := http.StatusInternalServerError
		if messages.ClassOf(err) == messages.ClassTransient || errors.Is(err, context.DeadlineExceeded) {
			code = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
		}
		s.logger.Error("Cannot look up a payload's status", "payload_id", id, "error", err)
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "cannot look the payload up now; retry"})
		return
	}
	if asker := edge.BackendFrom(r.Context()); asker != "" && p.backend != asker {
		// Another backend's payload, or one whose backend this process
		// cannot tell: the asker learns nothing, not even that it exists.
		p = PayloadStatus{ID: id, Status: messages.StatusUnknown, Tables: []string{}}
	}
	if p.Status == messages.StatusUnknown {
		w.WriteHeader(http.StatusNotFound)
	}
	_ = json.NewEncoder(w).Encode(p)
}

// validPayloadID accepts the ids gatekeeper gives (UUIDs) and the index's
// ids for foreign messages ("pubsub-" and a message id), and nothing that
// could be mistaken for a path or a query.
func validPayloadID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
