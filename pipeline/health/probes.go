package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/condition"
)

// What /readyz and /healthz answer, and why: the handlers (Readyz,
// Healthz) say what each probe means; the rest of this file gathers the
// reasons.

// Healthz is the liveness probe, in Kubernetes' terms "restart me": it
// answers 503 only for what a new process could mend, once it has lasted
// longer than UNHEALTHY_AFTER: publishing to Pub/Sub or its resource checks
// failing without a success (a broken connection, stale credentials), or
// an apply stage wedged (it holds payloads and commits nothing while the
// warehouse answers). Everything else that fails is named as degraded with
// 200: a restart cannot mend a corrupt or full warehouse, a full disk under
// the outbox, or a missing topic the monitor is recreating, and restarting
// for them would only add a restart loop to the fault. It calls nothing
// outside the process.
//
// Body: {"status":"ok"} (200); {"status":"degraded","reasons":[...]} (200);
// {"status":"unhealthy","error":"...","reasons":[...]} (503). Each reason is
// {"component","error","since","effect"}, effect "restart" or "degraded".
func (m *Monitor) Healthz(w http.ResponseWriter, _ *http.Request) {
	writeHealth(w, m.liveness(time.Now()), effectRestart, "ok", "unhealthy")
}

// Readyz is the readiness probe, in Kubernetes' terms "send me traffic":
// it answers 503 whenever this process cannot do its work now, and 200
// again as soon as it can, with no restart.
//
// A process with the ingest stage is unready while it is not serving
// (starting, or shutting down), its outbox cannot be written (every POST
// would get 503), the embedded backlog is full (EMBEDDED_MAX_BACKLOG),
// Pub/Sub does not answer, a publish failed in the last 10 s, or a topic or
// subscription it needs is missing. A warehouse that is down does not make
// it unready: the ingest stage keeps accepting, and the queue buffers until
// the apply stage can write again; the warehouse is named as degraded.
//
// An apply-only process is unready while it is not serving, Pub/Sub does
// not answer (it cannot receive), its subscription is missing, or the
// warehouse's write path fails (its probe, or commits in the last minute).
//
// Every check is bounded: the live ones (Pub/Sub, the warehouse) run at
// once, each under its own 2 s deadline, so that one that hangs cannot
// make another look failed. Body: {"status":"ready"} (200);
// {"status":"degraded","reasons":[...]} (200); {"status":"unavailable",
// "error":"...","reasons":[...]} (503). Each reason is {"component",
// "error","since","effect"}, effect "unready" or "degraded".
func (m *Monitor) Readyz(w http.ResponseWriter, r *http.Request) {
	writeHealth(w, m.readiness(r.Context()), effectUnready, "ready", "unavailable")
}

// A reason's effect on the probe that names it.
const (
	// effectUnready: /readyz answers 503: do not send this process traffic.
	effectUnready = "unready"
	// effectRestart: /healthz answers 503: a restart may help.
	effectRestart = "restart"
	// effectDegraded: named, and the probe still answers 200: something
	// does not work, and neither withholding traffic nor a restart would
	// mend it (a corrupt or full warehouse while the queue buffers; a full
	// disk the process can only wait out).
	effectDegraded = "degraded"
)

// readyCheckTimeout bounds each of /readyz's live checks on its own, so
// that a Pub/Sub that does not answer cannot starve the warehouse's check
// of its time and show as a warehouse fault.
const readyCheckTimeout = 2 * time.Second

// publishRecent is how long a failed publish keeps the ingest stage
// unready after it. A process that is not ready gets no traffic, so no
// publish would come to clear it: past this, it is ready again, and the
// next publish that fails makes it unready again (a half-open breaker).
// Liveness still counts from the first failure.
const publishRecent = 10 * time.Second

// commitsRecent is how long a group that failed to commit keeps naming
// the warehouse when no commit was tried since (the payloads held, or
// none left): past it, the monitor's probe alone speaks for the warehouse.
const commitsRecent = time.Minute

// healthReason is one thing a probe names: what (the component), the
// error, since when, and what it does to the probe.
type healthReason struct {
	Component string `json:"component"`
	Error     string `json:"error"`
	Since     string `json:"since,omitempty"`
	Effect    string `json:"effect"`
}

// healthAnswer is a probe's body. Status and Error are what clients read
// before the reasons were listed: Error joins the reasons that decided
// the status.
type healthAnswer struct {
	Status  string         `json:"status"`
	Error   string         `json:"error,omitempty"`
	Reasons []healthReason `json:"reasons,omitempty"`
}

func newReason(component string, err error, since time.Time, effect string) healthReason {
	r := healthReason{Component: component, Effect: effect}
	if err != nil {
		r.Error = err.Error()
	}
	if !since.IsZero() {
		r.Since = since.UTC().Format(time.RFC3339)
	}
	return r
}

// writeHealth answers 503 with badStatus when a reason has the effect
// failing, else 200 with okStatus, or "degraded" when reasons are named.
func writeHealth(w http.ResponseWriter, reasons []healthReason, failing, okStatus, badStatus string) {
	a := healthAnswer{Status: okStatus, Reasons: reasons}
	var errs []string
	for _, r := range reasons {
		if r.Effect == failing {
			errs = append(errs, r.Component+": "+r.Error)
		}
	}
	code := http.StatusOK
	switch {
	case len(errs) > 0:
		code, a.Status, a.Error = http.StatusServiceUnavailable, badStatus, strings.Join(errs, "; ")
	case len(reasons) > 0:
		a.Status = effectDegraded
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(a)
}

// readiness lists what keeps this process from taking traffic (unready),
// and what fails without that (degraded). The live checks run at once,
// each under its own deadline; the rest is read from memory.
func (m *Monitor) readiness(ctx context.Context) []healthReason {
	now := time.Now()
	var pingErr, storeErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		c, cancel := context.WithTimeout(ctx, readyCheckTimeout)
		defer cancel()
		pingErr = m.ps.Ping(c)
	})
	// A group committed moments ago proves the write path; probing it then
	// would only contend with this process's own writer.
	if m.store != nil && !m.recentlyCommitted(readyCheckTimeout) {
		wg.Go(func() {
			c, cancel := context.WithTimeout(ctx, readyCheckTimeout)
			defer cancel()
			storeErr = m.store.Ping(c)
		})
	}

	var rs []healthReason
	if m.cfg.Serving != nil && !m.cfg.Serving() {
		rs = append(rs, newReason("serving", errors.New("not serving (starting or shutting down)"), time.Time{}, effectUnready))
	}
	ingest := m.cfg.Ingest
	// What the ingest stage needs to accept: its outbox written, room in
	// the embedded backlog, publishes that succeed.
	if m.cfg.OutboxFailing != nil {
		if since, err := m.cfg.OutboxFailing(); !since.IsZero() {
			effect := effectDegraded
			if ingest {
				effect = effectUnready
			}
			rs = append(rs, newReason("outbox", fmt.Errorf("%s: writes failing: %w", m.cfg.OutboxPath, err), since, effect))
		}
	}
	if m.cfg.BacklogFull != nil {
		if err := m.cfg.BacklogFull(); err != nil {
			rs = append(rs, newReason("backlog", err, time.Time{}, effectUnready))
		}
	}
	if st := m.publish.State(); st.Failing() {
		effect := effectDegraded
		if ingest && now.Sub(st.Last) < publishRecent {
			effect = effectUnready
		}
		rs = append(rs, newReason("pubsub.publish", st.Err, st.Since, effect))
	}
	// Both stages need their topics and subscriptions: Pub/Sub drops what
	// is published to a topic without one, and an apply stage without its
	// subscription receives nothing.
	for _, p := range m.missingResources() {
		rs = append(rs, newReason("pubsub.resource", p.err, p.since, effectUnready))
	}
	if st := m.admin.State(); st.Failing() {
		// The checks only keep resources in place; Pub/Sub's own answer
		// (the ping below) says whether this process can use it.
		rs = append(rs, newReason("pubsub.admin", st.Err, st.Since, effectDegraded))
	}

	wg.Wait()
	if pingErr != nil {
		rs = append(rs, newReason("pubsub", pingErr, time.Time{}, effectUnready))
	}
	if m.store != nil {
		// Where the ingest stage runs too, a warehouse that is down does
		// not stop this process from accepting: the queue buffers until
		// the apply stage can write again. An apply-only process can do
		// nothing useful without it.
		effect := effectUnready
		if ingest {
			effect = effectDegraded
		}
		st := m.warehouseFailing(now, commitsRecent)
		switch {
		case storeErr != nil:
			rs = append(rs, newReason("warehouse", storeErr, st.Since, effect))
		case st.Failing():
			rs = append(rs, newReason("warehouse", st.Err, st.Since, effect))
		}
	}
	if r, ok := m.applyPausedReason(); ok {
		rs = append(rs, r)
	}
	return rs
}

// applyPausedReason names the apply stage's pause: unready in a process
// that runs only the apply stage, which takes nothing from Pub/Sub it can
// apply; degraded beside the ingest stage, which still accepts while the
// queue buffers the backlog.
func (m *Monitor) applyPausedReason() (healthReason, bool) {
	if !m.cfg.Apply || m.cfg.ApplyPaused == nil {
		return healthReason{}, false
	}
	since, err := m.cfg.ApplyPaused()
	if since.IsZero() {
		return healthReason{}, false
	}
	effect := effectUnready
	if m.cfg.Ingest {
		effect = effectDegraded
	}
	return newReason("apply", fmt.Errorf("paused, holding payloads: warehouse %s unavailable: %w", m.cfg.Warehouse, err), since, effect), true
}

// liveness lists what /healthz names. Only what a restart could mend, and
// only once it has lasted longer than UNHEALTHY_AFTER, asks for a restart;
// the rest is degraded: restarting would not mend a corrupt warehouse or a
// full disk, only add a restart loop to the fault.
func (m *Monitor) liveness(now time.Time) []healthReason {
	after := m.cfg.UnhealthyAfter
	var rs []healthReason
	// A connection to Pub/Sub that stays broken (a stale channel, expired
	// credentials) is what a new process mends.
	for _, c := range []struct {
		component string
		st        condition.Status
	}{{"pubsub.publish", m.publish.State()}, {"pubsub.admin", m.admin.State()}} {
		if !c.st.Failing() {
			continue
		}
		if d := now.Sub(c.st.Since); d > after {
			rs = append(rs, newReason(c.component, fmt.Errorf("failing for %s without a success (UNHEALTHY_AFTER %s): %w",
				d.Round(time.Second), after, c.st.Err), c.st.Since, effectRestart))
		} else {
			rs = append(rs, newReason(c.component, c.st.Err, c.st.Since, effectDegraded))
		}
	}
	// The monitor recreates what it may; a new process would only do the
	// same, or, with CREATE_RESOURCES=false, refuse to start.
	for _, p := range m.missingResources() {
		rs = append(rs, newReason("pubsub.resource", p.err, p.since, effectDegraded))
	}
	if m.cfg.OutboxFailing != nil {
		if since, err := m.cfg.OutboxFailing(); !since.IsZero() {
			rs = append(rs, newReason("outbox", fmt.Errorf("%s: writes failing: %w", m.cfg.OutboxPath, err), since, effectDegraded))
		}
	}
	if m.store != nil {
		if st := m.warehouseFailing(now, commitsRecent); st.Failing() {
			rs = append(rs, newReason("warehouse", st.Err, st.Since, effectDegraded))
		}
	}
	if r, ok := m.wedged(now); ok {
		rs = append(rs, r)
	}
	return rs
}

// wedged reports an apply stage that holds payloads and has committed
// nothing, while the warehouse answers, for longer than both
// UNHEALTHY_AFTER and the longest a payload may take with every retry: a
// stuck handler or committer, which a restart mends. The payloads go back
// to the subscription and are applied by the next process.
func (m *Monitor) wedged(now time.Time) (healthReason, bool) {
	if !m.cfg.Apply {
		return healthReason{}, false
	}
	limit := max(m.cfg.UnhealthyAfter, m.cfg.MaxHandlingTime)
	if m.recentlyCommitted(limit) {
		return healthReason{}, false
	}
	// A commit that failed with no success since, however long ago, puts
	// the blame on the warehouse, which a restart would find as it is (a
	// corrupt page fails commits while the probe succeeds). A paused apply
	// stage holds payloads on purpose: not wedged either.
	if m.commits.State().Failing() || m.probe.State().Failing() {
		return healthReason{}, false
	}
	if m.cfg.ApplyPaused != nil {
		if since, _ := m.cfg.ApplyPaused(); !since.IsZero() {
			return healthReason{}, false
		}
	}
	idle := m.applyIdleAt.Load()
	if idle == nil || now.Sub(*idle) <= limit {
		return healthReason{}, false
	}
	held := m.held()
	if held == 0 {
		return healthReason{}, false
	}
	return newReason("apply", fmt.Errorf("holds %d payloads and has committed nothing for %s while the warehouse answers its probe (limit %s: UNHEALTHY_AFTER, or the longest a payload may take with its retries)",
		held, now.Sub(*idle).Round(time.Second), limit), *idle, effectRestart), true
}

// held is how many payloads the apply stage holds.
func (m *Monitor) held() int {
	if m.cfg.ApplyHeld == nil {
		return 0
	}
	return m.cfg.ApplyHeld()
}

// WatchApplyIdle notes, every second, when the apply stage holds nothing:
// it cannot be wedged then, and time without a commit counts from the last
// moment it was idle, not from the last commit before a quiet hour.
func (m *Monitor) WatchApplyIdle(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		now := time.Now()
		if m.held() == 0 {
			m.applyIdleAt.Store(&now)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
