package pause

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
)

// What the pause gives back, a message held past holdMax or one whose
// context ended at shutdown, is nacked: never poisoned, never counted as
// an attempt (RecordFailures is inside and never sees it).
func TestPauseGivesBackWhatItHoldsWithoutPoisoningIt(t *testing.T) {
	t.Parallel()
	p := mustNew(t, func(context.Context) error { return messages.Outage(errors.New("still down")) })
	p.holdMax, p.probeMin, p.probeMax = 300*time.Millisecond, time.Hour, time.Hour
	defer p.Stop()
	var calls atomic.Int32
	h := p.Middleware(func(*message.Message) ([]*message.Message, error) {
		calls.Add(1)
		return nil, messages.Outage(errors.New("database or disk is full"))
	})

	// Held past holdMax: given back as an outage.
	msg := message.NewMessage("held", nil)
	started := time.Now()
	_, err := h(msg)
	if took := time.Since(started); took < p.holdMax || took > p.holdMax+2*time.Second {
		t.Errorf("given back after %v, want about %v", took, p.holdMax)
	}
	if messages.ClassOf(err) != messages.ClassOutage || !errors.Is(err, ErrPaused) {
		t.Fatalf("given back with %v (class %s); want an outage, ErrPaused", err, messages.ClassOf(err))
	}
	if calls.Load() != 1 {
		t.Errorf("the handler ran %d times, want once: no probe was due", calls.Load())
	}
	if since, err := p.State(); since.IsZero() || err == nil {
		t.Errorf("state %v %v, want paused", since, err)
	}

	// Shutdown: the context ends while it is held.
	ctx, cancel := context.WithCancel(context.Background())
	msg = message.NewMessage("stopping", nil)
	msg.SetContext(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := h(msg)
		done <- err
	}()
	waitFor(t, "the message held", func() bool { return p.Metrics().Held == 1 })
	cancel()
	err = <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("at shutdown: %v, want the cancellation, which the poison queue nacks", err)
	}
	if calls.Load() != 1 {
		t.Errorf("a message that arrived while paused reached the handler (%d calls)", calls.Load())
	}
}

// With nothing held, the probe is the warehouse's Ping: the stage resumes
// on its own once it answers.
func TestPauseWithNothingHeldProbesWithPing(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	var pings atomic.Int32
	p := mustNew(t, func(context.Context) error {
		pings.Add(1)
		if down.Load() {
			return messages.Outage(errors.New("database is locked"))
		}
		return nil
	})
	p.probeMin, p.probeMax = 10*time.Millisecond, 40*time.Millisecond
	defer p.Stop()
	h := p.Middleware(func(*message.Message) ([]*message.Message, error) {
		return nil, messages.Outage(errors.New("database is locked"))
	})
	// One attempt meets the outage, then its message leaves at once.
	p.holdMax = time.Nanosecond
	if _, err := h(message.NewMessage("1", nil)); messages.ClassOf(err) != messages.ClassOutage {
		t.Fatalf("%v, want an outage", err)
	}
	waitFor(t, "three pings", func() bool { return pings.Load() >= 3 })
	if since, _ := p.State(); since.IsZero() {
		t.Fatal("resumed while Ping still fails")
	}
	down.Store(false)
	waitFor(t, "resumed after Ping answered", func() bool { since, _ := p.State(); return since.IsZero() })
	if m := p.Metrics(); m.Paused || m.Pauses != 1 || m.PausedFor <= 0 {
		t.Errorf("metrics after the pause: %+v", m)
	}
}

// waitFor polls cond until it holds, and fails the test if it does not
// within 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond) // the poll's interval
	}
}

func mustNew(t *testing.T, ping func(context.Context) error) *Pause {
	t.Helper()
	p, err := New(Config{Warehouse: "test", Ping: ping}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := Config{HoldMax: -1, ProbeMin: time.Minute, ProbeMax: time.Second}.Validate()
	want := "pause config: Warehouse is required\npause config: Ping is required\n" +
		"pause config: HoldMax, ProbeMin, ProbeMax and LogEvery must not be negative\npause config: ProbeMin (1m0s) must not exceed ProbeMax (1s)"
	if err == nil || err.Error() != want {
		t.Errorf("Validate: %v, want:\n%s", err, want)
	}
}
