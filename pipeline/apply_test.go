package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/pipeline/operator"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/sqlite"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// eventually polls ok every 20 ms until it holds or within passes.
func eventually(within time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if ok() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // the poll's interval
	}
}

// waitApplied polls the ledger until the payload is applied.
func waitApplied(t *testing.T, store warehouse.Reader, id string, within time.Duration) {
	t.Helper()
	if !eventually(within, func() bool {
		ok, err := store.Applied(context.Background(), id)
		return err == nil && ok
	}) {
		t.Fatalf("payload %s not applied within %s", id, within)
	}
}

func rows(t *testing.T, store warehouse.Reader, table string) []map[string]any {
	t.Helper()
	rs, err := store.Rows(context.Background(), table, 0)
	if err != nil {
		t.Fatalf("rows of %s: %v", table, err)
	}
	return rs
}

func TestApplyEndToEnd(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		r := startService(t, cfg)
		applied := r.watch(t, cfg.AppliedTopicID)
		store := r.svc.Store

		// The replaced service's functional payloads. Its example deletes by
		// column e, which its insert does not have: a delete naming a missing
		// column fails the whole payload, so a first insert creates e.
		seed := `{"activities":[{"operation":"insert","table":"table1","col_names":["a","b","c","e"],"col_types":["INTEGER","TEXT","TEXT","TEXT"],"col_values":[3,"seed","2019-04-28 10:24:30.183414","something"]}]}`
		var ids []string
		for _, body := range []string{seed, examplePayload, insertOnly} {
			code, resp, _ := post(t, r.base, "application/json", body)
			if code != 200 {
				t.Fatalf("POST %s: %d %+v", body, code, resp)
			}
			waitApplied(t, store, resp.ID, 15*time.Second)
			ids = append(ids, resp.ID)
		}
		// The example's delete removed the seed row; its insert and the
		// insert-only payload added one row each.
		got := rows(t, store, "table1")
		if len(got) != 2 || got[0]["a"] != int64(1) || got[1]["a"] != int64(1) || got[0]["b"] != "Backup and Restore" {
			t.Fatalf("table1 = %v, want the two inserted rows", got)
		}
		deleteOnly := `{"activities":[{"operation":"delete","table":"table1","value_to_delete":{"col_names":["a","b"],"col_types":["INTEGER","TEXT"],"col_values":[1,"Backup and Restore"]}}]}`
		code, third, _ := post(t, r.base, "application/json", deleteOnly, "X-Correlation-ID", "corr-delete")
		if code != 200 {
			t.Fatalf("delete: %d %+v", code, third)
		}
		waitApplied(t, store, third.ID, 15*time.Second)
		if got := rows(t, store, "table1"); len(got) != 0 {
			t.Fatalf("table1 has %d rows after deleting both, want 0: %v", len(got), got)
		}
		second := struct{ ID string }{ids[1]}

		events := map[string]messages.AppliedEvent{}
		correlation := map[string]string{}
		for len(events) < 4 {
			m := receive(t, applied, 10*time.Second)
			var ev messages.AppliedEvent
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				t.Fatalf("applied event %s: %v", m.Data, err)
			}
			events[ev.PayloadID] = ev
			correlation[ev.PayloadID] = m.Attributes[messages.MetaCorrelationID]
		}
		if got := correlation[third.ID]; got != "corr-delete" {
			t.Errorf("applied event's correlation_id %q, want the POST's corr-delete", got)
		}
		if ev := events[second.ID]; ev.RowsAffected != 2 || len(ev.Tables) != 1 || ev.Tables[0] != "table1" || ev.AppliedAt.IsZero() {
			t.Errorf("applied event of the example: %+v", ev)
		}
		if ev := events[third.ID]; ev.RowsAffected != 2 {
			t.Errorf("delete of two rows reported %d rows affected", ev.RowsAffected)
		}
	})
}

func TestApplyPoisonsPayloadWithMissingTable(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		r := startService(t, cfg)
		poisoned := r.watch(t, cfg.PoisonTopicID)
		body := `{"activities":[
		  {"operation":"insert","table":"fresh","col_names":["id"],"col_types":["INTEGER"],"col_values":[7]},
		  {"operation":"insert","table":"table1","col_names":["a"],"col_types":["INTEGER"],"col_values":[7]},
		  {"operation":"delete","table":"nowhere","value_to_delete":{"col_names":["id"],"col_types":["INTEGER"],"col_values":[1]}}]}`
		code, resp, header := post(t, r.base, "application/json", body, "X-Correlation-ID", "corr-poison-1")
		if code != 200 {
			t.Fatalf("POST: %d %+v (the gate cannot know the table is missing)", code, resp)
		}
		if got := header.Get("X-Correlation-ID"); got != "corr-poison-1" {
			t.Fatalf("response X-Correlation-ID %q, want the request's", got)
		}
		m := receive(t, poisoned, 15*time.Second)
		if m.Attributes[googlecloud.UUIDHeaderKey] != resp.ID {
			t.Fatalf("poisoned %q, want payload %q", m.Attributes[googlecloud.UUIDHeaderKey], resp.ID)
		}
		want, _ := messages.Parse([]byte(body))
		if string(m.Data) != string(want.Canonical()) {
			t.Errorf("poison message lost the original payload: %s", m.Data)
		}
		reason := m.Attributes[middleware.ReasonForPoisonedKey]
		if !strings.Contains(reason, "nowhere") {
			t.Errorf("reason %q does not name the missing table", reason)
		}
		checks := map[string]string{
			messages.MetaErrorClass:       string(messages.ClassPermanent),
			messages.MetaAttempts:         "1", // permanent: no retries
			messages.MetaTables:           "fresh,nowhere,table1",
			middleware.PoisonedHandlerKey: "apply",
			messages.MetaCorrelationID:    "corr-poison-1",
		}
		for k, v := range checks {
			if m.Attributes[k] != v || v == "" {
				t.Errorf("poison metadata %s = %q, want %q", k, m.Attributes[k], v)
			}
		}
		for _, k := range []string{messages.MetaFirstFailureAt, messages.MetaLastFailureAt, messages.MetaReceivedAt} {
			if _, err := time.Parse(time.RFC3339Nano, m.Attributes[k]); err != nil {
				t.Errorf("poison metadata %s = %q: %v", k, m.Attributes[k], err)
			}
		}
		// Nothing of the payload was applied, not even the tables its
		// inserts would have created.
		tables, err := r.svc.Store.Tables(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(tables) != 0 {
			t.Errorf("tables left behind by a poisoned payload: %v", tables)
		}
		if ok, _ := r.svc.Store.Applied(context.Background(), resp.ID); ok {
			t.Error("poisoned payload is in the ledger")
		}

		// An operator reads why in the poison index, fixes the cause, and
		// replays it.
		console, err := pipeline.NewConsole(context.Background(), toolConfig(r), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer console.Close()
		var listed []operator.PoisonRecord
		if !eventually(15*time.Second, func() bool {
			listed, err = console.List(context.Background(), warehouse.EventFilter{})
			return err == nil && len(listed) == 1
		}) || listed[0].PayloadID != resp.ID || !strings.Contains(listed[0].Reason, "nowhere") {
			t.Fatalf("poison list = %+v, %v; want the one payload with its reason", listed, err)
		}
		code, fix, _ := post(t, r.base, "application/json",
			`{"activities":[{"operation":"insert","table":"nowhere","col_names":["id"],"col_types":["INTEGER"],"col_values":[1]}]}`)
		if code != 200 {
			t.Fatalf("fix: %d", code)
		}
		waitApplied(t, r.svc.Store, fix.ID, 15*time.Second)
		entries, _, err := console.Select(context.Background(), operator.Selection{All: true})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := console.Replay(context.Background(), operator.ItemsOf(entries), operator.ReplayOptions{Rate: 1000})
		if err != nil || rep.Replayed != 1 {
			t.Fatalf("replay = %+v, %v", rep, err)
		}
		waitApplied(t, r.svc.Store, resp.ID, 15*time.Second)
		if got := rows(t, r.svc.Store, "nowhere"); len(got) != 0 {
			t.Errorf("the replayed delete left %v", got)
		}
		if got := rows(t, r.svc.Store, "fresh"); len(got) != 1 {
			t.Errorf("the replayed insert gave %v", got)
		}
		if left, err := console.List(context.Background(), warehouse.EventFilter{}); err != nil || len(left) != 0 {
			t.Errorf("poisoned payloads after replay: %+v, %v", left, err)
		}
	})
}

// toolConfig is what an operator's tool needs to reach the running service.
func toolConfig(r *running) pipeline.Config {
	cfg := r.cfg
	if r.svc.PubSub.Embedded != nil {
		cfg.EmbeddedPubSubAddr = r.svc.PubSub.Embedded.Addr()
	}
	return cfg
}

// faultyStore fails the Apply calls it is told to, and reads through.
type faultyStore struct {
	*warehousetest.Faulty
	warehouse.Reader
}

// faultyWarehouse opens cfg's SQLite warehouse behind a Faulty, and the
// option that makes the service write through it; inner reads what
// actually landed.
func faultyWarehouse(t *testing.T, cfg pipeline.Config) (*warehousetest.Faulty, *sqlite.Warehouse, pipeline.Option) {
	t.Helper()
	spec, _ := pipeline.ParseWarehouse(cfg.Warehouse)
	inner, err := sqlite.Open(context.Background(), sqlite.Config{Path: spec.Path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	faulty := warehousetest.NewFaulty(inner)
	return faulty, inner, pipeline.WithWarehouse(faultyStore{faulty, inner})
}

func TestApplyRetriesTransientFailureThenAppliesOnce(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		cfg.RetryInitial = 20 * time.Millisecond
		cfg.RetryMaxInterval = 50 * time.Millisecond
		faulty, inner, withFaulty := faultyWarehouse(t, cfg)
		faulty.FailNext(3, nil)
		r := startServiceWith(t, cfg, withFaulty)
		applied := r.watch(t, cfg.AppliedTopicID)

		code, resp, _ := post(t, r.base, "application/json", insertOnly)
		if code != 200 {
			t.Fatalf("POST: %d", code)
		}
		waitApplied(t, inner, resp.ID, 15*time.Second)
		if got := rows(t, inner, "table1"); len(got) != 1 {
			t.Errorf("table1 has %d rows, want exactly 1", len(got))
		}
		if calls := faulty.Calls(); calls != 4 {
			t.Errorf("warehouse saw %d Apply calls, want 3 failures + 1 success", calls)
		}
		if n := metricValue(t, r.base, `gatekeeper_apply_retries_total{class="transient"}`); n != 3 {
			t.Errorf("gatekeeper_apply_retries_total = %v, want 3", n)
		}
		m := receive(t, applied, 10*time.Second)
		var ev messages.AppliedEvent
		_ = json.Unmarshal(m.Data, &ev)
		if ev.PayloadID != resp.ID || ev.Duplicate {
			t.Errorf("applied event %+v", ev)
		}
	})
}

// A transient failure that outlasts the retry budget ends in the poison
// topic, as transient, after RETRY_MAX+1 attempts.
func TestApplyPoisonsTransientFailureAfterRetryMax(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		cfg.RetryMax = 2
		cfg.RetryInitial = 10 * time.Millisecond
		cfg.RetryMaxInterval = 20 * time.Millisecond
		faulty, inner, withFaulty := faultyWarehouse(t, cfg)
		faulty.FailNext(1_000_000, nil)
		r := startServiceWith(t, cfg, withFaulty)
		poisoned := r.watch(t, cfg.PoisonTopicID)

		code, resp, _ := post(t, r.base, "application/json", insertOnly)
		if code != 200 {
			t.Fatalf("POST: %d", code)
		}
		m := receive(t, poisoned, 15*time.Second)
		if m.Attributes[googlecloud.UUIDHeaderKey] != resp.ID {
			t.Fatalf("poisoned %q, want %q", m.Attributes[googlecloud.UUIDHeaderKey], resp.ID)
		}
		if c := m.Attributes[messages.MetaErrorClass]; c != string(messages.ClassTransient) {
			t.Errorf("error class %q, want transient", c)
		}
		if a := m.Attributes[messages.MetaAttempts]; a != "3" {
			t.Errorf("attempts %q, want RETRY_MAX+1 = 3", a)
		}
		if reason := m.Attributes[middleware.ReasonForPoisonedKey]; !strings.Contains(reason, warehousetest.ErrInjected.Error()) {
			t.Errorf("reason %q does not name the failure", reason)
		}
		if calls := faulty.Calls(); calls != 3 {
			t.Errorf("warehouse saw %d Apply calls, want 3", calls)
		}
		if n := metricValue(t, r.base, `gatekeeper_apply_retries_total{class="transient"}`); n != 2 {
			t.Errorf("gatekeeper_apply_retries_total = %v, want 2", n)
		}
		if ok, _ := inner.Applied(context.Background(), resp.ID); ok {
			t.Error("a payload that never applied is in the ledger")
		}
	})
}

func TestApplyRedeliveryIsAppliedOnce(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		r := startService(t, cfg)
		applied := r.watch(t, cfg.AppliedTopicID)
		payload, err := messages.Parse([]byte(insertOnly))
		if err != nil {
			t.Fatal(err)
		}
		// The same message (same payload id) delivered twice in a row and
		// twice at once, as at-least-once delivery may.
		pub := r.client.Publisher(cfg.TopicID)
		defer pub.Stop()
		publish := func(id string) {
			res := pub.Publish(context.Background(), &pubsub.Message{
				Data: payload.Canonical(), Attributes: map[string]string{googlecloud.UUIDHeaderKey: id},
			})
			if _, err := res.Get(context.Background()); err != nil {
				t.Error(err)
			}
		}
		publish("redelivered-1")
		waitApplied(t, r.svc.Store, "redelivered-1", 15*time.Second)
		publish("redelivered-1")
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() { defer wg.Done(); publish("concurrent-1") }()
		}
		wg.Wait()

		dups := map[string]int{}
		total := map[string]int{}
		for n := 0; n < 4; n++ {
			m := receive(t, applied, 15*time.Second)
			var ev messages.AppliedEvent
			_ = json.Unmarshal(m.Data, &ev)
			total[ev.PayloadID]++
			if ev.Duplicate {
				dups[ev.PayloadID]++
			}
		}
		if total["redelivered-1"] != 2 || dups["redelivered-1"] != 1 || total["concurrent-1"] != 2 || dups["concurrent-1"] != 1 {
			t.Errorf("events per payload %v, duplicates %v; want 2 each, 1 duplicate each", total, dups)
		}
		if got := rows(t, r.svc.Store, "table1"); len(got) != 2 {
			t.Errorf("table1 has %d rows, want 2 (one per distinct payload)", len(got))
		}
	})
}

// SIGTERM while requests are in flight: every request answered 200 is
// applied, whatever Pub/Sub the service runs on, and Run returns cleanly.
func TestShutdownLosesNothingAccepted(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		r := startService(t, cfg)
		var (
			mu       sync.Mutex
			accepted []string
			wg       sync.WaitGroup
		)
		stopAt := time.Now().Add(300 * time.Millisecond)
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; time.Now().Before(stopAt.Add(12 * time.Second)); i++ {
					body := fmt.Sprintf(`{"activities":[{"operation":"insert","table":"drain","col_names":["w","i"],"col_types":["INTEGER","INTEGER"],"col_values":[%d,%d]}]}`, w, i)
					resp, err := http.Post(r.base+pipeline.IngestPath, "application/json", strings.NewReader(body))
					if err != nil {
						return // the server stopped listening
					}
					var out edge.Response
					_ = json.NewDecoder(resp.Body).Decode(&out)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						accepted = append(accepted, out.ID)
						mu.Unlock()
					}
				}
			}(w)
		}
		// The load runs alone for 300 ms before the stop: the window is
		// the test's input, not a wait for an interleaving.
		time.Sleep(time.Until(stopAt))
		// On a loaded machine (CI runs this beside a BigQuery emulator)
		// the first answers can take longer than the window: stop only
		// once something was accepted, with requests still in flight.
		if !eventually(10*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(accepted) > 0
		}) {
			t.Fatal("no request was accepted within 10 s")
		}
		if err := r.stop(); err != nil {
			t.Fatalf("Run returned %v, want a clean shutdown", err)
		}
		wg.Wait()
		if mode == pipeline.PubSubEmulator {
			// The emulator keeps the backlog; a new apply stage takes it.
			cfg2 := cfg
			cfg2.Stages = []pipeline.Stage{pipeline.StageApply}
			startService(t, cfg2)
		}
		spec, _ := pipeline.ParseWarehouse(cfg.Warehouse)
		store, err := sqlite.Open(context.Background(), sqlite.Config{Path: spec.Path}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		// A message that reached the stopped stage's stream as it closed
		// is neither handled nor nacked: it comes back when its ack
		// deadline ends. Measured with the emulator: about 60 s after the
		// stop (once in 3 runs under -race); 180 s leaves room for a loaded
		// CI machine.
		for _, id := range accepted {
			waitApplied(t, store, id, 180*time.Second)
		}
		t.Logf("%d payloads accepted before shutdown, all applied", len(accepted))
	})
}

// The replaced service's payloads through the whole service into BigQuery
// (the emulator .ci/run starts), over the embedded Pub/Sub.
func TestApplyEndToEndOnBigQuery(t *testing.T) {
	t.Parallel()
	host := os.Getenv("BIGQUERY_EMULATOR_HOST")
	if host == "" {
		t.Skip("set BIGQUERY_EMULATOR_HOST to run against a BigQuery emulator")
	}
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.Warehouse = "bigquery"
	cfg.BigQueryEmulatorHost = host
	cfg.ProjectID = "test"
	cfg.DatasetID = fmt.Sprintf("e2e_%d_%d", time.Now().UnixNano(), testSeq.Add(1))
	r := startService(t, cfg)
	poisoned := r.watch(t, cfg.PoisonTopicID)
	store := r.svc.Store

	seed := `{"activities":[{"operation":"insert","table":"table1","col_names":["a","b","c","e"],"col_types":["INTEGER","TEXT","TEXT","TEXT"],"col_values":[3,"seed","2019-04-28 10:24:30.183414","something"]}]}`
	for _, body := range []string{seed, examplePayload, insertOnly} {
		code, resp, _ := post(t, r.base, "application/json", body)
		if code != 200 {
			t.Fatalf("POST: %d %+v", code, resp)
		}
		waitApplied(t, store, resp.ID, 60*time.Second)
	}
	got := rows(t, store, "table1")
	if len(got) != 2 || got[0]["a"] != int64(1) || got[1]["b"] != "Backup and Restore" {
		t.Fatalf("table1 = %v, want the two inserted rows", got)
	}
	missing := `{"activities":[{"operation":"insert","table":"table1","col_names":["a"],"col_types":["INTEGER"],"col_values":[9]},
	  {"operation":"delete","table":"nowhere","value_to_delete":{"col_names":["id"],"col_types":["INTEGER"],"col_values":[1]}}]}`
	code, resp, _ := post(t, r.base, "application/json", missing)
	if code != 200 {
		t.Fatalf("POST: %d", code)
	}
	m := receive(t, poisoned, 60*time.Second)
	if m.Attributes[googlecloud.UUIDHeaderKey] != resp.ID || m.Attributes[messages.MetaErrorClass] != "permanent" {
		t.Errorf("poisoned %v", m.Attributes)
	}
	if got := rows(t, store, "table1"); len(got) != 2 {
		t.Errorf("the poisoned payload's insert was applied: %v", got)
	}
}

// The embedded Pub/Sub keeps its backlog in memory: past
// EMBEDDED_MAX_BACKLOG payloads the apply stage has not settled, the gate
// answers 503 instead of publishing, and accepts again once it caught up.
// Not in parallel: the 21 refusals must fall within the second or so the
// first payload stays unsettled.
func TestEmbeddedBacklogIsBounded(t *testing.T) {
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.EmbeddedMaxBacklog = 1
	cfg.RetryInitial = 300 * time.Millisecond
	cfg.RetryMaxInterval = 300 * time.Millisecond
	faulty, inner, withFaulty := faultyWarehouse(t, cfg)
	faulty.FailNext(4, nil) // keeps the first payload unsettled for about a second
	r := startServiceWith(t, cfg, withFaulty)

	code, first, _ := post(t, r.base, "application/json", insertOnly)
	if code != 200 {
		t.Fatalf("first POST: %d %+v", code, first)
	}
	code, refused, hdr := post(t, r.base, "application/json", insertOnly)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(refused.Error[0].Message, "backlog") {
		t.Fatalf("second POST while the first is unsettled: %d %+v, want 503 naming the backlog", code, refused)
	}
	// Shedding load, as MAX_IN_FLIGHT_PUBLISHES does: not a failure.
	if shed, failed := payloadCount(t, r.base, "shed"), scrape(t, r.base)[`gatekeeper_payloads_total{backend="",outcome="failed"}`]; shed != 1 || failed != 0 {
		t.Errorf("the backlog's 503 counted shed %v, failed %v; want 1 and 0", shed, failed)
	}
	// Shedding is logged in proportion: once when it starts, not per 503.
	for range 20 {
		post(t, r.base, "application/json", insertOnly)
	}
	if n := strings.Count(r.logs.String(), "backlog is full"); n > 2 {
		t.Errorf("the full backlog was logged %d times for 21 refusals; want once when it starts (and a count per interval)", n)
	}
	waitApplied(t, inner, first.ID, 15*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, _ = post(t, r.base, "application/json", insertOnly)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gate still refuses after the backlog drained: %d", code)
		}
		time.Sleep(20 * time.Millisecond) // the poll's interval; the deadline bounds it
	}
}
