package frontdoor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/pipeline/metrics"
)

// The front door's HTTP side: API keys and quotas, checked before the
// body is read, so that a refused request costs one SHA-256 and a map
// lookup; the body budget (MAX_IN_FLIGHT_BYTES); and the table check,
// which needs the parsed payload and runs in the gate (Authorize).
// Without a Door every check lets all through.

// GuardConfig configures a Guard.
type GuardConfig struct {
	// Door holds the backends file (BACKENDS_FILE). Optional: nil lets
	// every request in unauthenticated.
	Door *Door
	// RefuseAdmin answers a refused request to the admin or status API in
	// that API's body shape. Required.
	RefuseAdmin func(w http.ResponseWriter, code int, err error)
	// MaxBodyBytes is the largest body accepted (MAX_BODY_BYTES); a body
	// of unknown length reserves this much of the budget. Optional,
	// default 1 MiB.
	MaxBodyBytes int64
	// MaxInFlightBytes is the body bytes handled at once
	// (MAX_IN_FLIGHT_BYTES); past it requests are shed with 503 before
	// their bodies are read. Optional, default 256 MiB.
	MaxInFlightBytes int64
}

func (c *GuardConfig) setDefaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = 256 << 20
	}
}

// Validate reports every problem with c.
func (c GuardConfig) Validate() error {
	var errs []error
	if c.RefuseAdmin == nil {
		errs = append(errs, errors.New("front door config: RefuseAdmin is required"))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("front door config: MaxBodyBytes must not be negative"))
	}
	if c.MaxInFlightBytes < 0 {
		errs = append(errs, errors.New("front door config: MaxInFlightBytes must not be negative"))
	}
	return errors.Join(errs...)
}

// Guard is the front door's net/http middleware, and the gate's table
// check.
type Guard struct {
	cfg    GuardConfig
	logger *slog.Logger
	// bodyBytes are the request body bytes reserved under
	// MaxInFlightBytes.
	bodyBytes atomic.Int64
}

// NewGuard returns a Guard, or every problem with cfg.
func NewGuard(cfg GuardConfig, logger *slog.Logger) (*Guard, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Guard{cfg: cfg, logger: logger}, nil
}

// BodyBytes is the request body bytes being handled now, as reserved
// under MaxInFlightBytes.
func (g *Guard) BodyBytes() int64 { return g.bodyBytes.Load() }

// Refuser answers a refused ingestion request in the ingestion API's body
// shape (the edge does).
type Refuser interface {
	Refuse(w http.ResponseWriter, r *http.Request, err error)
}

// Ingest is the ingestion endpoint's door: the key and quota check, then
// the body budget; ref answers what they refuse.
func (g *Guard) Ingest(ref Refuser, next http.Handler) http.Handler {
	return g.keys(ref, g.budget(ref, next))
}

// keys sits right inside InstrumentHTTP on POST /api/activities: it
// answers 401 for a missing or unknown key, 403 for an admin key, 429 past
// the backend's quota, and otherwise hands on the request with the
// backend's name in its context.
func (g *Guard) keys(ref Refuser, next http.Handler) http.Handler {
	if g.cfg.Door == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := g.cfg.Door.Current().Authenticate(r)
		if err != nil {
			ref.Refuse(w, r, messages.Refused(&UnauthorizedError{Err: err}))
			return
		}
		metrics.LabelBackend(w, b.Name)
		r = r.WithContext(edge.WithBackend(r.Context(), b.Name))
		if b.Admin {
			ref.Refuse(w, r, messages.Refused(&ForbiddenError{Backend: b.Name,
				Reason: "an admin key opens the admin API only; post with a backend's key"}))
			return
		}
		v := b.Take(time.Now())
		if !v.Allowed {
			ref.Refuse(w, r, messages.Refused(&QuotaError{Backend: b.Name, Rate: b.Rate, Burst: b.Burst,
				Window: b.Window(), Remaining: v.Remaining, Wait: v.Wait}))
			return
		}
		if v.Limited {
			rateLimitHeader(w.Header(), b, v)
		}
		next.ServeHTTP(w, r)
	})
}

// budget admits a request to the ingest stage only while the body
// bytes being handled stay within MAX_IN_FLIGHT_BYTES, and sheds it with
// 503 otherwise, before anything of its body is read: under a burst of
// large payloads it is the memory that runs out first, long before
// MAX_IN_FLIGHT_PUBLISHES. A request reserves its Content-Length, or
// MAX_BODY_BYTES when it sends none (chunked), and keeps it until its
// answer is written, or, for a client that left, until its publish ended
// (the edge waits for it), since its body is held that long.
func (g *Guard) budget(ref Refuser, next http.Handler) http.Handler {
	limit := g.cfg.MaxInFlightBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := r.ContentLength
		switch {
		case n > g.cfg.MaxBodyBytes:
			n = 0 // refused 413 before its body is read
		case n < 0:
			n = g.cfg.MaxBodyBytes
		}
		if !reserve(&g.bodyBytes, n, limit) {
			g.shed(ref, w, r)
			return
		}
		defer g.bodyBytes.Add(-n)
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
func (g *Guard) shed(ref Refuser, w http.ResponseWriter, r *http.Request) {
	// Connection: close also keeps net/http from reading a small unread
	// body before it writes the answer.
	w.Header().Set("Connection", "close")
	ref.Refuse(w, r, messages.Transient(edge.ErrBodyBudget))
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return
	}
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(shedDrain))
	_, _ = io.CopyN(io.Discard, r.Body, g.cfg.MaxBodyBytes+1)
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

// Authorize is the gate's Authorize: a backend writes only the
// tables its entry lists. The entry is read again here, from the file in
// force now, so that a reload between the key check and the gate counts.
func (g *Guard) Authorize(msg *message.Message, tables []string) error {
	name := msg.Metadata.Get(messages.MetaBackend)
	if g.cfg.Door == nil || name == "" {
		return nil
	}
	b := g.cfg.Door.Current().Backend(name)
	if b == nil || b.Admin {
		return messages.Refused(&ForbiddenError{Backend: name, Reason: fmt.Sprintf("backend %s is no longer in BACKENDS_FILE", name)})
	}
	if refused := b.Refused(tables); len(refused) > 0 {
		return messages.Refused(&ForbiddenError{Backend: name, Tables: refused, Paths: tablePaths(msg.Payload, refused)})
	}
	return nil
}

// tablePaths points at each table's first mention in payload, a JSON
// pointer such as /activities/2/table ("" when not found). The payload was
// parsed already; reading it again costs a refused request only.
func tablePaths(payload []byte, tables []string) []string {
	var doc struct {
		Activities []struct {
			Table string `json:"table"`
		} `json:"activities"`
	}
	_ = json.Unmarshal(payload, &doc)
	paths := make([]string, len(tables))
	for i, t := range tables {
		for j, a := range doc.Activities {
			if a.Table == t {
				paths[i] = fmt.Sprintf("/activities/%d/table", j)
				break
			}
		}
	}
	return paths
}

// errAdminOnly refuses a backend key on the admin API.
var errAdminOnly = errors.New("this is the admin API: it needs an admin key (admin: true in BACKENDS_FILE), not a backend's")

// Admin guards the admin API: an admin key passes, a backend key gets
// 403 and none or a wrong one 401, in the admin API's own body shape.
func (g *Guard) Admin(next http.Handler) http.Handler {
	if g.cfg.Door == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := g.cfg.Door.Current().Authenticate(r)
		switch {
		case err != nil:
			w.Header().Set("WWW-Authenticate", "Bearer")
			g.cfg.RefuseAdmin(w, http.StatusUnauthorized, err)
		case !b.Admin:
			metrics.LabelBackend(w, b.Name)
			g.cfg.RefuseAdmin(w, http.StatusForbidden, errAdminOnly)
		default:
			metrics.LabelBackend(w, b.Name)
			next.ServeHTTP(w, r)
		}
	})
}

// Status guards GET /api/activities/{id} on the ingestion port: any
// key of the file passes, and the status shown is limited to the key's
// backend's payloads (edge.BackendFrom), unless it is an admin key.
func (g *Guard) Status(next http.Handler) http.Handler {
	if g.cfg.Door == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := g.cfg.Door.Current().Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", "Bearer")
			g.cfg.RefuseAdmin(w, http.StatusUnauthorized, err)
			return
		}
		metrics.LabelBackend(w, b.Name)
		if !b.Admin {
			r = r.WithContext(edge.WithBackend(r.Context(), b.Name))
		}
		next.ServeHTTP(w, r)
	})
}

// Reload reads BACKENDS_FILE again (SIGHUP). Requests in flight
// keep the file they started with; a file that does not load changes
// nothing and is logged.
func (g *Guard) Reload() error {
	if g.cfg.Door == nil {
		g.logger.Warn("Nothing to reload: no BACKENDS_FILE")
		return nil
	}
	set, err := g.cfg.Door.Reload()
	if err != nil {
		g.logger.Error("Backends file not reloaded", "file", g.cfg.Door.Path(), "error", err)
		return err
	}
	backends, admins := set.Counts()
	g.logger.Info("Backends file reloaded", "file", g.cfg.Door.Path(), "backends", backends, "admins", admins)
	return nil
}
