package pipeline

import (
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	whttp "github.com/ThreeDotsLabs/watermill-http/v2/pkg/http"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-chi/chi"

	"github.com/gatekeeper/gatekeeper/handlers"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
)

// IngestPath is where backends POST payloads.
const IngestPath = "/api/activities"

// ingestStage is the HTTP subscriber → gate → accepted topic router.
type ingestStage struct {
	router *message.Router
	// routes is the chi router the subscriber registers IngestPath on; the
	// service's own http.Server serves it, because the subscriber's
	// StartHTTPServer sets no timeouts and no body limit.
	routes chi.Router
}

func newIngestStage(cfg Config, ps *transport.PubSub, e *edge.Edge, admit func() error, authorize func(*message.Message, []string) error,
	box handlers.Outbox, logger *slog.Logger) (*ingestStage, error) {
	wlog := watermillLogger(logger)
	routes := chi.NewRouter()
	routes.Use(e.Middleware)
	sub, err := whttp.NewSubscriber("", whttp.SubscriberConfig{Router: routes, UnmarshalMessageFunc: e.Unmarshal}, edgeLogsRefusals{wlog})
	if err != nil {
		return nil, fmt.Errorf("http subscriber: %w", err)
	}
	gate, err := handlers.NewGate(handlers.GateConfig{
		Publisher: ps.Publisher(), Topic: cfg.TopicID, PublishTimeout: cfg.PublishTimeout, Admit: admit, Outbox: box,
		Authorize: authorize, MaxInFlight: cfg.MaxInFlightPublishes,
	})
	if err != nil {
		return nil, err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.ShutdownTimeout}, edgeLogsFailures{wlog})
	if err != nil {
		return nil, err
	}
	handler := router.AddConsumerHandler("gate", IngestPath, sub, gate.Handle)
	// Outermost first. VerdictMiddleware must see panics as errors (so the client gets
	// a 500 rather than a hung request), hence recoverer inside it. No Retry
	// here: the HTTP client is the one to retry. No poison queue either: it
	// acks what it diverts, which would tell the client 200 for a payload
	// that went nowhere.
	handler.AddMiddleware(
		e.VerdictMiddleware,
		recoverer,
	)
	return &ingestStage{router: router, routes: routes}, nil
}

// edgeLogsFailures is the ingest router's logger. The edge logs every
// failed payload once, with its status, payload_id and correlation_id; the
// router's own "Handler returned error" line would log it a second time,
// so it goes to debug.
type edgeLogsFailures struct{ watermill.LoggerAdapter }

func (l edgeLogsFailures) Error(msg string, err error, fields watermill.LogFields) {
	if msg == "Handler returned error" {
		l.Debug(msg, fields.Add(watermill.LogFields{"error": err}))
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l edgeLogsFailures) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return edgeLogsFailures{l.LoggerAdapter.With(fields)}
}

// edgeLogsRefusals is the HTTP subscriber's logger. Every request
// Unmarshal refuses (too large, too slow, broken off, a replayed key) is
// answered, counted and, where it matters, logged by the edge; the
// subscriber's own INFO line for each would be a line per slow client.
type edgeLogsRefusals struct{ watermill.LoggerAdapter }

func (l edgeLogsRefusals) Info(msg string, fields watermill.LogFields) {
	if msg == "Cannot unmarshal message" {
		l.Debug(msg, fields)
		return
	}
	l.LoggerAdapter.Info(msg, fields)
}

func (l edgeLogsRefusals) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return edgeLogsRefusals{l.LoggerAdapter.With(fields)}
}
