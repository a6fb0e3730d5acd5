package health

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/transport"
)

// fakePubSub has every resource in place and answers.
type fakePubSub struct{}

func (fakePubSub) Resources() []transport.Resource { return nil }
func (fakePubSub) Ensure(context.Context, transport.Resource) (bool, error) {
	return false, nil
}
func (fakePubSub) AcceptedPath() []string             { return nil }
func (fakePubSub) AcceptedSubscription(string) string { return "" }
func (fakePubSub) Ping(context.Context) error         { return nil }

// answering is a warehouse whose probe succeeds.
type answering struct{}

func (answering) Ping(context.Context) error { return nil }

// newTestMonitor is New for cfg, with a fake Pub/Sub unless cfg has one.
func newTestMonitor(t *testing.T, cfg Config) *Monitor {
	t.Helper()
	if cfg.PubSub == nil {
		cfg.PubSub = fakePubSub{}
	}
	m, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// healthzOf answers /healthz for m and decodes it.
func healthzOf(t *testing.T, m *Monitor) (int, healthAnswer) {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Healthz(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var a healthAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatalf("/healthz body %q: %v", rec.Body.String(), err)
	}
	return rec.Code, a
}

// An apply stage that holds payloads and commits nothing, while the
// warehouse answers, for longer than both UNHEALTHY_AFTER and the longest
// a payload may take with its retries, is wedged: /healthz asks for a
// restart. Not while the warehouse is the one failing (a restart would
// find it as it is), not once a group commits, not while it holds nothing.
func TestWedgedApplyStageAsksForARestart(t *testing.T) {
	var handling sync.Map
	s := newTestMonitor(t, Config{
		Store: answering{}, Apply: true, Interval: time.Second,
		UnhealthyAfter: time.Minute, MaxHandlingTime: 7*time.Minute + 50*time.Second, // the default settings' longest: 6 attempts of 60 s, 5 backoffs of 10 s, and a minute
		ApplyPaused: func() (time.Time, error) { return time.Time{}, nil },
		ApplyHeld: func() int {
			held := 0
			handling.Range(func(any, any) bool { held++; return true })
			return held
		},
	})
	limit := max(s.cfg.UnhealthyAfter, s.cfg.MaxHandlingTime)
	idle := time.Now().Add(-limit - time.Minute)
	s.applyIdleAt.Store(&idle)

	// Holding nothing: not wedged, however long ago it last committed.
	if code, a := healthzOf(t, s); code != 200 || a.Status != "ok" {
		t.Fatalf("/healthz holding nothing: %d %+v", code, a)
	}
	handling.Store("p1", time.Now())
	code, a := healthzOf(t, s)
	if code != 503 || a.Status != "unhealthy" || len(a.Reasons) != 1 || a.Reasons[0].Component != "apply" ||
		a.Reasons[0].Effect != effectRestart || a.Error == "" {
		t.Fatalf("/healthz wedged: %d %+v, want 503 naming the apply stage", code, a)
	}

	// The warehouse failing explains it: degraded, no restart.
	s.Committed(errors.New("database disk image is malformed"), nil)
	if code, a := healthzOf(t, s); code != 200 || a.Status != "degraded" || len(a.Reasons) != 1 || a.Reasons[0].Component != "warehouse" {
		t.Fatalf("/healthz with the warehouse failing: %d %+v, want 200 degraded naming the warehouse", code, a)
	}
	// A commit that succeeds: working.
	s.Committed(nil, nil)
	if code, a := healthzOf(t, s); code != 200 || a.Status != "ok" {
		t.Fatalf("/healthz after a commit: %d %+v", code, a)
	}
	// Recently idle: not long enough to be wedged.
	s.lastCommit.Store(nil)
	now := time.Now()
	s.applyIdleAt.Store(&now)
	if code, a := healthzOf(t, s); code != 200 || a.Status != "ok" {
		t.Fatalf("/healthz busy for a moment: %d %+v", code, a)
	}
}

// Publishing that fails asks for a restart only past UNHEALTHY_AFTER;
// before, it is named as degraded.
func TestPublishFailingRestartsOnlyPastUnhealthyAfter(t *testing.T) {
	s := newTestMonitor(t, Config{Interval: time.Second, UnhealthyAfter: 50 * time.Millisecond})
	s.Published("accepted", errors.New("unavailable"))
	if code, a := healthzOf(t, s); code != 200 || a.Status != "degraded" || a.Reasons[0].Component != "pubsub.publish" {
		t.Fatalf("/healthz with publishing failing a moment: %d %+v", code, a)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, a := healthzOf(t, s)
		if code == 503 && a.Status == "unhealthy" && a.Reasons[0].Effect == effectRestart {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz never asked for a restart past UNHEALTHY_AFTER: %d %+v", code, a)
		}
		time.Sleep(10 * time.Millisecond) // the poll's interval; the deadline bounds it
	}
	s.Published("accepted", nil)
	if code, a := healthzOf(t, s); code != 200 || a.Status != "ok" {
		t.Fatalf("/healthz after a publish succeeded: %d %+v", code, a)
	}
}
