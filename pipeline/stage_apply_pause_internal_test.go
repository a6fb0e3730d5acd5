package pipeline

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
	p := newApplyPause("test", func(context.Context) error { return messages.Outage(errors.New("still down")) }, slog.New(slog.DiscardHandler))
	p.holdMax, p.probeMin, p.probeMax = 300*time.Millisecond, time.Hour, time.Hour
	defer p.stop()
	var calls atomic.Int32
	h := p.middleware(func(*message.Message) ([]*message.Message, error) {
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
	if messages.ClassOf(err) != messages.ClassOutage || !errors.Is(err, errPaused) || shouldPoison(err) {
		t.Fatalf("given back with %v (class %s, poison %v); want an outage the poison queue lets through", err, messages.ClassOf(err), shouldPoison(err))
	}
	if calls.Load() != 1 {
		t.Errorf("the handler ran %d times, want once: no probe was due", calls.Load())
	}
	if since, err := p.state(); since.IsZero() || err == nil {
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
	for p.metrics().Held != 1 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	err = <-done
	if !errors.Is(err, context.Canceled) || shouldPoison(err) {
		t.Fatalf("at shutdown: %v (poison %v), want the cancellation, not poisoned", err, shouldPoison(err))
	}
	if calls.Load() != 1 {
		t.Errorf("a message that arrived while paused reached the handler (%d calls)", calls.Load())
	}
}

// With nothing held, the probe is the warehouse's Ping: the stage resumes
// on its own once it answers.
func TestPauseWithNothingHeldProbesWithPing(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	var pings atomic.Int32
	p := newApplyPause("test", func(context.Context) error {
		pings.Add(1)
		if down.Load() {
			return messages.Outage(errors.New("database is locked"))
		}
		return nil
	}, slog.New(slog.DiscardHandler))
	p.probeMin, p.probeMax = 10*time.Millisecond, 40*time.Millisecond
	defer p.stop()
	h := p.middleware(func(*message.Message) ([]*message.Message, error) {
		return nil, messages.Outage(errors.New("database is locked"))
	})
	// One attempt meets the outage, then its message leaves at once.
	p.holdMax = time.Nanosecond
	if _, err := h(message.NewMessage("1", nil)); messages.ClassOf(err) != messages.ClassOutage {
		t.Fatalf("%v, want an outage", err)
	}
	for pings.Load() < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	if since, _ := p.state(); since.IsZero() {
		t.Fatal("resumed while Ping still fails")
	}
	down.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if since, _ := p.state(); since.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not resumed 5 s after Ping answered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if m := p.metrics(); m.Paused || m.Pauses != 1 || m.PausedFor <= 0 {
		t.Errorf("metrics after the pause: %+v", m)
	}
}

// An attempt that meets an outage is not an attempt of the payload's.
func TestRecordFailuresSkipsOutages(t *testing.T) {
	h := RecordFailures(time.Now, slog.New(slog.DiscardHandler))(func(*message.Message) ([]*message.Message, error) {
		return nil, messages.Outage(errors.New("disk full"))
	})
	msg := message.NewMessage("1", nil)
	_, _ = h(msg)
	_, _ = h(msg)
	if a, c := msg.Metadata.Get(messages.MetaAttempts), msg.Metadata.Get(messages.MetaErrorClass); a != "" || c != "" {
		t.Fatalf("attempts %q, class %q recorded for outages; want nothing", a, c)
	}
}
