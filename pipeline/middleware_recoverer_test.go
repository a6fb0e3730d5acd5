package pipeline

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/pipeline/metrics"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

const panicPayload = `{"activities":[{"operation":"insert","table":"t","col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}]}`

// panicTestPubSub is an embedded Pub/Sub with the resources of both stages.
func panicTestPubSub(t *testing.T) (Config, *transport.PubSub) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.PubSubMode = PubSubEmbedded
	cfg.EmbeddedPubSubAddr = "127.0.0.1:0"
	cfg.RetryInitial, cfg.RetryMaxInterval = time.Millisecond, time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	cfg = cfg.WithDefaults()
	ps, err := NewPubSub(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	return cfg, ps
}

func runRouter(t *testing.T, r *message.Router) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		_ = r.Close()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("router did not stop")
		}
	})
	select {
	case <-r.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start")
	}
}

// A panic in the gate is a bug: the client gets 500, not 503 "retry".
func TestGatePanicAnswers500(t *testing.T) {
	t.Parallel()
	cfg, ps := panicTestPubSub(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := edge.New(edge.Config{MaxBodyBytes: cfg.MaxBodyBytes, VerdictWait: time.Second}, logger)
	if err != nil {
		t.Fatal(err)
	}
	stage, err := newIngestStage(cfg, ps, e, func() error { panic("gate bug") }, nil, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	runRouter(t, stage.router)
	srv := httptest.NewServer(stage.routes)
	defer srv.Close()

	resp, err := http.Post(srv.URL+IngestPath, "application/json", strings.NewReader(panicPayload))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "Internal Server Error") {
		t.Fatalf("a panicking gate answered %d %s, want 500 Internal Server Error", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "gate bug") || strings.Contains(string(body), "goroutine") {
		t.Errorf("the 500 shows the client the panic: %s", body)
	}
}

type panickingSubmitter struct{}

func (panickingSubmitter) Submit(context.Context, warehouse.Payload) (warehouse.Outcome, error) {
	panic("apply bug")
}

// A panic in the apply stage is poisoned at once, class permanent, with no
// retries: retrying a bug RETRY_MAX times only repeats it.
func TestApplyPanicIsPoisonedAtOnce(t *testing.T) {
	t.Parallel()
	cfg, ps := panicTestPubSub(t)
	logger := slog.New(slog.DiscardHandler)
	counters := metrics.New()
	stage, err := newApplyStage(cfg, ps, nil, panickingSubmitter{}, counters, nil, nil, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	poisonSub, err := ps.NewSubscriber(cfg.PoisonTopicID, cfg.PoisonSubscriptionID)
	if err != nil {
		t.Fatal(err)
	}
	defer poisonSub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	poisoned, err := poisonSub.Subscribe(ctx, cfg.PoisonTopicID)
	if err != nil {
		t.Fatal(err)
	}
	runRouter(t, stage.router)
	if err := ps.Publisher().Publish(cfg.TopicID, message.NewMessage("p-panic", []byte(panicPayload))); err != nil {
		t.Fatal(err)
	}
	var m *message.Message
	select {
	case m = <-poisoned:
		m.Ack()
	case <-ctx.Done():
		t.Fatal("the payload whose apply panicked was not poisoned")
	}
	if m.UUID != "p-panic" {
		t.Fatalf("poisoned %q", m.UUID)
	}
	if class := m.Metadata.Get(messages.MetaErrorClass); class != string(messages.ClassPermanent) {
		t.Errorf("error class %q, want permanent", class)
	}
	if attempts := m.Metadata.Get(messages.MetaAttempts); attempts != "1" {
		t.Errorf("attempts %q, want 1: a panic is not retried", attempts)
	}
	if reason := m.Metadata.Get(middleware.ReasonForPoisonedKey); !strings.Contains(reason, "apply bug") {
		t.Errorf("reason %q does not carry the panic", reason)
	}
	if n := counterValue(t, counters, "gatekeeper_apply_retries_total"); n != 0 {
		t.Errorf("gatekeeper_apply_retries_total = %v, want 0", n)
	}
}

func counterValue(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s", name)
	return 0
}
