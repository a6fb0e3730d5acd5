package handlers

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
)

// Gate validates a posted payload and publishes it, in canonical form, to the
// accepted topic. Nothing invalid is ever published.
type Gate struct {
	publisher      message.Publisher
	topic          string
	publishTimeout time.Duration
	admit          func() error
	outbox         Outbox
	authorize      func(msg *message.Message, tables []string) error
	maxInFlight    int64
	inFlight       atomic.Int64
}

// ErrOverloaded refuses a payload while MaxInFlight publishes are under
// way: shedding it at once keeps everyone's latency bounded, where queuing
// it would let the wait grow without end.
var ErrOverloaded = errors.New("too many payloads are being published at once; retry")

// ErrRecord and ErrPublish are what a payload refused with 503 failed at:
// recording it in the outbox, or publishing it. The service tells its 503s
// apart by them, to log each cause as one condition.
var (
	ErrRecord  = errors.New("recording the payload in the outbox")
	ErrPublish = errors.New("publishing")
)

// Outbox keeps accepted payloads durably until they are applied (see
// pipeline/outbox). The gate records a payload before it publishes it and
// answers 200 only after both.
type Outbox interface {
	// Record returns once msg is durably kept.
	Record(ctx context.Context, msg *message.Message) error
	// Published reports how the publish of a recorded payload ended. A
	// payload whose publish failed is dropped before it returns: its
	// client is told to retry, so it must not be applied behind its back.
	Published(payloadID string, err error)
}

// GateConfig configures a Gate.
type GateConfig struct {
	// Publisher publishes accepted payloads. Required.
	Publisher message.Publisher
	// Topic receives accepted payloads. Required.
	Topic string
	// PublishTimeout bounds the publish; past it the gate reports a
	// transient error. Optional, default 10s.
	PublishTimeout time.Duration
	// Admit, when set, is asked before each publish; its error (classify it)
	// refuses the payload. The service uses it to bound the embedded
	// Pub/Sub's backlog. Optional.
	Admit func() error
	// Outbox, when set, records every payload before it is published.
	// Optional.
	Outbox Outbox
	// Authorize, when set, sees each valid payload's tables (sorted,
	// distinct) before anything is recorded or published; its error
	// (classify it) refuses the payload. The service checks the backend's
	// allowed tables with it. Optional.
	Authorize func(msg *message.Message, tables []string) error
	// MaxInFlight bounds the payloads being recorded and published at
	// once; past it the gate answers ErrOverloaded (transient: 503).
	// Optional, default 0: no bound.
	MaxInFlight int
}

func (c *GateConfig) setDefaults() {
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 10 * time.Second
	}
}

// Validate reports every problem with c at once.
func (c GateConfig) Validate() error {
	var errs []error
	if c.Publisher == nil {
		errs = append(errs, errors.New("gate config: Publisher is required"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("gate config: Topic is required"))
	}
	if c.PublishTimeout < 0 {
		errs = append(errs, errors.New("gate config: PublishTimeout must not be negative"))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, errors.New("gate config: MaxInFlight must not be negative"))
	}
	return errors.Join(errs...)
}

// NewGate returns a Gate, or every problem with cfg.
func NewGate(cfg GateConfig) (*Gate, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Gate{
		publisher: cfg.Publisher, topic: cfg.Topic, publishTimeout: cfg.PublishTimeout, admit: cfg.Admit, outbox: cfg.Outbox,
		authorize: cfg.Authorize, maxInFlight: int64(cfg.MaxInFlight),
	}, nil
}

// Handle is a Watermill no-publisher handler: it publishes itself, so that
// the publish is bounded by its own timeout and its failure classified as
// transient, which the edge turns into 503.
func (g *Gate) Handle(msg *message.Message) error {
	payload, err := messages.Parse(msg.Payload)
	if err != nil {
		return err
	}
	// The edge put the X-Ordering-Key header here; the key travels in the
	// canonical body and as the Pub/Sub ordering key (the metadata).
	payload, err = messages.ResolveOrderingKey(payload, msg.Metadata.Get(messages.MetaOrderingKey))
	if err != nil {
		return err
	}
	if g.authorize != nil {
		if err := g.authorize(msg, payload.Tables()); err != nil {
			return err
		}
	}
	if g.admit != nil {
		if err := g.admit(); err != nil {
			return err
		}
	}
	if g.maxInFlight > 0 {
		// Counted from here, where the publish's cost starts: reading and
		// parsing the body are bounded by the HTTP server's own limits.
		if g.inFlight.Add(1) > g.maxInFlight {
			g.inFlight.Add(-1)
			return messages.Transient(ErrOverloaded)
		}
		defer g.inFlight.Add(-1)
	}
	canonical := payload.Canonical()
	out := message.NewMessage(msg.UUID, canonical)
	for _, key := range []string{messages.MetaReceivedAt, messages.MetaCorrelationID, messages.MetaContentType} {
		out.Metadata.Set(key, msg.Metadata.Get(key))
	}
	// The ledger records the hash, so that a payload id reused for other
	// content (an Idempotency-Key) is caught at apply time; the edge reads
	// it back from msg to remember the key's payload.
	hash := messages.PayloadHash(canonical)
	out.Metadata.Set(messages.MetaPayloadHash, hash)
	msg.Metadata.Set(messages.MetaPayloadHash, hash)
	if payload.OrderingKey != "" {
		out.Metadata.Set(messages.MetaOrderingKey, payload.OrderingKey)
	}
	if b := msg.Metadata.Get(messages.MetaBackend); b != "" {
		out.Metadata.Set(messages.MetaBackend, b)
	}
	// The HTTP subscriber cancels the message's context when the client
	// goes away. The publish must run to its end all the same: cancelled
	// midway, it may have landed while the payload is reported failed, and
	// a client that retries then creates a duplicate under a new id.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), g.publishTimeout)
	defer cancel()
	out.SetContext(ctx)
	if g.outbox != nil {
		if err := g.outbox.Record(ctx, out); err != nil {
			return messages.Transient(fmt.Errorf("%w: %w", ErrRecord, err))
		}
	}
	err = g.publisher.Publish(g.topic, out)
	if g.outbox != nil {
		g.outbox.Published(out.UUID, err)
	}
	if err != nil {
		return messages.Transient(fmt.Errorf("%w to %s: %w", ErrPublish, g.topic, err))
	}
	return nil
}
