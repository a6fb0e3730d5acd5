package pipeline

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

// What /readyz and /healthz answer, and why: the handlers (service.go
// readyz, healthz) say what each probe means; this file gathers the
// reasons.

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
func (s *Service) readiness(ctx context.Context) []healthReason {
	now := time.Now()
	var pingErr, storeErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		c, cancel := context.WithTimeout(ctx, readyCheckTimeout)
		defer cancel()
		pingErr = s.PubSub.Ping(c)
	})
	// A group committed moments ago proves the write path; probing it then
	// would only contend with this process's own writer.
	if s.Store != nil && !s.monitor.recentlyCommitted(readyCheckTimeout) {
		wg.Go(func() {
			c, cancel := context.WithTimeout(ctx, readyCheckTimeout)
			defer cancel()
			storeErr = s.Store.Ping(c)
		})
	}

	var rs []healthReason
	if !s.ready.Load() {
		rs = append(rs, newReason("serving", errors.New("not serving (starting or shutting down)"), time.Time{}, effectUnready))
	}
	ingest := s.ingest != nil
	// What the ingest stage needs to accept: its outbox written, room in
	// the embedded backlog, publishes that succeed.
	if s.outbox != nil {
		if since, err := s.outbox.Failing(); !since.IsZero() {
			effect := effectDegraded
			if ingest {
				effect = effectUnready
			}
			rs = append(rs, newReason("outbox", fmt.Errorf("%s: writes failing: %w", s.cfg.OutboxPath, err), since, effect))
		}
	}
	if err := s.backlogFull(); err != nil {
		rs = append(rs, newReason("backlog", err, time.Time{}, effectUnready))
	}
	if st := s.monitor.publish.State(); st.Failing() {
		effect := effectDegraded
		if ingest && now.Sub(st.Last) < publishRecent {
			effect = effectUnready
		}
		rs = append(rs, newReason("pubsub.publish", st.Err, st.Since, effect))
	}
	// Both stages need their topics and subscriptions: Pub/Sub drops what
	// is published to a topic without one, and an apply stage without its
	// subscription receives nothing.
	for _, p := range s.monitor.missingResources() {
		rs = append(rs, newReason("pubsub.resource", p.err, p.since, effectUnready))
	}
	if st := s.monitor.admin.State(); st.Failing() {
		// The checks only keep resources in place; Pub/Sub's own answer
		// (the ping below) says whether this process can use it.
		rs = append(rs, newReason("pubsub.admin", st.Err, st.Since, effectDegraded))
	}

	wg.Wait()
	if pingErr != nil {
		rs = append(rs, newReason("pubsub", pingErr, time.Time{}, effectUnready))
	}
	if s.Store != nil {
		// Where the ingest stage runs too, a warehouse that is down does
		// not stop this process from accepting: the queue buffers until
		// the apply stage can write again. An apply-only process can do
		// nothing useful without it.
		effect := effectUnready
		if ingest {
			effect = effectDegraded
		}
		st := s.monitor.warehouseFailing(now, commitsRecent)
		switch {
		case storeErr != nil:
			rs = append(rs, newReason("warehouse", storeErr, st.Since, effect))
		case st.Failing():
			rs = append(rs, newReason("warehouse", st.Err, st.Since, effect))
		}
	}
	if r, ok := s.applyPausedReason(); ok {
		rs = append(rs, r)
	}
	return rs
}

// liveness lists what /healthz names. Only what a restart could mend, and
// only once it has lasted longer than UNHEALTHY_AFTER, asks for a restart;
// the rest is degraded: restarting would not mend a corrupt warehouse or a
// full disk, only add a restart loop to the fault.
func (s *Service) liveness(now time.Time) []healthReason {
	after := s.cfg.UnhealthyAfter
	var rs []healthReason
	// A connection to Pub/Sub that stays broken (a stale channel, expired
	// credentials) is what a new process mends.
	for _, c := range []struct {
		component string
		st        condition.Status
	}{{"pubsub.publish", s.monitor.publish.State()}, {"pubsub.admin", s.monitor.admin.State()}} {
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
	for _, p := range s.monitor.missingResources() {
		rs = append(rs, newReason("pubsub.resource", p.err, p.since, effectDegraded))
	}
	if s.outbox != nil {
		if since, err := s.outbox.Failing(); !since.IsZero() {
			rs = append(rs, newReason("outbox", fmt.Errorf("%s: writes failing: %w", s.cfg.OutboxPath, err), since, effectDegraded))
		}
	}
	if s.Store != nil {
		if st := s.monitor.warehouseFailing(now, commitsRecent); st.Failing() {
			rs = append(rs, newReason("warehouse", st.Err, st.Since, effectDegraded))
		}
	}
	if r, ok := s.wedged(now); ok {
		rs = append(rs, r)
	}
	return rs
}

// wedged reports an apply stage that holds payloads and has committed
// nothing, while the warehouse answers, for longer than both
// UNHEALTHY_AFTER and the longest a payload may take with every retry: a
// stuck handler or committer, which a restart mends. The payloads go back
// to the subscription and are applied by the next process.
func (s *Service) wedged(now time.Time) (healthReason, bool) {
	if s.apply == nil {
		return healthReason{}, false
	}
	limit := max(s.cfg.UnhealthyAfter, s.cfg.maxHandlingTime())
	if s.monitor.recentlyCommitted(limit) {
		return healthReason{}, false
	}
	// A commit that failed with no success since, however long ago, puts
	// the blame on the warehouse, which a restart would find as it is (a
	// corrupt page fails commits while the probe succeeds). A paused apply
	// stage holds payloads on purpose: not wedged either.
	if s.monitor.commits.State().Failing() || s.monitor.probe.State().Failing() {
		return healthReason{}, false
	}
	if since, _ := s.apply.paused(); !since.IsZero() {
		return healthReason{}, false
	}
	idle := s.applyIdleAt.Load()
	if idle == nil || now.Sub(*idle) <= limit {
		return healthReason{}, false
	}
	held := 0
	s.handling.Range(func(any, any) bool { held++; return true })
	if held == 0 {
		return healthReason{}, false
	}
	return newReason("apply", fmt.Errorf("holds %d payloads and has committed nothing for %s while the warehouse answers its probe (limit %s: UNHEALTHY_AFTER, or the longest a payload may take with its retries)",
		held, now.Sub(*idle).Round(time.Second), limit), *idle, effectRestart), true
}

// watchApplyIdle notes, every second, when the apply stage holds nothing:
// it cannot be wedged then, and time without a commit counts from the last
// moment it was idle, not from the last commit before a quiet hour.
func (s *Service) watchApplyIdle(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		now := time.Now()
		idle := true
		s.handling.Range(func(any, any) bool { idle = false; return false })
		if idle {
			s.applyIdleAt.Store(&now)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
