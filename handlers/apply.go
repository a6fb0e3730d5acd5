package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// Submitter applies one payload as part of a group; warehouse.GroupCommitter
// implements it.
type Submitter interface {
	Submit(ctx context.Context, p warehouse.Payload) (warehouse.Outcome, error)
}

// Apply applies an accepted payload to the warehouse as one transaction and
// produces its applied event.
type Apply struct {
	cfg ApplyConfig
	now func() time.Time
}

// ApplyConfig configures an Apply handler.
type ApplyConfig struct {
	// Submitter writes payloads to the warehouse. Required.
	Submitter Submitter
	// OnOutcome, when set, sees every payload the handler settles without
	// error (applied or duplicate: in the ledger either way), for metrics,
	// logs and the outbox. Optional.
	OnOutcome func(msg *message.Message, outcome warehouse.Outcome)
}

// Validate reports every problem with c at once.
func (c ApplyConfig) Validate() error {
	if c.Submitter == nil {
		return errors.New("apply config: Submitter is required")
	}
	return nil
}

// NewApply returns an Apply handler, or the problems with cfg.
func NewApply(cfg ApplyConfig) (*Apply, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Apply{cfg: cfg, now: time.Now}, nil
}

// Handle is a Watermill handler. A payload already in the ledger produces an
// applied event again, marked duplicate, so that the event log stays complete
// when the first event was lost between commit and ack.
func (a *Apply) Handle(msg *message.Message) ([]*message.Message, error) {
	started := a.now()
	payload, err := messages.Parse(msg.Payload)
	if err != nil {
		// The gate published it, so this is a corrupted or foreign message:
		// no retry can fix it.
		return nil, messages.Permanent(fmt.Errorf("malformed accepted payload: %w", err))
	}
	tables := payload.Tables()
	msg.Metadata.Set(messages.MetaTables, strings.Join(tables, ","))

	hash := msg.Metadata.Get(messages.MetaPayloadHash)
	if hash == "" {
		// Published by a gate that did not record hashes (an outbox or a
		// poison message from before): the payload is canonical already.
		hash = messages.PayloadHash(payload.Canonical())
	}
	outcome, err := a.cfg.Submitter.Submit(msg.Context(), warehouse.Payload{ID: msg.UUID, Activities: payload.Activities, Hash: hash, OrderingKey: payload.OrderingKey})
	if err != nil {
		return nil, err
	}
	if outcome.Status == warehouse.Rejected {
		if outcome.Err == nil {
			// Permanent(nil) is nil: the payload would be acked with no
			// event and no poison message.
			return nil, messages.Permanent(errors.New("the warehouse rejected the payload without saying why"))
		}
		return nil, messages.Permanent(outcome.Err)
	}
	if a.cfg.OnOutcome != nil {
		a.cfg.OnOutcome(msg, outcome)
	}
	appliedAt := a.now()
	event, err := json.Marshal(messages.AppliedEvent{
		PayloadID:       msg.UUID,
		Tables:          tables,
		RowsAffected:    outcome.RowsAffected,
		AppliedAt:       appliedAt.UTC(),
		ApplyDurationMS: float64(appliedAt.Sub(started).Microseconds()) / 1000,
		Duplicate:       outcome.Status == warehouse.Duplicate,
		Backend:         msg.Metadata.Get(messages.MetaBackend),
	})
	if err != nil {
		return nil, messages.Permanent(err)
	}
	// The stage's CorrelationID middleware gives the event the payload's
	// correlation id.
	ev := message.NewMessage(msg.UUID, event)
	if b := msg.Metadata.Get(messages.MetaBackend); b != "" {
		ev.Metadata.Set(messages.MetaBackend, b)
	}
	return []*message.Message{ev}, nil
}
