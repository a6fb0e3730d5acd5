// Package condition logs a condition that repeats (a disk that stays full,
// a Pub/Sub that stays down, requests shed under load) the way an operator
// can read it: one line when it starts, then at most one line per interval
// with the count of failures since the line before, and one line when it
// ends. One ERROR line per request on a full disk (28,000 of them in one
// fault test) hid the start and the end of the fault it was about.
//
// It also remembers since when the condition holds and its last error, so
// that the health probes can name it.
package condition

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Condition.
type Config struct {
	// Name says what fails; it starts every line: "Outbox writes" gives
	// "Outbox writes failing", "Outbox writes still failing" and "Outbox
	// writes recovered". Required.
	Name string
	// Warn logs the failing lines at WARN instead of ERROR: for a condition
	// that is the service doing its job (shedding load), not a fault. The
	// line that says it ended is INFO either way.
	Warn bool
	// Interval is the least time between two "still failing" lines.
	// Optional, default 1m.
	Interval time.Duration
	// Quiet is how long no failure must have come for OK to end the
	// condition. Zero (the default): the first OK ends it; right where one
	// success proves the fault gone (a write that succeeds). Where failures
	// and successes interleave while the condition lasts (some requests
	// shed, others not), a quiet period keeps it from being logged as
	// ending and starting again many times.
	Quiet time.Duration
	// Attrs are added to every line (for example the file that fails).
	// Optional.
	Attrs []any
	// Now is the clock. Optional, default time.Now; tests set it.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("condition: Name is required"))
	}
	if c.Interval < 0 {
		errs = append(errs, errors.New("condition: Interval must not be negative"))
	}
	if c.Quiet < 0 {
		errs = append(errs, errors.New("condition: Quiet must not be negative"))
	}
	return errors.Join(errs...)
}

// Condition is one thing that fails repeatedly, logged once per episode
// plus a count per interval. Safe for concurrent use; OK on a condition
// that holds is one atomic load.
type Condition struct {
	cfg    Config
	logger *slog.Logger
	level  slog.Level

	failing atomic.Bool
	mu      sync.Mutex
	since   time.Time // the episode's first failure
	last    time.Time // its latest failure
	logged  time.Time // the last line logged about it
	total   int       // failures in the episode
	unseen  int       // failures since the last line
	lastErr error
}

// New returns a Condition, or the problems with cfg.
func New(cfg Config, logger *slog.Logger) (*Condition, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	level := slog.LevelError
	if cfg.Warn {
		level = slog.LevelWarn
	}
	return &Condition{cfg: cfg, logger: logger, level: level}, nil
}

// Fail records one failure. The first of an episode is logged at once; the
// ones after it are counted, and logged as a count when Interval has passed
// since the last line.
func (c *Condition) Fail(err error) {
	now := c.cfg.Now()
	c.mu.Lock()
	if !c.failing.Load() {
		c.since, c.last, c.logged, c.total, c.unseen, c.lastErr = now, now, now, 1, 0, err
		c.failing.Store(true)
		c.mu.Unlock()
		c.log(c.level, c.cfg.Name+" failing", "error", err)
		return
	}
	c.total++
	c.unseen++
	c.last, c.lastErr = now, err
	if now.Sub(c.logged) < c.cfg.Interval {
		c.mu.Unlock()
		return
	}
	n, over, total, failingFor := c.unseen, now.Sub(c.logged), c.total, now.Sub(c.since)
	c.unseen, c.logged = 0, now
	c.mu.Unlock()
	c.log(c.level, c.cfg.Name+" still failing", "failures", n, "over", over.Round(time.Millisecond).String(),
		"failures_total", total, "failing_for", failingFor.Round(time.Millisecond).String(), "error", err)
}

// OK records a success. It ends the condition, with one line, when it
// holds and no failure came for Config.Quiet.
func (c *Condition) OK() {
	if !c.failing.Load() {
		return
	}
	now := c.cfg.Now()
	c.mu.Lock()
	if !c.failing.Load() || now.Sub(c.last) < c.cfg.Quiet {
		c.mu.Unlock()
		return
	}
	c.failing.Store(false)
	after, total, lastErr := now.Sub(c.since), c.total, c.lastErr
	c.lastErr = nil
	c.mu.Unlock()
	c.log(slog.LevelInfo, c.cfg.Name+" recovered", "after", after.Round(time.Millisecond).String(),
		"failures", total, "last_error", lastErr)
}

// Status is where a condition stands.
type Status struct {
	// Since is the first failure of the episode under way; zero while the
	// condition does not hold.
	Since time.Time
	// Last is its latest failure, and Err that failure's error.
	Last time.Time
	Err  error
	// Failures counts the episode's failures.
	Failures int
}

// Failing is whether the condition holds.
func (s Status) Failing() bool { return !s.Since.IsZero() }

// State reports where the condition stands. While it does not hold, this
// is one atomic load.
func (c *Condition) State() Status {
	if !c.failing.Load() {
		return Status{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.failing.Load() {
		return Status{}
	}
	return Status{Since: c.since, Last: c.last, Err: c.lastErr, Failures: c.total}
}

func (c *Condition) log(level slog.Level, msg string, args ...any) {
	c.logger.Log(context.Background(), level, msg, append(append([]any{}, c.cfg.Attrs...), args...)...)
}

// Group is a set of conditions of one kind told apart by their cause, for
// a place that fails for several reasons at once (the edge's 503s: the
// outbox, a publish, shed load): one line per distinct cause. A success
// ends them all. OK while none holds is one atomic load.
type Group struct {
	cfg    Config
	logger *slog.Logger

	any   atomic.Bool
	mu    sync.Mutex
	conds map[string]*Condition
}

// NewGroup returns a Group whose conditions are configured by cfg, each
// named cfg.Name followed by its cause, or the problems with cfg.
func NewGroup(cfg Config, logger *slog.Logger) (*Group, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Group{cfg: cfg, logger: logger, conds: map[string]*Condition{}}, nil
}

// Fail records one failure of cause.
func (g *Group) Fail(cause string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.conds[cause]
	if c == nil {
		cfg := g.cfg
		cfg.Name = g.cfg.Name + " (" + cause + ")"
		cfg.Attrs = append(append([]any{}, g.cfg.Attrs...), "cause", cause)
		c, _ = New(cfg, g.logger) // cfg was validated by NewGroup
		g.conds[cause] = c
	}
	c.Fail(err)
	g.any.Store(true)
}

// OK records a success for every cause.
func (g *Group) OK() {
	if !g.any.Load() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	still := false
	for _, c := range g.conds {
		c.OK()
		still = still || c.failing.Load()
	}
	g.any.Store(still)
}
