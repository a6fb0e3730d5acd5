package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/condition"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// resourceProblem is a topic or subscription that is missing and that this
// process may not, or could not, create.
type resourceProblem struct {
	err   error
	since time.Time
}

// Monitor keeps the service's Pub/Sub resources in place and its health
// known, and answers /readyz and /healthz (probes.go). Every interval (and at once after a publish found its topic gone)
// it checks each topic and subscription the stages use, recreates what is
// missing when CREATE_RESOURCES allows, and probes the warehouse's write
// path. A Pub/Sub emulator that restarted, or someone deleting a topic,
// then heals without a restart; what cannot heal shows in /readyz, and
// once it has lasted UNHEALTHY_AFTER, in /healthz.
type Monitor struct {
	cfg       Config
	ps        PubSub
	store     Pinger // nil without the apply stage
	interval  time.Duration
	logEvery  time.Duration // LOG_REPEAT_INTERVAL
	logger    *slog.Logger
	onCreated func(ctx context.Context, r transport.Resource)

	// publish follows the gate's and the apply stage's publishes; admin the
	// resource checks. Kept apart so that checks that succeed cannot hide
	// publishes that keep failing (a role that may read topics but not
	// publish to them). Each logs its episodes once (package condition).
	publish *condition.Condition
	admin   *condition.Condition
	// probe is the warehouse's write path as this monitor's probe finds
	// it; commits as the apply stage's groups find it. Kept apart: a
	// corrupt page fails the commits that touch it while the probe, which
	// only takes the write lock, succeeds; so a probe that succeeds does
	// not clear what the commits say. A commit that succeeds clears both.
	probe   *condition.Condition
	commits *condition.Condition
	// lastCommit is when the apply stage last committed a group: proof
	// enough that the write path is open, without probing the lock this
	// process's own writer holds.
	lastCommit atomic.Pointer[time.Time]

	mu       sync.Mutex
	missing  map[string]resourceProblem      // by resource name
	logged   map[string]*condition.Condition // per resource, to log each episode once
	pathDown atomic.Bool                     // the accepted topic or its subscription is missing
	kick     chan struct{}

	// applyIdleAt is the last moment the apply stage held nothing
	// (WatchApplyIdle), for telling a wedged apply stage.
	applyIdleAt atomic.Pointer[time.Time]
}

// New makes the monitor of what cfg names, with what was found missing at
// start (Config.Missing) already known. Nothing runs until Run.
func New(cfg Config, logger *slog.Logger) (*Monitor, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("health:\n%w", err)
	}
	m := &Monitor{
		cfg: cfg, ps: cfg.PubSub, store: cfg.Store, interval: cfg.Interval, logEvery: cfg.LogEvery, logger: logger, onCreated: cfg.OnCreated,
		missing: map[string]resourceProblem{}, logged: map[string]*condition.Condition{},
		kick: make(chan struct{}, 1),
	}
	logEvery := cfg.LogEvery
	m.publish = mustCondition(condition.Config{Name: "Publishing to Pub/Sub", Interval: logEvery}, logger)
	m.admin = mustCondition(condition.Config{Name: "Pub/Sub resource checks", Interval: logEvery}, logger)
	m.probe = mustCondition(condition.Config{Name: "Warehouse probe", Interval: logEvery}, logger)
	m.commits = mustCondition(condition.Config{Name: "Warehouse commits", Interval: logEvery}, logger)
	for _, r := range cfg.Missing {
		m.setMissing(r.Resource, r.Err)
		logger.Error("Pub/Sub resource missing; not ready until it exists", "resource", r.Name(), "error", r.Err)
	}
	return m, nil
}

// mustCondition is condition.New for a Config known to be valid.
func mustCondition(cfg condition.Config, logger *slog.Logger) *condition.Condition {
	c, err := condition.New(cfg, logger)
	if err != nil {
		panic(err)
	}
	return c
}

// ErrPathDown refuses a payload while nothing would keep it: Pub/Sub drops
// what is published to a topic without a subscription.
var ErrPathDown = errors.New("the accepted topic or its subscription is missing")

// Admit refuses payloads while the accepted topic or the apply
// subscription is known to be missing, with the reason (ErrPathDown).
func (m *Monitor) Admit() error {
	if !m.pathDown.Load() {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, name := range m.ps.AcceptedPath() {
		if p, ok := m.missing[name]; ok {
			errs = append(errs, p.err)
		}
	}
	return fmt.Errorf("%w: %w", ErrPathDown, errors.Join(errs...))
}

// Published sees the result of every publish
// (transport.Config.OnPublish).
func (m *Monitor) Published(topic string, err error) {
	switch {
	case err == nil:
		m.publish.OK()
	case status.Code(err) == codes.NotFound:
		m.setMissing(transport.Resource{Topic: topic}, fmt.Errorf("topic %s not found", topic))
		if sub := m.ps.AcceptedSubscription(topic); sub != "" {
			// A recreated topic has no subscription until the check
			// recreates that too; the gate stays shut until it has.
			m.setMissing(transport.Resource{Topic: topic, Subscription: sub},
				fmt.Errorf("subscription %s: its topic %s was lost", sub, topic))
		}
		m.wake()
	case errors.Is(err, context.Canceled):
	default:
		m.publish.Fail(err)
	}
}

// Committed sees every group the apply stage commits: its group-level
// error (nothing of it was written), and the errors of the payloads it
// rejected. A group that failed whole, or a payload refused for the
// warehouse's own state (class outage: corrupt, full, read-only), says the
// warehouse is failing; a payload refused for itself says nothing about
// the warehouse.
func (m *Monitor) Committed(err error, rejected []error) {
	if err == nil {
		for _, r := range rejected {
			if messages.ClassOf(r) == messages.ClassOutage {
				err = r
				break
			}
		}
	}
	if errors.Is(err, context.Canceled) {
		return // a shutdown, not the warehouse
	}
	if err != nil {
		m.commits.Fail(err)
		return
	}
	now := time.Now()
	m.lastCommit.Store(&now)
	m.commits.OK()
	m.probe.OK()
}

// recentlyCommitted reports whether a group committed within d.
func (m *Monitor) recentlyCommitted(d time.Duration) bool {
	last := m.lastCommit.Load()
	return last != nil && time.Since(*last) < d
}

func (m *Monitor) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *Monitor) setMissing(r transport.Resource, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.missing[r.Name()]; !ok {
		m.missing[r.Name()] = resourceProblem{err: err, since: time.Now()}
	} else {
		p := m.missing[r.Name()]
		p.err = err
		m.missing[r.Name()] = p
	}
	m.updatePathLocked()
}

func (m *Monitor) clearMissing(r transport.Resource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.missing[r.Name()]; ok {
		delete(m.missing, r.Name())
		m.updatePathLocked()
	}
	if c := m.logged[r.Name()]; c != nil {
		c.OK()
	}
}

func (m *Monitor) updatePathLocked() {
	down := false
	for _, name := range m.ps.AcceptedPath() {
		_, missing := m.missing[name]
		down = down || missing
	}
	m.pathDown.Store(down)
}

// Run checks until ctx ends, backing off while checks fail.
func (m *Monitor) Run(ctx context.Context) {
	wait := m.interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-m.kick:
		}
		if m.check(ctx) {
			wait = m.interval
		} else {
			wait = min(2*wait, 30*time.Second)
		}
	}
}

// check runs one round and reports whether everything is in place.
func (m *Monitor) check(ctx context.Context) bool {
	healthy := true
	for _, r := range m.ps.Resources() {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		created, err := m.ps.Ensure(rctx, r)
		cancel()
		if ctx.Err() != nil {
			return healthy
		}
		switch {
		case err == nil:
			m.admin.OK()
			m.clearMissing(r)
			if created {
				m.logger.Warn("Pub/Sub had lost a resource; recreated it", "resource", r.Name(), "topic", r.Topic)
				if m.onCreated != nil {
					m.onCreated(ctx, r)
				}
			}
		case status.Code(err) == codes.NotFound:
			healthy = false
			m.setMissing(r, err)
			m.logOnce(r, "Pub/Sub resource missing", err)
		default:
			healthy = false
			m.admin.Fail(err)
			m.logOnce(r, "cannot check a Pub/Sub resource", err)
		}
	}
	if m.store != nil && !m.recentlyCommitted(m.interval) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := m.store.Ping(pctx)
		cancel()
		if err == nil {
			m.probe.OK()
		} else if ctx.Err() == nil {
			healthy = false
			m.probe.Fail(err)
		}
	}
	return healthy
}

// logOnce logs a resource's problem once when it starts, then as a count
// per minute, and once when the resource is in place again.
func (m *Monitor) logOnce(r transport.Resource, msg string, err error) {
	m.mu.Lock()
	c := m.logged[r.Name()]
	if c == nil {
		c = mustCondition(condition.Config{Name: "Pub/Sub resource " + r.Name(), Interval: m.logEvery, Attrs: []any{"resource", r.Name(), "problem", msg}}, m.logger)
		m.logged[r.Name()] = c
	}
	m.mu.Unlock()
	c.Fail(err)
}

// missingNamesLocked returns the missing resources' names, sorted, so that
// what the service reports is in a stable order. m.mu must be held.
func (m *Monitor) missingNamesLocked() []string {
	names := make([]string, 0, len(m.missing))
	for name := range m.missing {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// missingResources lists the missing topics and subscriptions, in a
// stable order, each with since when.
func (m *Monitor) missingResources() []resourceProblem {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []resourceProblem
	for _, name := range m.missingNamesLocked() {
		out = append(out, m.missing[name])
	}
	return out
}

// warehouseFailing reports the warehouse's write path as the probe and the
// commits find it. Commits that fail count while they are recent (within
// recent): past that, with no group to commit (a paused apply stage, no
// traffic), the probe alone speaks.
func (m *Monitor) warehouseFailing(now time.Time, recent time.Duration) condition.Status {
	if st := m.commits.State(); st.Failing() && now.Sub(st.Last) < recent {
		return st
	}
	return m.probe.State()
}
