package pipeline_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
)

func keyedInsert(v int) string {
	return `{"activities":[{"operation":"insert","table":"idem","col_names":["a"],"col_types":["INTEGER"],"col_values":[` +
		string(rune('0'+v)) + `]}]}`
}

// postQuiet posts from a goroutine, where t.Fatal may not be called.
func postQuiet(base, body string, header ...string) (int, http.Header, error) {
	req, err := http.NewRequest(http.MethodPost, base+pipeline.IngestPath, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

// The first request with a key is held in the gate, after validation and
// before its publish (WithBeforePublish), for as long as the test wants:
// that is the window in which a second request with the key must get 409,
// and a hook makes it deterministic where a slow Pub/Sub would be a race.
func TestIdempotencyKeyStatuses(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		var hold atomic.Pointer[chan struct{}]
		entered := make(chan struct{}, 1)
		hook := pipeline.WithBeforePublish(func() {
			if ch := hold.Load(); ch != nil {
				entered <- struct{}{}
				<-*ch
			}
		})
		cfg := testConfig(t, mode)
		r := startServiceWith(t, cfg, hook)
		accepted := r.watch(t, cfg.TopicID)

		id1 := edge.IdempotentPayloadID("", "order-1")
		steps := []struct {
			name, key, body string
			status          int
			id              string
			replayed        bool
			message         string
		}{
			{"first request", "order-1", keyedInsert(1), 200, id1, false, "Valid Schema"},
			{"retry, same payload", "order-1", keyedInsert(1), 200, id1, true, "Valid Schema"},
			{"retry, same payload written otherwise", `"order-1"`, " {\"activities\": [ {\"col_values\":[1], \"operation\":\"insert\",\"table\":\"idem\",\"col_names\":[\"a\"],\"col_types\":[\"INTEGER\"]}]}", 200, id1, true, "Valid Schema"},
			{"same key, other payload", "order-1", keyedInsert(2), 422, "", false, "Unprocessable Content"},
			{"same key, invalid payload", "order-1", `{"activities":[{}]}`, 400, "", false, "Invalid Schema"},
			{"empty key", "", keyedInsert(3), 400, "", false, "Invalid Idempotency-Key"},
			{"key too long", strings.Repeat("k", 256), keyedInsert(3), 400, "", false, "Invalid Idempotency-Key"},
			{"another key", "order-2", keyedInsert(1), 200, edge.IdempotentPayloadID("", "order-2"), false, "Valid Schema"},
		}
		for _, s := range steps {
			header := []string{"Idempotency-Key", s.key}
			code, resp, h := post(t, r.base, "application/json", s.body, header...)
			if code != s.status || resp.ID != s.id || resp.Message != s.message {
				t.Fatalf("%s: %d %q %q %+v; want %d %q %q", s.name, code, resp.ID, resp.Message, resp.Error, s.status, s.id, s.message)
			}
			if got := h.Get("Idempotent-Replayed"); (got == "true") != s.replayed || (got != "" && got != "true") {
				t.Fatalf("%s: Idempotent-Replayed %q, want replayed=%v", s.name, got, s.replayed)
			}
		}
		// Published once per key, not once per request; the emulator
		// delivers the two in either order.
		published := map[string]bool{}
		for range 2 {
			published[receive(t, accepted, 10*time.Second).Attributes[googlecloud.UUIDHeaderKey]] = true
		}
		if id2 := edge.IdempotentPayloadID("", "order-2"); len(published) != 2 || !published[id1] || !published[id2] {
			t.Fatalf("published %v, want %s and %s once each", published, id1, id2)
		}
		select {
		case m := <-accepted:
			t.Fatalf("a replay was published again: %s", m.Data)
		case <-time.After(300 * time.Millisecond):
		}

		// 409 while the first request with a key is being published.
		release := make(chan struct{})
		hold.Store(&release)
		first := make(chan int, 1)
		go func() {
			code, _, _ := postQuiet(r.base, keyedInsert(4), "Idempotency-Key", "order-3")
			first <- code
		}()
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the first request never reached the publish")
		}
		hold.Store(nil)
		code, resp, _ := post(t, r.base, "application/json", keyedInsert(4), "Idempotency-Key", "order-3")
		if code != 409 || resp.Message != "Conflict" || len(resp.Error) != 1 || !strings.Contains(resp.Error[0].Message, "still being processed") {
			t.Fatalf("while the first is published: %d %+v, want 409 saying it is still being processed", code, resp)
		}
		close(release)
		if code := <-first; code != 200 {
			t.Fatalf("the held first request: %d, want 200", code)
		}
		code, resp, h := post(t, r.base, "application/json", keyedInsert(4), "Idempotency-Key", "order-3")
		if code != 200 || h.Get("Idempotent-Replayed") != "true" || resp.ID != edge.IdempotentPayloadID("", "order-3") {
			t.Fatalf("after the first answered: %d %+v %v, want 200 replayed", code, resp, h)
		}

		// Without a key: a fresh id per request, as before.
		_, a, _ := post(t, r.base, "application/json", keyedInsert(5))
		_, b, h := post(t, r.base, "application/json", keyedInsert(5))
		if a.ID == b.ID || a.ID == "" || h.Get("Idempotent-Replayed") != "" {
			t.Fatalf("without a key: ids %q and %q, Idempotent-Replayed %q", a.ID, b.ID, h.Get("Idempotent-Replayed"))
		}
		for _, id := range []string{id1, edge.IdempotentPayloadID("", "order-2"), edge.IdempotentPayloadID("", "order-3"), a.ID, b.ID} {
			waitApplied(t, r.svc.Store, id, 15*time.Second)
		}
		got := rows(t, r.svc.Store, "idem")
		if len(got) != 5 { // 1, order-2's 1, order-3's 4, and 5 twice
			t.Fatalf("rows %v, want 5: one per key and one per keyless request", got)
		}
	})
}

// With the key forgotten (the record's TTL passed, or another ingestion
// process took the retry), other content under the key is accepted, and
// the ledger's payload hash stops it: poisoned with the reason, never
// applied.
func TestIdempotencyKeyReusedForOtherContentIsPoisonedAtApply(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		cfg.IdempotencyTTL = time.Nanosecond
		r := startService(t, cfg)
		poisoned := r.watch(t, cfg.PoisonTopicID)
		id := edge.IdempotentPayloadID("", "reused")
		code, resp, _ := post(t, r.base, "application/json", keyedInsert(1), "Idempotency-Key", "reused")
		if code != 200 || resp.ID != id {
			t.Fatalf("first: %d %+v", code, resp)
		}
		waitApplied(t, r.svc.Store, id, 15*time.Second)
		code, resp, _ = post(t, r.base, "application/json", keyedInsert(2), "Idempotency-Key", "reused")
		if code != 200 || resp.ID != id {
			t.Fatalf("other content once the key is forgotten: %d %+v, want 200 (only the ledger can tell now)", code, resp)
		}
		m := receive(t, poisoned, 15*time.Second)
		want := "payload id " + id + " was applied with different content: same Idempotency-Key, different payload"
		if reason := m.Attributes[middleware.ReasonForPoisonedKey]; !strings.Contains(reason, want) {
			t.Fatalf("poison reason %q, want %q", reason, want)
		}
		if got := rows(t, r.svc.Store, "idem"); len(got) != 1 || got[0]["a"] != int64(1) {
			t.Fatalf("rows %v, want only the first payload's", got)
		}
	})
}
