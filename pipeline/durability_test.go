package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: testLogLevel()}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// runUntil starts a service and returns a function that stops it and
// returns what Run returned, for tests that expect a failed shutdown.
func runUntil(t *testing.T, cfg pipeline.Config, opts ...pipeline.Option) (*pipeline.Service, string, func() error) {
	t.Helper()
	r := startServiceWith(t, cfg, opts...)
	return r.svc, r.base, r.stop
}

func insertBody(i int) string {
	return fmt.Sprintf(`{"activities":[{"operation":"insert","table":"durable","col_names":["i"],"col_types":["INTEGER"],"col_values":[%d]}]}`, i)
}

// The default mode keeps its promise across a SIGTERM whose drain cannot
// finish: what was answered 200 waits in the outbox, the exit is an error
// that says so, and the next start applies it.
//
// Not in parallel: the second run must stop cleanly within the first's
// one-second SHUTDOWN_TIMEOUT, which other tests beside it can outlast.
func TestEmbeddedShutdownWithStuckWarehouseKeepsAcceptedInOutbox(t *testing.T) {
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.ShutdownTimeout = time.Second
	cfg.RetryMax = 1000
	cfg.RetryInitial = 50 * time.Millisecond
	cfg.RetryMaxInterval = 100 * time.Millisecond
	faulty, _, withFaulty := faultyWarehouse(t, cfg)
	faulty.FailNext(1_000_000, nil) // the warehouse is stuck for the whole first run
	_, base, stop := runUntil(t, cfg, withFaulty)

	var accepted []string
	for i := range 20 {
		code, resp, _ := post(t, base, "application/json", insertBody(i))
		if code != http.StatusOK {
			t.Fatalf("POST %d: %d %+v", i, code, resp)
		}
		accepted = append(accepted, resp.ID)
	}
	err := stop()
	if err == nil || !strings.Contains(err.Error(), "wait in the outbox") {
		t.Fatalf("Run returned %v, want an error saying payloads wait in the outbox", err)
	}

	cfg2 := cfg
	cfg2.RetryMax = 5
	svc, _, stop2 := runUntil(t, cfg2)
	for _, id := range accepted {
		waitApplied(t, svc.Store, id, 20*time.Second)
	}
	if got := rows(t, svc.Store, "durable"); len(got) != len(accepted) {
		t.Errorf("durable has %d rows, want %d", len(got), len(accepted))
	}
	if err := stop2(); err != nil {
		t.Errorf("second run: %v", err)
	}
}

// Stages run apart: the ingest stage creates the apply subscription, so
// what it accepts before any apply stage ever ran is kept and applied.
func TestIngestBeforeAnyApplyStageLosesNothing(t *testing.T) {
	t.Parallel()
	if os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
		t.Skip("needs PUBSUB_EMULATOR_HOST: the stages share the emulator")
	}
	cfg := testConfig(t, pipeline.PubSubEmulator)
	ingestCfg := cfg
	ingestCfg.Stages = []pipeline.Stage{pipeline.StageIngest}
	r := startService(t, ingestCfg)
	var accepted []string
	for i := range 10 {
		code, resp, _ := post(t, r.base, "application/json", insertBody(i))
		if code != http.StatusOK {
			t.Fatalf("POST %d: %d %+v", i, code, resp)
		}
		accepted = append(accepted, resp.ID)
	}
	applyCfg := cfg
	applyCfg.Stages = []pipeline.Stage{pipeline.StageApply}
	applyCfg.HTTPAddr = "127.0.0.1:0"
	applyCfg.AdminAddr = "127.0.0.1:0"
	a := startService(t, applyCfg)
	for _, id := range accepted {
		waitApplied(t, a.svc.Store, id, 30*time.Second)
	}
}

// With CREATE_RESOURCES=false and no apply subscription, the ingest stage
// starts but is not ready, and refuses payloads saying why, rather than
// publishing them into a topic that keeps nothing.
func TestIngestRefusesWithoutApplySubscription(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		if mode == pipeline.PubSubEmbedded {
			t.Skip("the embedded Pub/Sub starts empty, so CREATE_RESOURCES=false is refused there (TestDoNotCreateResourcesOnlyChecks)")
		}
		cfg := testConfig(t, mode)
		cfg.Stages = []pipeline.Stage{pipeline.StageIngest}
		// The topic exists; only the subscription is missing.
		first := startService(t, cfg)
		err := first.client.SubscriptionAdminClient.DeleteSubscription(context.Background(),
			&pubsubpb.DeleteSubscriptionRequest{Subscription: "projects/" + cfg.ProjectID + "/subscriptions/" + cfg.SubscriptionID})
		if err != nil {
			t.Fatal(err)
		}
		if err := first.stop(); err != nil {
			t.Fatal(err)
		}
		cfg.DoNotCreateResources = true
		cfg.UnhealthyAfter = 500 * time.Millisecond
		svc, err := pipeline.NewService(context.Background(), cfg, testLogger())
		if err != nil {
			t.Fatalf("NewService: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		defer func() { cancel(); <-done }()
		base := "http://" + svc.Addr().String()

		var body string
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, err := http.Get(base + "/readyz")
			if err == nil {
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body = string(raw)
				if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, cfg.SubscriptionID) {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz never said the subscription is missing: %s", body)
			}
			time.Sleep(20 * time.Millisecond) // the poll's interval; the deadline bounds it
		}
		if !strings.Contains(body, "CREATE_RESOURCES=false") {
			t.Errorf("/readyz does not say why: %s", body)
		}
		code, resp, _ := post(t, base, "application/json", insertBody(1))
		if code != http.StatusServiceUnavailable || len(resp.Error) == 0 || !strings.Contains(resp.Error[0].Message, cfg.SubscriptionID) {
			t.Fatalf("POST without a subscription: %d %+v, want 503 naming it", code, resp)
		}
		// Past UNHEALTHY_AFTER the process still does not ask to be
		// restarted: a new one would refuse to start (CREATE_RESOURCES=
		// false) or recreate it as the monitor does. /healthz names it as
		// degraded. Time passing is the point here: nothing signals that
		// a restart was not asked for.
		time.Sleep(2 * cfg.UnhealthyAfter)
		hresp, err := http.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(hresp.Body)
		hresp.Body.Close()
		var h struct {
			Status  string
			Reasons []struct{ Component, Error, Effect string }
		}
		if err := json.Unmarshal(raw, &h); err != nil {
			t.Fatalf("/healthz body %s: %v", raw, err)
		}
		if hresp.StatusCode != http.StatusOK || h.Status != "degraded" || len(h.Reasons) == 0 ||
			h.Reasons[0].Component != "pubsub.resource" || h.Reasons[0].Effect != "degraded" ||
			!strings.Contains(h.Reasons[0].Error, cfg.SubscriptionID) {
			t.Fatalf("/healthz past UNHEALTHY_AFTER with a subscription missing: %d %s, want 200 degraded naming it", hresp.StatusCode, raw)
		}
	})
}

// CREATE_RESOURCES=false only checks: a service whose topics and
// subscriptions exist starts, one that misses any refuses to, naming
// each, and the embedded Pub/Sub (empty at every start) is refused outright.
func TestDoNotCreateResourcesOnlyChecks(t *testing.T) {
	t.Parallel()
	embedded := testConfig(t, pipeline.PubSubEmbedded)
	embedded.DoNotCreateResources = true
	if err := embedded.Validate(); err == nil || !strings.Contains(err.Error(), "CREATE_RESOURCES=false cannot work with the embedded Pub/Sub") {
		t.Errorf("embedded with CREATE_RESOURCES=false: %v", err)
	}

	skipWithoutEmulator(t, pipeline.PubSubEmulator)
	cfg := testConfig(t, pipeline.PubSubEmulator)
	first := startService(t, cfg) // creates them
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	cfg.DoNotCreateResources = true
	second := startService(t, cfg)
	if code, resp, _ := post(t, second.base, "application/json", insertOnly); code != 200 {
		t.Fatalf("POST with every resource in place: %d %+v", code, resp)
	}
	if err := second.stop(); err != nil {
		t.Fatal(err)
	}
	cfg.PoisonTopicID += "-never-created"
	cfg.PoisonSubscriptionID += "-never-created"
	_, err := pipeline.NewService(context.Background(), cfg, testLogger())
	if err == nil {
		t.Fatal("the apply stage started without its poison topic and subscription")
	}
	for _, want := range []string{"topic " + cfg.PoisonTopicID + " does not exist", "subscription " + cfg.PoisonSubscriptionID, "CREATE_RESOURCES=false"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start error does not say %q: %v", want, err)
		}
	}
}

// Pub/Sub losing the topics (an emulator restart, someone deleting them)
// heals without a restart: the service recreates them, and what was
// accepted but not yet applied comes back from the outbox.
//
// Only against the emulator: pstest (the embedded Pub/Sub) keeps the
// streams of a deleted subscription open and silent instead of ending them
// with NotFound, so its subscriber never moves to the recreated one; and
// nothing but an operator's tool can delete topics of the embedded server.
func TestServiceRecreatesLostTopicsAndSubscriptions(t *testing.T) {
	t.Parallel()
	if os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
		t.Skip("needs PUBSUB_EMULATOR_HOST; see the comment for why not the embedded Pub/Sub")
	}
	{
		mode := pipeline.PubSubEmulator
		cfg := testConfig(t, mode)
		// Checks then run only when a publish finds a topic gone, so none
		// runs halfway through the deletions below (an emulator restart
		// loses everything at once; this test deletes one by one).
		cfg.ResourceCheckInterval = time.Hour
		cfg.RetryMax = 1000
		cfg.RetryInitial = 50 * time.Millisecond
		cfg.RetryMaxInterval = 100 * time.Millisecond
		faulty, inner, withFaulty := faultyWarehouse(t, cfg)
		r := startServiceWith(t, cfg, withFaulty)

		// Accepted while the warehouse fails, so they sit in the
		// subscription when it is lost.
		faulty.FailNext(1_000_000, nil)
		var accepted []string
		for i := range 5 {
			code, resp, _ := post(t, r.base, "application/json", insertBody(i))
			if code != http.StatusOK {
				t.Fatalf("POST %d: %d %+v", i, code, resp)
			}
			accepted = append(accepted, resp.ID)
		}
		ctx := context.Background()
		admin := r.client
		for _, sub := range []string{cfg.SubscriptionID, cfg.PoisonSubscriptionID} {
			if err := admin.SubscriptionAdminClient.DeleteSubscription(ctx, &pubsubpb.DeleteSubscriptionRequest{
				Subscription: "projects/" + cfg.ProjectID + "/subscriptions/" + sub}); err != nil {
				t.Fatal(err)
			}
		}
		for _, topic := range []string{cfg.TopicID, cfg.PoisonTopicID, cfg.AppliedTopicID} {
			if err := admin.TopicAdminClient.DeleteTopic(ctx, &pubsubpb.DeleteTopicRequest{
				Topic: "projects/" + cfg.ProjectID + "/topics/" + topic}); err != nil {
				t.Fatal(err)
			}
		}
		faulty.FailNext(0, nil)

		// New payloads are refused (never published into nothing) until
		// the service has put everything back, then accepted.
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, resp, _ := post(t, r.base, "application/json", insertBody(100+len(accepted)))
			if code == http.StatusOK {
				accepted = append(accepted, resp.ID)
				break
			}
			if code != http.StatusServiceUnavailable {
				t.Fatalf("POST while topics are lost: %d %+v, want 503 or 200", code, resp)
			}
			if time.Now().After(deadline) {
				t.Fatalf("still refused 30s after the topics were lost: %+v", resp)
			}
			time.Sleep(50 * time.Millisecond) // the poll's interval; the deadline bounds it
		}
		// A republished message the emulator handed to a stream that was
		// closing as the subscriber restarted comes back only at its ack
		// deadline; measured 20 s, and once over 60 s.
		for _, id := range accepted {
			waitApplied(t, inner, id, 150*time.Second)
		}
		if got := rows(t, inner, "durable"); len(got) != len(accepted) {
			t.Errorf("durable has %d rows, want %d (each accepted payload once)", len(got), len(accepted))
		}
	}
}

// A client that hangs up right after sending does not decide the payload's
// fate: the publish runs to its end, and every payload counted accepted is
// applied, none counted failed for a publish that landed.
func TestClientThatLeavesDoesNotFailItsPayload(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	r := startService(t, cfg)
	addr := strings.TrimPrefix(r.base, "http://")
	const n = 40
	for i := range n {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		body := insertBody(1000 + i)
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			pipeline.IngestPath, addr, len(body), body)
		conn.Close() // gone before any answer
	}
	var accepted, failed float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		accepted, failed = payloadCount(t, r.base, "accepted"), payloadCount(t, r.base, "failed")
		applied := len(storeRows(t, r.svc.Store, "durable"))
		if accepted+failed == n && float64(applied) == accepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d clients left: accepted %v, failed %v, applied %d; want every accepted one applied", n, accepted, failed, applied)
		}
		time.Sleep(50 * time.Millisecond) // the poll's interval; the deadline bounds it
	}
	if failed != 0 {
		t.Errorf("%v payloads counted failed although their clients only left", failed)
	}
}

func storeRows(t *testing.T, store warehouse.Reader, table string) []map[string]any {
	t.Helper()
	rs, err := store.Rows(context.Background(), table, 0)
	if errors.Is(err, warehouse.ErrTableNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("rows of %s: %v", table, err)
	}
	return rs
}

func payloadCount(t *testing.T, base, outcome string) float64 {
	t.Helper()
	return metricValue(t, base, `gatekeeper_payloads_total{backend="",outcome="`+outcome+`"}`)
}

// metricValue reads one series, named as /metrics prints it, from the
// service's own exposition.
func metricValue(t *testing.T, base, series string) float64 {
	t.Helper()
	v, ok := scrape(t, base)[series]
	if !ok {
		t.Fatalf("/metrics has no series %s", series)
	}
	return v
}
