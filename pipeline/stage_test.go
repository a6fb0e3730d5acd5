package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
)

// The replaced service's functional-test payloads.
const (
	examplePayload = `{"activities":[
  {"operation":"delete","table":"table1","value_to_delete":{"col_names":["a","c","e"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[3,"2019-04-28 10:24:30.183414","something"]}},
  {"operation":"insert","table":"table1","col_names":["a","b","c"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[1,"Backup and Restore","2018-03-27 11:58:28.988414"]}
]}`
	insertOnly   = `{"activities":[{"operation":"insert","table":"table1","col_names":["a","b","c"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[1,"Backup and Restore","2018-03-27 11:58:28.988414"]}]}`
	badOperation = `{"activities":[{"operation":"upsert","table":"table1","col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}]}`
)

// pubsubModes lists the Pub/Sub backends a stage test runs against: the
// embedded server, and the real emulator, which runs when
// PUBSUB_EMULATOR_HOST is set (as .ci/run does) and shows as skipped when
// not, so that the output says that tier did not run.
func pubsubModes() []pipeline.PubSubMode {
	return []pipeline.PubSubMode{pipeline.PubSubEmbedded, pipeline.PubSubEmulator}
}

// skipWithoutEmulator skips the emulator variant of a test when no
// emulator is configured.
func skipWithoutEmulator(t *testing.T, mode pipeline.PubSubMode) {
	t.Helper()
	if mode == pipeline.PubSubEmulator && os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
		t.Skip("PUBSUB_EMULATOR_HOST is not set: the emulator tier did not run")
	}
}

var testSeq atomic.Int64

// testConfig gives every test its own topics, so tests sharing one emulator
// never see each other's messages.
func testConfig(t *testing.T, mode pipeline.PubSubMode) pipeline.Config {
	t.Helper()
	suffix := fmt.Sprintf("%d-%d", time.Now().UnixNano(), testSeq.Add(1))
	cfg := pipeline.DefaultConfig()
	cfg.PubSubMode = mode
	cfg.EmulatorHost = os.Getenv("PUBSUB_EMULATOR_HOST")
	if mode == pipeline.PubSubEmulator {
		cfg.ProjectID = "test"
		cfg.Auth = pipeline.AuthNone // the key tests set BACKENDS_FILE themselves
	}
	cfg.EmbeddedPubSubAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.TopicID = "accepted-" + suffix
	cfg.SubscriptionID = "apply-" + suffix
	cfg.PoisonTopicID = "poison-" + suffix
	cfg.PoisonSubscriptionID = "poison-sub-" + suffix
	cfg.AppliedTopicID = "applied-" + suffix
	dir := t.TempDir()
	cfg.Warehouse = "sqlite:" + dir + "/warehouse.db"
	cfg.OutboxPath = dir + "/outbox.db"
	cfg.ShutdownTimeout = 20 * time.Second
	// Derived defaults too (the project), for the tests' own clients.
	return cfg.WithDefaults()
}

type running struct {
	svc    *pipeline.Service
	base   string
	stop   func() error
	cfg    pipeline.Config
	client *pubsub.Client
	logs   *syncBuffer // the service's log, at info and above
}

// syncBuffer is a log destination a test can read while the service writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startService(t *testing.T, cfg pipeline.Config) *running {
	t.Helper()
	return startServiceWith(t, cfg)
}

func startServiceWith(t *testing.T, cfg pipeline.Config, opts ...pipeline.Option) *running {
	t.Helper()
	return startServiceLogging(t, cfg, nil, opts...)
}

// startServiceLogging is startServiceWith whose service also writes its
// debug lines to debug (when not nil): for a test that waits for what the
// service logs only at debug, while r.logs stays at info as in every other
// test.
func startServiceLogging(t *testing.T, cfg pipeline.Config, debug *syncBuffer, opts ...pipeline.Option) *running {
	t.Helper()
	logs := &syncBuffer{}
	var out io.Writer = logs
	if testing.Verbose() {
		out = io.MultiWriter(logs, os.Stderr)
	}
	var handler slog.Handler = slog.NewTextHandler(out, &slog.HandlerOptions{Level: min(slog.LevelInfo, testLogLevel())})
	if debug != nil {
		handler = slog.NewMultiHandler(handler, slog.NewTextHandler(debug, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	logger := slog.New(handler)
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := pipeline.NewService(ctx, cfg, logger, opts...)
	if err != nil {
		cancel()
		t.Fatalf("NewService: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var stopped atomic.Bool
	var stopErr error
	stop := func() error {
		if stopped.CompareAndSwap(false, true) {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(60 * time.Second):
				stopErr = fmt.Errorf("Run did not return within 60s of cancel")
			}
		}
		return stopErr
	}
	t.Cleanup(func() {
		// A test that stopped the service itself has seen what Run
		// returned; a shutdown error here is one nobody expected.
		if stopped.Load() {
			return
		}
		if err := stop(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	r := &running{svc: svc, base: "http://" + svc.Addr().String(), stop: stop, cfg: cfg, logs: logs}
	waitReady(t, r.base)
	r.client = observerClient(t, r)
	return r
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // the poll's interval; the deadline bounds it
	}
	t.Fatalf("%s/readyz never answered 200", base)
}

// observerClient is a test's own Pub/Sub client on the service's Pub/Sub,
// reached the way an operator's tool reaches it.
func observerClient(t *testing.T, r *running) *pubsub.Client {
	t.Helper()
	c, err := pubsub.NewClient(context.Background(), r.cfg.ProjectID, pipeline.ClientOptions(toolConfig(r))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// watch subscribes to topic and returns a channel of what arrives after this
// call. It must be called before publishing: Pub/Sub keeps nothing for a
// subscription created later.
func (r *running) watch(t *testing.T, topic string) <-chan *pubsub.Message {
	t.Helper()
	name := fmt.Sprintf("watch-%s-%d", topic, testSeq.Add(1))
	ctx := context.Background()
	_, err := r.client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:  fmt.Sprintf("projects/%s/subscriptions/%s", r.cfg.ProjectID, name),
		Topic: fmt.Sprintf("projects/%s/topics/%s", r.cfg.ProjectID, topic),
	})
	if err != nil {
		t.Fatalf("create watch subscription: %v", err)
	}
	out := make(chan *pubsub.Message, 1000)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.client.Subscriber(name).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			out <- m
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

func post(t *testing.T, base, contentType, body string, header ...string) (int, edge.Response, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+pipeline.IngestPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out edge.Response
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response is not the JSON body clients expect: %v\n%s", err, raw)
	}
	if out.Status != resp.StatusCode {
		t.Errorf("body status %d != HTTP status %d", out.Status, resp.StatusCode)
	}
	return resp.StatusCode, out, resp.Header
}

func receive(t *testing.T, ch <-chan *pubsub.Message, within time.Duration) *pubsub.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(within):
		t.Fatalf("no message within %s", within)
		return nil
	}
}

func forEachMode(t *testing.T, f func(t *testing.T, mode pipeline.PubSubMode)) {
	for _, mode := range pubsubModes() {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel() // each mode has its own service, topics and files
			skipWithoutEmulator(t, mode)
			f(t, mode)
		})
	}
}

func TestIngestPublishesValidPayload(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		cfg.Stages = []pipeline.Stage{pipeline.StageIngest}
		r := startService(t, cfg)
		arrived := r.watch(t, cfg.TopicID)

		before := time.Now().UTC()
		code, resp, hdr := post(t, r.base, "application/json", examplePayload, "X-Correlation-ID", "corr-123")
		if code != http.StatusOK || resp.Message != "Valid Schema" || resp.Error != nil || resp.ID == "" {
			t.Fatalf("got %d %+v, want 200 Valid Schema with an id", code, resp)
		}
		if hdr.Get("X-Correlation-ID") != "corr-123" {
			t.Errorf("correlation id not echoed: %q", hdr.Get("X-Correlation-ID"))
		}
		var echoed, sent any
		_ = json.Unmarshal(resp.Payload, &echoed)
		_ = json.Unmarshal([]byte(examplePayload), &sent)
		if fmt.Sprint(echoed) != fmt.Sprint(sent) {
			t.Errorf("payload echoed as %s", resp.Payload)
		}

		m := receive(t, arrived, 10*time.Second)
		if got := m.Attributes[googlecloud.UUIDHeaderKey]; got != resp.ID {
			t.Errorf("message uuid %q, want payload id %q", got, resp.ID)
		}
		want, err := messages.Parse([]byte(examplePayload))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.Data, want.Canonical()) {
			t.Errorf("published %s\nwant canonical %s", m.Data, want.Canonical())
		}
		receivedAt, err := time.Parse(time.RFC3339Nano, m.Attributes[messages.MetaReceivedAt])
		if err != nil || receivedAt.Before(before.Add(-time.Second)) || receivedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("received_at %q: %v", m.Attributes[messages.MetaReceivedAt], err)
		}
		if got := m.Attributes[messages.MetaCorrelationID]; got != "corr-123" {
			t.Errorf("correlation_id %q", got)
		}
		if got := m.Attributes[messages.MetaContentType]; got != "application/json" {
			t.Errorf("content_type %q", got)
		}
	})
}

func TestIngestPublishesNothingInvalid(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		cfg.Stages = []pipeline.Stage{pipeline.StageIngest}
		cfg.MaxBodyBytes = 4096
		r := startService(t, cfg)
		arrived := r.watch(t, cfg.TopicID)

		cases := []struct {
			name, contentType, body string
			code                    int
			message                 string
		}{
			{"unknown operation", "application/json", badOperation, 400, "Invalid Schema"},
			{"missing table", "application/json", `{"activities":[{"operation":"insert","col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}]}`, 400, "Invalid Schema"},
			{"sql in identifier", "application/json", `{"activities":[{"operation":"insert","table":"t; DROP TABLE x","col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}]}`, 400, "Invalid Schema"},
			{"not json", "application/json", `{"activities":`, 400, "Invalid JSON"},
			{"wrong content type", "text/plain", insertOnly, 415, "Unsupported Media Type"},
			{"too large", "application/json", `{"activities":[` + strings.Repeat(" ", 5000) + `]}`, 413, "Payload Too Large"},
		}
		for _, c := range cases {
			code, resp, _ := post(t, r.base, c.contentType, c.body)
			if code != c.code || resp.Message != c.message || len(resp.Error) == 0 || resp.ID != "" {
				t.Errorf("%s: got %d %q errors=%v id=%q, want %d %q with errors and no id",
					c.name, code, resp.Message, resp.Error, resp.ID, c.code, c.message)
			}
		}
		// A valid payload after the invalid ones is the first and only
		// message on the topic.
		code, resp, _ := post(t, r.base, "application/json; charset=utf-8", insertOnly)
		if code != 200 {
			t.Fatalf("valid payload: %d %+v", code, resp)
		}
		m := receive(t, arrived, 10*time.Second)
		if m.Attributes[googlecloud.UUIDHeaderKey] != resp.ID {
			t.Fatalf("first message on the topic is %s, not the valid payload", m.Data)
		}
		select {
		case extra := <-arrived:
			t.Fatalf("unexpected message: %s", extra.Data)
		case <-time.After(500 * time.Millisecond):
		}
	})
}

func TestIngestListsEveryProblem(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.Stages = []pipeline.Stage{pipeline.StageIngest}
	r := startService(t, cfg)
	body := `{"activities":[
	  {"operation":"insert","table":"t","col_names":["a","a"],"col_types":["INTEGER","TEXT"],"col_values":[1,"x"]},
	  {"operation":"insert","table":"t","col_names":["b"],"col_types":["NOPE"],"col_values":[1]},
	  {"operation":"delete","table":"t","value_to_delete":{"col_names":["c"],"col_types":["INTEGER"],"col_values":[1.5]}}]}`
	code, resp, _ := post(t, r.base, "application/json", body)
	if code != 400 || len(resp.Error) < 3 {
		t.Fatalf("got %d with %d problems %+v, want 400 listing all three", code, len(resp.Error), resp.Error)
	}
	for _, want := range []string{"/activities/0/", "/activities/1/", "/activities/2/"} {
		found := false
		for _, p := range resp.Error {
			found = found || strings.HasPrefix(p.Path, want)
		}
		if !found {
			t.Errorf("no problem under %s in %+v", want, resp.Error)
		}
	}
}

func TestIngestAnswers503WhenPubSubIsDown(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.Stages = []pipeline.Stage{pipeline.StageIngest}
	cfg.PublishTimeout = 500 * time.Millisecond
	r := startService(t, cfg)
	if err := r.svc.PubSub.Embedded.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, resp, hdr := post(t, r.base, "application/json", insertOnly)
	if code != http.StatusServiceUnavailable || resp.ID != "" || hdr.Get("Retry-After") == "" {
		t.Fatalf("got %d %+v, want 503 with Retry-After and no id", code, resp)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("503 took %s; the publish timeout is %s", took, cfg.PublishTimeout)
	}
	// Logged once, by the edge, as the start of a condition named by its
	// cause (each request's payload_id is at debug); the router's own
	// "Handler returned error" stays at debug.
	var failed []string
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(line, "msg=\"Ingestion (publish) failing\"") {
			failed = append(failed, line)
		}
		if strings.Contains(line, "Handler returned error") {
			t.Errorf("the router logged the 503 as well: %s", line)
		}
	}
	if len(failed) != 1 || !strings.Contains(failed[0], "status=503") || !strings.Contains(failed[0], "cause=publish") {
		t.Errorf("want one Ingestion (publish) failing line with status and cause, got %q", failed)
	}
	// A second 503 of the same cause adds no line.
	if code, _, _ := post(t, r.base, "application/json", insertOnly); code != http.StatusServiceUnavailable {
		t.Fatalf("second POST: %d, want 503", code)
	}
	if n := strings.Count(r.logs.String(), "Ingestion (publish)"); n != 1 {
		t.Errorf("%d lines about the publish 503s after two of them, want 1:\n%s", n, r.logs.String())
	}
	resp2, err := http.Get(r.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with Pub/Sub down, want 503", resp2.StatusCode)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	r := startService(t, cfg)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := http.Get(r.base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d, want %d: %s", path, resp.StatusCode, want, body)
		}
		if path == "/metrics" && !bytes.Contains(body, []byte("gatekeeper_payloads_total")) {
			t.Errorf("/metrics lacks gatekeeper_payloads_total")
		}
	}
	// The ingestion route takes POST only; anything else is 405, not a
	// 503 that would send a client into retries.
	req, _ := http.NewRequest(http.MethodGet, r.base+pipeline.IngestPath, nil)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET %s = %d (Allow %q), want 405 with Allow: POST", pipeline.IngestPath, resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// Clients can validate before they post: the gate's schema is served.
func TestSchemaIsServed(t *testing.T) {
	t.Parallel()
	r := startService(t, testConfig(t, pipeline.PubSubEmbedded))
	resp, err := http.Get(r.base + edge.SchemaPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/schema+json" || !bytes.Equal(body, messages.SchemaJSON()) {
		t.Fatalf("GET %s: %d %q, body is the schema: %v", edge.SchemaPath, resp.StatusCode, resp.Header.Get("Content-Type"), bytes.Equal(body, messages.SchemaJSON()))
	}
	req, _ := http.NewRequest(http.MethodGet, r.base+edge.SchemaPath, nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	again.Body.Close()
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation with the ETag: %d, want 304", again.StatusCode)
	}
}

// On SIGTERM /readyz answers 503 for SHUTDOWN_DELAY while payloads are
// still accepted, so that a load balancer stops sending before the
// listener closes.
func TestReadyzAnswers503DuringShutdown(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.ShutdownDelay = 3 * time.Second
	r := startService(t, cfg)
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()

	deadline := time.Now().Add(cfg.ShutdownDelay)
	for {
		resp, err := http.Get(r.base + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the shutdown delay: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			if !strings.Contains(string(body), "shutting down") {
				t.Errorf("/readyz 503 does not say why: %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz stayed 200 after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond) // the poll's interval; the deadline bounds it
	}
	if code, resp, _ := post(t, r.base, "application/json", insertOnly); code != 200 {
		t.Errorf("POST during the shutdown delay: %d %+v, want it still accepted", code, resp)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("shutdown did not end")
	}
	if _, err := http.Get(r.base + "/readyz"); err == nil {
		t.Error("the listener is still open after shutdown")
	}
}

// testLogLevel is warn under -v, or GATEKEEPER_TEST_LOG (debug, info, …).
func testLogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("GATEKEEPER_TEST_LOG"))); err != nil {
		return slog.LevelWarn
	}
	return l
}

// With PUSHGATEWAY_PROMETHEUS_HOST set the service pushes its metrics; .ci/run
// starts a real Pushgateway and names it in GATEKEEPER_TEST_PUSHGATEWAY.
func TestMetricsArePushedToPushgateway(t *testing.T) {
	t.Parallel()
	gateway := os.Getenv("GATEKEEPER_TEST_PUSHGATEWAY")
	if gateway == "" {
		t.Skip("set GATEKEEPER_TEST_PUSHGATEWAY=host:port of a Prometheus Pushgateway")
	}
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.PushgatewayHost = gateway
	cfg.PushInterval = 100 * time.Millisecond
	// A job of its own: other tests push to the same Pushgateway.
	cfg.PushJob = "gatekeeper-test-" + cfg.TopicID
	r := startService(t, cfg)
	code, resp, _ := post(t, r.base, "application/json", insertOnly)
	if code != 200 {
		t.Fatalf("POST: %d %+v", code, resp)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + gateway + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "gatekeeper_payloads_total{") && strings.Contains(line, `job="`+cfg.PushJob+`"`) &&
				strings.Contains(line, `outcome="accepted"`) && !strings.HasSuffix(line, " 0") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Pushgateway never showed an accepted payload from job %s:\n%s", cfg.PushJob, body)
		}
		time.Sleep(100 * time.Millisecond) // the poll's interval; the deadline bounds it
	}
}
