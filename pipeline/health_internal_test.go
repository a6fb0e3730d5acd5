package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/transport"
)

// healthzOf answers /healthz for s and decodes it.
func healthzOf(t *testing.T, s *Service) (int, healthAnswer) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.healthz(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
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
	cfg := DefaultConfig()
	cfg.Warehouse = "sqlite:" + t.TempDir() + "/warehouse.db"
	cfg = cfg.WithDefaults()
	cfg.UnhealthyAfter = time.Minute
	store, err := OpenWarehouse(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	s := &Service{cfg: cfg, apply: &applyStage{pause: newApplyPause(cfg.Warehouse, store.Ping, slog.New(slog.DiscardHandler))}, Store: store,
		monitor: newMonitor(&transport.PubSub{}, store, time.Second, time.Minute, nil, slog.New(slog.DiscardHandler))}
	limit := max(cfg.UnhealthyAfter, cfg.maxHandlingTime())
	idle := time.Now().Add(-limit - time.Minute)
	s.applyIdleAt.Store(&idle)

	// Holding nothing: not wedged, however long ago it last committed.
	if code, a := healthzOf(t, s); code != 200 || a.Status != "ok" {
		t.Fatalf("/healthz holding nothing: %d %+v", code, a)
	}
	s.handling.Store("p1", time.Now())
	code, a := healthzOf(t, s)
	if code != 503 || a.Status != "unhealthy" || len(a.Reasons) != 1 || a.Reasons[0].Component != "apply" ||
		a.Reasons[0].Effect != effectRestart || a.Error == "" {
		t.Fatalf("/healthz wedged: %d %+v, want 503 naming the apply stage", code, a)
	}

	// The warehouse failing explains it: degraded, no restart.
	s.monitor.committed(errors.New("database disk image is malformed"), nil)
	if code, a := healthzOf(t, s); code != 200 || a.Status != "degraded" || len(a.Reasons) != 1 || a.Reasons[0].Component != "warehouse" {
		t.Fatalf("/healthz with the warehouse failing: %d %+v, want 200 degraded naming the warehouse", code, a)
	}
	// A commit that succeeds: working.
	s.monitor.committed(nil, nil)
	if code, a := healthzOf(t, s); code != 200 || a.Status != "ok" {
		t.Fatalf("/healthz after a commit: %d %+v", code, a)
	}
	// Recently idle: not long enough to be wedged.
	s.monitor.lastCommit.Store(nil)
	now := time.Now()
	s.applyIdleAt.Store(&now)
	if code, a := healthzOf(t, s); code != 200 || a.Status != "ok" {
		t.Fatalf("/healthz busy for a moment: %d %+v", code, a)
	}
}

// Publishing that fails asks for a restart only past UNHEALTHY_AFTER;
// before, it is named as degraded.
func TestPublishFailingRestartsOnlyPastUnhealthyAfter(t *testing.T) {
	cfg := DefaultConfig().WithDefaults()
	cfg.UnhealthyAfter = 50 * time.Millisecond
	s := &Service{cfg: cfg, monitor: newMonitor(&transport.PubSub{}, nil, time.Second, time.Minute, nil, slog.New(slog.DiscardHandler))}
	s.monitor.published("accepted", errors.New("unavailable"))
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
		time.Sleep(10 * time.Millisecond)
	}
	s.monitor.published("accepted", nil)
	if code, a := healthzOf(t, s); code != 200 || a.Status != "ok" {
		t.Fatalf("/healthz after a publish succeeded: %d %+v", code, a)
	}
}
