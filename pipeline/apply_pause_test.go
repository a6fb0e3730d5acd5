package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// An outage of the warehouse pauses the apply stage: the payloads are held
// (no attempt counted, no retry spent, none poisoned), at most
// MAX_OUTSTANDING of them, the gauge and an apply-only process's /readyz
// say so, probes go on with backoff, and once the warehouse answers again
// the stage resumes by itself and applies every payload exactly once.
func TestApplyPausesOnAnOutageHoldsAndResumesByItself(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		const payloads = 30
		cfg := testConfig(t, mode)
		cfg.Stages = []pipeline.Stage{pipeline.StageApply}
		// 4 messages per stream, 8 in all: holding them stops the pulls.
		cfg.ReceiveStreams, cfg.MaxOutstanding = 2, 8
		faulty, inner, withFaulty := faultyWarehouse(t, cfg)
		outage := messages.Outage(&warehouse.ReasonError{Reason: warehouse.ReasonStorage,
			Err: errors.New("injected: database disk image is malformed")})
		faulty.FailNext(1<<30, outage)
		r := startServiceWith(t, cfg, withFaulty)

		pub := r.client.Publisher(cfg.TopicID)
		defer pub.Stop()
		payload, err := messages.Parse([]byte(insertOnly))
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, payloads)
		for i := range ids {
			ids[i] = fmt.Sprintf("paused-%02d", i)
			res := pub.Publish(context.Background(), &pubsub.Message{
				Data: payload.Canonical(), Attributes: map[string]string{googlecloud.UUIDHeaderKey: ids[i]},
			})
			if _, err := res.Get(context.Background()); err != nil {
				t.Fatal(err)
			}
		}

		// Paused, holding no more than MAX_OUTSTANDING lets it receive
		// (the streams' flow control; pstest may hand one stream all).
		maxHeld := 0.0
		if !eventually(15*time.Second, func() bool {
			m := scrape(t, r.base)
			maxHeld = max(maxHeld, m["gatekeeper_apply_held_payloads"])
			return m["gatekeeper_apply_paused"] == 1 && m["gatekeeper_apply_held_payloads"] > 0
		}) {
			t.Fatalf("not paused and holding within 15 s: %v; log:\n%s", pauseSeries(scrape(t, r.base)), r.logs)
		}
		code, _, body := probe(t, r.base, "/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"component":"apply"`) || !strings.Contains(body, "paused") || !strings.Contains(body, "malformed") {
			t.Errorf("/readyz of an apply-only process while paused: %d %s; want 503 naming the pause and the error", code, body)
		}

		// Probes go on, with backoff: one call after 1 s, the next 2 s
		// later, not one per held payload.
		calls := faulty.Calls()
		if !eventually(10*time.Second, func() bool { return faulty.Calls() >= calls+2 }) {
			t.Fatalf("fewer than 2 probes in 10 s while paused (%d calls)", faulty.Calls()-calls)
		}
		m := scrape(t, r.base)
		maxHeld = max(maxHeld, m["gatekeeper_apply_held_payloads"])
		if m["gatekeeper_apply_held_payloads"] == 0 || maxHeld > float64(cfg.MaxOutstanding) {
			t.Errorf("held %v now, at most %v; want some, never more than MAX_OUTSTANDING (%d) of %d", m["gatekeeper_apply_held_payloads"], maxHeld, cfg.MaxOutstanding, payloads)
		}
		if m[`gatekeeper_apply_retries_total{class="transient"}`] != 0 || m[`gatekeeper_payloads_total{backend="",outcome="poisoned"}`] != 0 {
			t.Errorf("while paused: %v retries, %v poisoned; want none", m[`gatekeeper_apply_retries_total{class="transient"}`],
				m[`gatekeeper_payloads_total{backend="",outcome="poisoned"}`])
		}

		// The warehouse answers again: every payload applies once.
		faulty.FailNext(0, nil)
		for _, id := range ids {
			waitApplied(t, inner, id, 30*time.Second)
		}
		if !eventually(10*time.Second, func() bool { return scrape(t, r.base)["gatekeeper_apply_paused"] == 0 }) {
			t.Fatalf("still paused after every payload applied: %v", pauseSeries(scrape(t, r.base)))
		}
		waitReady(t, r.base)
		if got := rows(t, inner, "table1"); len(got) != payloads {
			t.Errorf("table1 has %d rows for %d payloads", len(got), payloads)
		}
		m = scrape(t, r.base)
		if m["gatekeeper_apply_pauses_total"] != 1 || m["gatekeeper_apply_paused_seconds_total"] < 2 || maxHeld > float64(cfg.MaxOutstanding) {
			t.Errorf("after the pause: %v, at most %v held; want 1 pause of 2 s or more, at most %d held", pauseSeries(m), maxHeld, cfg.MaxOutstanding)
		}
		if n := m[`gatekeeper_payloads_total{backend="",outcome="poisoned"}`]; n != 0 {
			t.Errorf("%v payloads poisoned by an outage", n)
		}
		logs := r.logs.String()
		for text, want := range map[string]int{"Apply paused": 1, "Apply resumed": 1, "Apply attempt failed": 0, "Payload poisoned": 0} {
			if got := strings.Count(logs, text); got != want {
				t.Errorf("log has %q %d times, want %d:\n%s", text, got, want, logs)
			}
		}
	})
}

func pauseSeries(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, "gatekeeper_apply_pause") || strings.HasPrefix(k, "gatekeeper_apply_held") {
			out[k] = v
		}
	}
	return out
}
