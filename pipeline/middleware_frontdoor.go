package pipeline

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/handlers"
	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/pipeline/frontdoor"
	"github.com/gatekeeper/gatekeeper/pipeline/metrics"
)

// The front door (BACKENDS_FILE): API keys and quotas, checked before the
// body is read, so that a refused request costs one SHA-256 and a map
// lookup. The table check needs the parsed payload and runs in the gate
// (authorizeTables). Without BACKENDS_FILE every check lets all through.

// ingestDoor sits right inside InstrumentHTTP on POST /api/activities: it
// answers 401 for a missing or unknown key, 403 for an admin key, 429 past
// the backend's quota, and otherwise hands on the request with the
// backend's name in its context.
func (s *Service) ingestDoor(next http.Handler) http.Handler {
	if s.door == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := s.door.Current().Authenticate(r)
		if err != nil {
			s.edge.Refuse(w, r, edge.Refused(&edge.UnauthorizedError{Err: err}))
			return
		}
		metrics.LabelBackend(w, b.Name)
		r = r.WithContext(edge.WithBackend(r.Context(), b.Name))
		if b.Admin {
			s.edge.Refuse(w, r, edge.Refused(&edge.ForbiddenError{Backend: b.Name,
				Reason: "an admin key opens the admin API only; post with a backend's key"}))
			return
		}
		if v := b.Take(time.Now()); !v.Allowed {
			s.edge.Refuse(w, r, edge.Refused(&edge.QuotaError{Backend: b.Name, Rate: b.Rate, Burst: b.Burst,
				Window: b.Window(), Remaining: v.Remaining, Wait: v.Wait}))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bodyBudget admits a request to the ingest stage only while the body
// bytes being handled stay within MAX_IN_FLIGHT_BYTES, and sheds it with
// 503 otherwise, before anything of its body is read: under a burst of
// large payloads it is the memory that runs out first, long before
// MAX_IN_FLIGHT_PUBLISHES. A request reserves its Content-Length, or
// MAX_BODY_BYTES when it sends none (chunked), and keeps it until its
// answer is written, or, for a client that left, until its publish ended
// (the edge waits for it), since its body is held that long.
func (s *Service) bodyBudget(next http.Handler) http.Handler {
	limit := s.cfg.MaxInFlightBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := r.ContentLength
		switch {
		case n > s.cfg.MaxBodyBytes:
			n = 0 // refused 413 before its body is read
		case n < 0:
			n = s.cfg.MaxBodyBytes
		}
		if !reserve(&s.bodyBytes, n, limit) {
			s.shed(w, r)
			return
		}
		defer s.bodyBytes.Add(-n)
		next.ServeHTTP(w, r)
	})
}

// shedDrain bounds how long a shed request's body is still drained after
// its 503 was sent.
const shedDrain = 5 * time.Second

// shed answers 503 at once, before the body is read, and closes the
// connection. A client that is still sending its body then reads the 503
// while it writes; the rest of the body is drained (read into a small
// buffer and dropped, never held) for up to shedDrain, or closing the
// connection under unread bytes resets it, and the client sees "broken
// pipe" instead of the 503: 141 of 1,000 in a burst of 1 MiB bodies did.
// A client that waits for "100 Continue" has sent nothing, and is sent
// nothing more.
func (s *Service) shed(w http.ResponseWriter, r *http.Request) {
	// Connection: close also keeps net/http from reading a small unread
	// body before it writes the answer.
	w.Header().Set("Connection", "close")
	s.edge.Refuse(w, r, messages.Transient(edge.ErrBodyBudget))
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return
	}
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(shedDrain))
	_, _ = io.CopyN(io.Discard, r.Body, s.cfg.MaxBodyBytes+1)
}

// reserve adds n to used unless that passes limit while anything else is
// reserved: a request larger than the whole budget is still admitted
// alone, or it could never be.
func reserve(used *atomic.Int64, n, limit int64) bool {
	for {
		cur := used.Load()
		if cur > 0 && cur+n > limit {
			return false
		}
		if used.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// authorizeTables is the gate's Authorize: a backend writes only the
// tables its entry lists. The entry is read again here, from the file in
// force now, so that a reload between the key check and the gate counts.
func (s *Service) authorizeTables(msg *message.Message, tables []string) error {
	name := msg.Metadata.Get(messages.MetaBackend)
	if s.door == nil || name == "" {
		return nil
	}
	b := s.door.Current().Backend(name)
	if b == nil || b.Admin {
		return edge.Refused(&edge.ForbiddenError{Backend: name, Reason: fmt.Sprintf("backend %s is no longer in BACKENDS_FILE", name)})
	}
	if refused := b.Refused(tables); len(refused) > 0 {
		return edge.Refused(&edge.ForbiddenError{Backend: name, Tables: refused})
	}
	return nil
}

// errAdminOnly refuses a backend key on the admin API.
var errAdminOnly = errors.New("this is the admin API: it needs an admin key (admin: true in BACKENDS_FILE), not a backend's")

// adminDoor guards the admin API: an admin key passes, a backend key gets
// 403 and none or a wrong one 401, in the admin API's own body shape.
func (s *Service) adminDoor(next http.Handler) http.Handler {
	if s.door == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := s.door.Current().Authenticate(r)
		switch {
		case err != nil:
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeAdminError(w, http.StatusUnauthorized, err)
		case !b.Admin:
			metrics.LabelBackend(w, b.Name)
			writeAdminError(w, http.StatusForbidden, errAdminOnly)
		default:
			metrics.LabelBackend(w, b.Name)
			next.ServeHTTP(w, r)
		}
	})
}

// statusDoor guards GET /api/activities/{id} on the ingestion port: any
// key of the file passes, and the status shown is limited to the key's
// backend's payloads (serveStatus), unless it is an admin key.
func (s *Service) statusDoor(next http.Handler) http.Handler {
	if s.door == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := s.door.Current().Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeAdminError(w, http.StatusUnauthorized, err)
			return
		}
		metrics.LabelBackend(w, b.Name)
		if !b.Admin {
			r = r.WithContext(edge.WithBackend(r.Context(), b.Name))
		}
		next.ServeHTTP(w, r)
	})
}

// ReloadBackends reads BACKENDS_FILE again (SIGHUP). Requests in flight
// keep the file they started with; a file that does not load changes
// nothing and is logged.
func (s *Service) ReloadBackends() error {
	if s.door == nil {
		s.logger.Warn("Nothing to reload: no BACKENDS_FILE")
		return nil
	}
	set, err := s.door.Reload()
	if err != nil {
		s.logger.Error("Backends file not reloaded", "file", s.door.Path(), "error", err)
		return err
	}
	backends, admins := set.Counts()
	s.logger.Info("Backends file reloaded", "file", s.door.Path(), "backends", backends, "admins", admins)
	return nil
}

// outcomeOf names a refused or failed ingestion for gatekeeper_payloads_total.
func outcomeOf(err error) string {
	var unauthorized *edge.UnauthorizedError
	var forbidden *edge.ForbiddenError
	var quota *edge.QuotaError
	var slow *edge.BodyTimeoutError
	var aborted *edge.BodyAbortedError
	switch {
	case errors.As(err, &slow):
		return metrics.OutcomeTimeout
	case errors.As(err, &aborted):
		return metrics.OutcomeAborted
	case errors.As(err, &unauthorized):
		return metrics.OutcomeUnauthenticated
	case errors.As(err, &forbidden):
		return metrics.OutcomeForbidden
	case errors.As(err, &quota):
		return metrics.OutcomeThrottled
	case errors.Is(err, handlers.ErrOverloaded), errors.Is(err, edge.ErrBodyBudget), errors.Is(err, ErrBacklogFull):
		return metrics.OutcomeShed
	case len(edge.RulesOf(err)) > 0:
		return metrics.OutcomeRejected
	}
	return metrics.OutcomeFailed
}

// openDoor loads BACKENDS_FILE, when set.
func openDoor(cfg Config) (*frontdoor.Door, error) {
	if cfg.BackendsFile == "" {
		return nil, nil
	}
	d, err := frontdoor.Open(cfg.BackendsFile)
	if err != nil {
		return nil, fmt.Errorf("BACKENDS_FILE: %w", err)
	}
	return d, nil
}
