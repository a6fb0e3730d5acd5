package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/gatekeeper/gatekeeper/handlers"
	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/metrics"
	"github.com/gatekeeper/gatekeeper/pipeline/ordering"
	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
	"github.com/gatekeeper/gatekeeper/pipeline/pause"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// applyStage is the accepted topic → apply handler → applied topic router,
// with retries and the poison topic.
type applyStage struct {
	router *message.Router
	// blocks is the blocked ordering keys with ORDERING_POISON=block, else nil.
	blocks *ordering.Blocks
	// pause holds the stage's payloads while the warehouse is unavailable.
	pause *pause.Pause
}

// paused reports since when the stage is paused, and the outage that paused
// it; a zero time while it runs.
func (a *applyStage) paused() (since time.Time, err error) { return a.pause.State() }

// newApplyStage builds the apply stage's router. box, when set, forgets
// each payload once it is in the ledger and records each poisoned one;
// handling, when set, holds the id of every message while it is handled.
// store is read for the blocked ordering keys with ORDERING_POISON=block.
func newApplyStage(cfg Config, ps *transport.PubSub, store warehouse.Store, committer handlers.Submitter, counters *metrics.Metrics, box *outbox.Outbox, handling *sync.Map, onSettled func(), logger *slog.Logger) (*applyStage, error) {
	wlog := heldAtDebug{watermillLogger(logger)}
	sub, err := ps.NewSubscriber(cfg.TopicID, cfg.SubscriptionID)
	if err != nil {
		return nil, fmt.Errorf("apply subscriber: %w", err)
	}
	orderedSub, err := ps.NewSubscriber(cfg.OrderedTopicID, cfg.OrderedSubscriptionID)
	if err != nil {
		return nil, fmt.Errorf("ordered apply subscriber: %w", err)
	}
	apply, err := handlers.NewApply(handlers.ApplyConfig{
		Submitter: committer,
		OnOutcome: func(msg *message.Message, o warehouse.Outcome) {
			if box != nil {
				box.Forget(msg.UUID)
			}
			if o.Status == warehouse.Duplicate {
				counters.Payload(metrics.OutcomeDuplicate, msg.Metadata.Get(messages.MetaBackend))
				return
			}
			counters.Payload(metrics.OutcomeApplied, msg.Metadata.Get(messages.MetaBackend))
			counters.Applied(receivedAt(msg))
			logger.Debug("Payload applied", "payload_id", msg.UUID,
				"correlation_id", msg.Metadata.Get(messages.MetaCorrelationID), "rows", o.RowsAffected)
		},
	})
	if err != nil {
		return nil, err
	}
	var blocks *ordering.Blocks
	if cfg.OrderingPoison == OrderingPoisonBlock {
		if blocks, err = ordering.New(ordering.Config{Store: store}, logger); err != nil {
			return nil, err
		}
	}
	// With nothing held, the pause probes with the warehouse's Ping.
	ping := func(context.Context) error { return nil }
	if store != nil {
		ping = store.Ping
	}
	hold, err := pause.New(pause.Config{Warehouse: cfg.Warehouse, Ping: ping}, logger)
	if err != nil {
		return nil, err
	}
	poisonPublisher := poisonPublisher{Publisher: ps.Publisher(), counters: counters, outbox: box, blocks: blocks, logger: logger}
	poison, err := middleware.PoisonQueueWithFilter(poisonPublisher, cfg.PoisonTopicID, shouldPoison)
	if err != nil {
		return nil, err
	}
	retry := middleware.Retry{
		MaxRetries:          cfg.retries(),
		InitialInterval:     cfg.RetryInitial,
		MaxInterval:         cfg.RetryMaxInterval,
		Multiplier:          cfg.RetryMultiplier,
		RandomizationFactor: cfg.jitter(),
		// Timeout sits inside Retry: without a fresh context each attempt
		// would start already expired.
		ResetContextOnRetry: true,
		ShouldRetry: func(p middleware.RetryParams) bool {
			// Transient only: an outage goes back to the pause, outside,
			// without spending the retry budget.
			class := messages.ClassOf(p.Err)
			retry := class == messages.ClassTransient && !errors.Is(p.Err, context.Canceled)
			// Retries are counted here, where they are decided:
			// OnRetryHook skips the first one. Watermill also asks after
			// the last attempt, when none follows whatever the answer.
			if retry && p.RetryNum < cfg.retries() {
				counters.Retry(string(class))
			}
			return retry
		},
		// No Logger: RecordFailures logs each failed attempt with the
		// payload's ids.
	}

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.ShutdownTimeout}, wlog)
	if err != nil {
		return nil, err
	}
	// Payloads with an ordering key come through an ordered subscription of
	// their own, the others through an unordered one; both handlers share
	// the group committer, so a group fills from both.
	handler := router.AddHandler("apply", cfg.TopicID, sub, cfg.AppliedTopicID, ps.Publisher(), apply.Handle)
	orderedHandler := router.AddHandler("apply-ordered", cfg.OrderedTopicID, orderedSub, cfg.AppliedTopicID, ps.Publisher(), apply.Handle)
	// Outermost first:
	//   settled     counts messages acked, for the shutdown drain, and marks
	//               the ones being handled, for the outbox's overdue sweep;
	//   CorrelationID gives the applied event the payload's correlation id;
	//   poison      diverts what Retry gave up on, and permanent errors at
	//               once; it acks what it diverts, which is right here and
	//               only here;
	//   blocks      (ORDERING_POISON=block) holds a payload whose ordering
	//               key is blocked: nacked after a short wait, not poisoned,
	//               not retried, not counted as a failed attempt;
	//   pause       holds every payload while the warehouse is unavailable
	//               (an outage: package pause): outside Retry, so
	//               the wait spends no retry and counts no attempt, and
	//               inside the poison queue, which lets what it gives back
	//               (an outage, or the cancellation at shutdown) through
	//               to a nack; inside blocks, which decides first whether a
	//               payload's turn has come at all;
	//   Retry       retries transient errors with backoff and jitter, and
	//               returns an outage at once, to the pause;
	//   failures    records every attempt into metadata for the poison
	//               topic, except one that met an outage;
	//   Timeout     bounds one attempt;
	//   recoverer   turns a panic into a permanent error that gets poisoned
	//               at once, not a crash loop on redelivery.
	//
	// Ordering per key. The router runs every message on a goroutine of its
	// own, so nothing here orders two messages; what orders a key's
	// payloads is that the stage never holds two of them at once:
	//   - keyed payloads come through the ordered subscription (the
	//     publisher routes them to the ordered topic), and the Pub/Sub client calls
	//     the subscriber's callback for a key's next message only after the
	//     previous callback returned (its receive scheduler runs one queue
	//     per key); watermill-googlecloud's callback returns only once the
	//     router acked or nacked the message;
	//   - Retry and its backoff run inside the handler, before the ack, so
	//     a retried payload holds its key until it applies or is poisoned;
	//   - the group committer holds the key like a table, so even a Submit
	//     that gave up (Timeout) while its group was in flight is committed
	//     or not before the key's next payload is.
	// A nack gives the key back to Pub/Sub, which on Google redelivers the
	// nacked message and every later one of its key in order. On shutdown
	// the messages of the key already pulled are nacked too (the
	// subscriber is closing). The one gap: a nack while running, which only
	// a failed poison publish causes, lets the client hand over a later
	// message of the key it already pulled before the redelivery; that
	// payload can then apply first (see docs/api.md). A poisoned payload is
	// acked, so the key's later payloads apply (ORDERING_POISON=continue).
	// With ORDERING_POISON=block the poisoning blocks the key instead: the
	// key's later payloads are held (nacked) until an operator replays or
	// purges the poisoned one (package ordering).
	mws := []message.HandlerMiddleware{settled(handling, onSettled), middleware.CorrelationID, poison}
	if blocks != nil {
		mws = append(mws, blocks.Middleware)
	}
	mws = append(mws, hold.Middleware, retry.Middleware, RecordFailures(time.Now, logger), middleware.Timeout(cfg.ApplyTimeout), recoverer)
	handler.AddMiddleware(mws...)
	orderedHandler.AddMiddleware(mws...)
	return &applyStage{router: router, blocks: blocks, pause: hold}, nil
}

// shouldPoison diverts every error except the subscriber's own
// cancellation, on shutdown, a hold (ORDERING_POISON=block) and an outage:
// each is nacked, and Pub/Sub delivers the payload again. The pause keeps
// outages from reaching here; this is the second guard: an outage is the
// infrastructure's fault, never the payload's.
func shouldPoison(err error) bool {
	return !errors.Is(err, context.Canceled) && !errors.Is(err, ordering.ErrHeld) && messages.ClassOf(err) != messages.ClassOutage
}

// heldAtDebug logs the router's "Handler returned error" for a held payload
// (ORDERING_POISON=block) and for one the pause gave back (an outage) at
// debug: a blocked key holds its payload once a second, and the key's block
// is logged once, when it begins; a pause is logged when it begins, while it
// lasts and when it ends, never once per payload.
type heldAtDebug struct{ watermill.LoggerAdapter }

func (l heldAtDebug) Error(msg string, err error, fields watermill.LogFields) {
	if errors.Is(err, ordering.ErrHeld) || messages.ClassOf(err) == messages.ClassOutage {
		l.LoggerAdapter.Debug(msg, fields.Add(watermill.LogFields{"error": err}))
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l heldAtDebug) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return heldAtDebug{l.LoggerAdapter.With(fields)}
}

// poisonPublisher logs and counts what reached the poison topic (not what
// was meant to), so an operator sees each poisoned payload once, with why.
type poisonPublisher struct {
	message.Publisher
	counters *metrics.Metrics
	outbox   *outbox.Outbox
	blocks   *ordering.Blocks // nil unless ORDERING_POISON=block
	logger   *slog.Logger
}

func (p poisonPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	for _, m := range msgs {
		if p.outbox != nil {
			p.outbox.MarkPoisoned(m.UUID, m.Metadata)
		}
		if p.blocks != nil {
			// Before the poisoned payload is acked, so before Pub/Sub hands
			// this process the key's next payload.
			p.blocks.Poisoned(m.Metadata.Get(messages.MetaOrderingKey), m.UUID)
		}
		p.counters.Payload(metrics.OutcomePoisoned, m.Metadata.Get(messages.MetaBackend))
		p.logger.Warn("Payload poisoned", "payload_id", m.UUID, "topic", topic,
			"class", m.Metadata.Get(messages.MetaErrorClass),
			"attempts", m.Metadata.Get(messages.MetaAttempts),
			"tables", m.Metadata.Get(messages.MetaTables),
			"correlation_id", m.Metadata.Get(messages.MetaCorrelationID),
			"reason", m.Metadata.Get(middleware.ReasonForPoisonedKey))
	}
	return nil
}
