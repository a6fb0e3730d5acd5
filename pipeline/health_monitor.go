package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatekeeper/gatekeeper/warehouse"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// processStart anchors the components' clocks: durations since it are
// monotonic, so a wall clock that steps does not fake or hide a failure.
var processStart = time.Now()

// component tracks whether one dependency works: since when it has failed
// without a success in between, and the last error. Its ok path is a single
// atomic load, cheap enough for every publish.
type component struct {
	name         string
	failingSince atomic.Int64 // nanoseconds since processStart, plus one; 0 while it works
	lastErr      atomic.Pointer[error]
}

func (c *component) ok() {
	if c.failingSince.Load() != 0 {
		c.failingSince.Store(0)
	}
}

func (c *component) fail(err error) {
	c.lastErr.Store(&err)
	c.failingSince.CompareAndSwap(0, int64(time.Since(processStart))+1)
}

// failingFor reports how long the component has failed, and why; zero
// while it works.
func (c *component) failingFor(now time.Time) (time.Duration, error) {
	since := c.failingSince.Load()
	if since == 0 {
		return 0, nil
	}
	var err error
	if p := c.lastErr.Load(); p != nil {
		err = *p
	}
	return now.Sub(processStart.Add(time.Duration(since - 1))), err
}

// resourceProblem is a topic or subscription that is missing and that this
// process may not, or could not, create.
type resourceProblem struct {
	err   error
	since time.Time
}

// monitor keeps the service's Pub/Sub resources in place and its health
// known. Every interval (and at once after a publish found its topic gone)
// it checks each topic and subscription the stages use, recreates what is
// missing when CREATE_RESOURCES allows, and probes the warehouse's write
// path. A Pub/Sub emulator that restarted, or someone deleting a topic,
// then heals without a restart; what cannot heal shows in /readyz, and
// once it has lasted UNHEALTHY_AFTER, in /healthz.
type monitor struct {
	ps        *PubSub
	store     warehouse.Store // nil without the apply stage
	interval  time.Duration
	logger    *slog.Logger
	onCreated func(ctx context.Context, r resource)

	// publish follows the gate's and the apply stage's publishes; admin the
	// resource checks. Kept apart so that checks that succeed cannot hide
	// publishes that keep failing (a role that may read topics but not
	// publish to them).
	publish   component
	admin     component
	warehouse component
	// lastCommit is when the apply stage last committed a group (since
	// processStart): proof enough that the write path is open, without
	// probing the lock this process's own writer holds.
	lastCommit atomic.Int64

	mu       sync.Mutex
	missing  map[string]resourceProblem // by resource name
	logged   map[string]string          // last error logged per resource, to log each once
	pathDown atomic.Bool                // the accepted topic or its subscription is missing
	kick     chan struct{}
}

func newMonitor(ps *PubSub, store warehouse.Store, interval time.Duration, onCreated func(context.Context, resource), logger *slog.Logger) *monitor {
	return &monitor{
		ps: ps, store: store, interval: interval, logger: logger, onCreated: onCreated,
		publish: component{name: "publishing to Pub/Sub"}, admin: component{name: "Pub/Sub resource checks"},
		warehouse: component{name: "warehouse"},
		missing:   map[string]resourceProblem{}, logged: map[string]string{},
		kick: make(chan struct{}, 1),
	}
}

// errPathDown refuses a payload while nothing would keep it: Pub/Sub drops
// what is published to a topic without a subscription.
var errPathDown = errors.New("the accepted topic or its subscription is missing")

// admit refuses payloads while the accepted topic or the apply
// subscription is known to be missing, with the reason.
func (m *monitor) admit() error {
	if !m.pathDown.Load() {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, name := range m.ps.cfg.acceptedPath() {
		if p, ok := m.missing[name]; ok {
			errs = append(errs, p.err)
		}
	}
	return fmt.Errorf("%w: %w", errPathDown, errors.Join(errs...))
}

// published sees the result of every publish.
func (m *monitor) published(topic string, err error) {
	switch {
	case err == nil:
		m.publish.ok()
	case status.Code(err) == codes.NotFound:
		m.setMissing(resource{topic: topic}, fmt.Errorf("topic %s not found", topic))
		if sub := m.ps.cfg.acceptedSubscription(topic); sub != "" {
			// A recreated topic has no subscription until the check
			// recreates that too; the gate stays shut until it has.
			m.setMissing(resource{topic: topic, subscription: sub},
				fmt.Errorf("subscription %s: its topic %s was lost", sub, topic))
		}
		m.wake()
	case errors.Is(err, context.Canceled):
	default:
		m.publish.fail(err)
	}
}

// committed sees the result of every group the apply stage commits.
func (m *monitor) committed(err error) {
	if err == nil {
		m.lastCommit.Store(int64(time.Since(processStart)))
		m.warehouse.ok()
	}
}

// recentlyCommitted reports whether a group committed within d.
func (m *monitor) recentlyCommitted(d time.Duration) bool {
	last := m.lastCommit.Load()
	return last != 0 && time.Since(processStart)-time.Duration(last) < d
}

func (m *monitor) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *monitor) setMissing(r resource, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.missing[r.name()]; !ok {
		m.missing[r.name()] = resourceProblem{err: err, since: time.Now()}
	} else {
		p := m.missing[r.name()]
		p.err = err
		m.missing[r.name()] = p
	}
	m.updatePathLocked()
}

func (m *monitor) clearMissing(r resource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.missing[r.name()]; ok {
		delete(m.missing, r.name())
		m.updatePathLocked()
	}
	delete(m.logged, r.name())
}

func (m *monitor) updatePathLocked() {
	down := false
	for _, name := range m.ps.cfg.acceptedPath() {
		_, missing := m.missing[name]
		down = down || missing
	}
	m.pathDown.Store(down)
}

// run checks until ctx ends, backing off while checks fail.
func (m *monitor) run(ctx context.Context) {
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
func (m *monitor) check(ctx context.Context) bool {
	healthy := true
	for _, r := range m.ps.resources() {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		created, err := m.ps.ensure(rctx, r)
		cancel()
		if ctx.Err() != nil {
			return healthy
		}
		switch {
		case err == nil:
			m.admin.ok()
			m.clearMissing(r)
			if created {
				m.logger.Warn("Pub/Sub had lost a resource; recreated it", "resource", r.name(), "topic", r.topic)
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
			m.admin.fail(err)
			m.logOnce(r, "cannot check a Pub/Sub resource", err)
		}
	}
	if m.store != nil && !m.recentlyCommitted(m.interval) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := m.store.Ping(pctx)
		cancel()
		if err == nil {
			m.warehouse.ok()
		} else if ctx.Err() == nil {
			healthy = false
			m.warehouse.fail(err)
		}
	}
	return healthy
}

func (m *monitor) logOnce(r resource, msg string, err error) {
	m.mu.Lock()
	same := m.logged[r.name()] == err.Error()
	m.logged[r.name()] = err.Error()
	m.mu.Unlock()
	if !same {
		m.logger.Error(msg, "resource", r.name(), "error", err)
	}
}

// missingNamesLocked returns the missing resources' names, sorted, so that
// what the service reports is in a stable order. m.mu must be held.
func (m *monitor) missingNamesLocked() []string {
	names := make([]string, 0, len(m.missing))
	for name := range m.missing {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// problems lists, in a stable order, what keeps the service from working.
func (m *monitor) problems() []error {
	now := time.Now()
	var errs []error
	m.mu.Lock()
	for _, name := range m.missingNamesLocked() {
		errs = append(errs, m.missing[name].err)
	}
	m.mu.Unlock()
	for _, c := range []*component{&m.publish, &m.admin, &m.warehouse} {
		if d, err := c.failingFor(now); d > 0 {
			errs = append(errs, fmt.Errorf("%s failing for %s: %w", c.name, d.Round(time.Second), err))
		}
	}
	return errs
}

// unhealthy reports a problem that has lasted longer than after: a process
// that cannot publish, receive or write for that long should be restarted.
func (m *monitor) unhealthy(after time.Duration) error {
	now := time.Now()
	for _, c := range []*component{&m.publish, &m.admin, &m.warehouse} {
		if d, err := c.failingFor(now); d > after {
			return fmt.Errorf("%s has failed for %s (UNHEALTHY_AFTER %s): %w", c.name, d.Round(time.Second), after, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range m.missingNamesLocked() {
		if p := m.missing[name]; now.Sub(p.since) > after {
			return fmt.Errorf("missing for %s (UNHEALTHY_AFTER %s): %w", now.Sub(p.since).Round(time.Second), after, p.err)
		}
	}
	return nil
}
