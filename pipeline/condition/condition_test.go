package condition_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/condition"
)

// lines is a slog handler that keeps each record as "LEVEL msg k=v ...".
type lines struct {
	mu  sync.Mutex
	got []string
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *lines) WithGroup(string) slog.Handler            { return l }
func (l *lines) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.got = append(l.got, b.String())
	l.mu.Unlock()
	return nil
}

// clock is a deterministic clock the test moves by hand.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) advance(d time.Duration) { c.now = c.now.Add(d) }
func newClock() *clock                   { return &clock{now: time.Date(2026, 12, 6, 22, 0, 0, 0, time.UTC)} }
func newCond(t *testing.T, cfg condition.Config, h *lines) *condition.Condition {
	t.Helper()
	c, err := condition.New(cfg, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// One episode of 10,000 failures over 2m30s is four lines: the start, one
// count per minute, and the end, which counts every failure.
func TestConditionLogsOnceThenCountsThenTheEnd(t *testing.T) {
	h, clk := &lines{}, newClock()
	c := newCond(t, condition.Config{Name: "Outbox writes", Now: clk.Now, Attrs: []any{"outbox", "/x/outbox.db"}}, h)
	disk := errors.New("database or disk is full")
	started := clk.now
	for range 10_000 {
		c.Fail(disk)
		clk.advance(15 * time.Millisecond) // 10,000 × 15ms = 2m30s
	}
	if st := c.State(); !st.Failing() || !st.Since.Equal(started) || st.Err != disk || st.Failures != 10_000 ||
		!st.Last.Equal(clk.now.Add(-15*time.Millisecond)) {
		t.Errorf("State while failing = %+v; want since %v, 10000 failures, %v", st, started, disk)
	}
	c.OK()
	c.OK() // a second success says nothing more
	want := []string{
		"ERROR Outbox writes failing outbox=/x/outbox.db error=database or disk is full",
		"ERROR Outbox writes still failing outbox=/x/outbox.db failures=4000 over=1m0s failures_total=4001 failing_for=1m0s error=database or disk is full",
		"ERROR Outbox writes still failing outbox=/x/outbox.db failures=4000 over=1m0s failures_total=8001 failing_for=2m0s error=database or disk is full",
		"INFO Outbox writes recovered outbox=/x/outbox.db after=2m30s failures=10000 last_error=database or disk is full",
	}
	if strings.Join(h.got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(h.got, "\n"), strings.Join(want, "\n"))
	}
	if st := c.State(); st.Failing() || st != (condition.Status{}) {
		t.Errorf("State after OK = %+v; want zero", st)
	}
	// A new episode starts with its own line.
	c.Fail(disk)
	if len(h.got) != 5 || !strings.HasPrefix(h.got[4], "ERROR Outbox writes failing") {
		t.Errorf("a second episode did not start with its own line: %q", h.got)
	}
}

// With Quiet, successes between failures do not end the condition: only one
// that comes Quiet after the last failure does.
func TestConditionQuietKeepsInterleavedSuccessesFromEndingIt(t *testing.T) {
	h, clk := &lines{}, newClock()
	c := newCond(t, condition.Config{Name: "Shedding", Warn: true, Quiet: time.Second, Interval: 10 * time.Second, Now: clk.Now}, h)
	shed := errors.New("too many payloads")
	for range 100 {
		c.Fail(shed)
		clk.advance(50 * time.Millisecond)
		c.OK()
		clk.advance(50 * time.Millisecond)
	}
	if len(h.got) != 1 || h.got[0] != "WARN Shedding failing error=too many payloads" {
		t.Fatalf("interleaved successes ended the condition: %q", h.got)
	}
	clk.advance(time.Second)
	c.OK()
	if len(h.got) != 2 || h.got[1] != "INFO Shedding recovered after=11s failures=100 last_error=too many payloads" {
		t.Fatalf("the end after a quiet second: %q", h.got)
	}
}

// A group keeps one condition per cause; a success ends them all.
func TestGroupOneLinePerCause(t *testing.T) {
	h, clk := &lines{}, newClock()
	g, err := condition.NewGroup(condition.Config{Name: "Ingestion refused", Warn: true, Now: clk.Now}, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	g.OK() // nothing holds: nothing logged
	for range 50 {
		g.Fail("outbox", errors.New("disk full"))
		g.Fail("shed", errors.New("too many"))
		clk.advance(time.Millisecond)
	}
	g.OK()
	want := []string{
		"WARN Ingestion refused (outbox) failing cause=outbox error=disk full",
		"WARN Ingestion refused (shed) failing cause=shed error=too many",
	}
	if len(h.got) != 4 || strings.Join(h.got[:2], "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines: %q", h.got)
	}
	for _, l := range h.got[2:] {
		if !strings.HasPrefix(l, "INFO Ingestion refused (") || !strings.Contains(l, "failures=50") {
			t.Errorf("end line: %q", l)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	_, err := condition.New(condition.Config{Interval: -1, Quiet: -1}, nil)
	if err == nil || !strings.Contains(err.Error(), "Name is required") || !strings.Contains(err.Error(), "Interval") ||
		!strings.Contains(err.Error(), "Quiet") {
		t.Errorf("Validate = %v, want every problem", err)
	}
}
