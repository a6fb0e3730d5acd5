package handlers

import (
	"context"
	"encoding/json"
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
	submitter Submitter
	now       func() time.Time
	// OnOutcome, when set, sees every payload the handler settles without
	// error (applied or duplicate: in the ledger either way), for metrics and
	// the outbox.
	OnOutcome func(payloadID string, status warehouse.Status)
}

// NewApply returns an Apply handler that writes through submitter.
func NewApply(submitter Submitter) (*Apply, error) {
	if submitter == nil {
		return nil, fmt.Errorf("apply handler: Submitter is required")
	}
	return &Apply{submitter: submitter, now: time.Now}, nil
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

	outcome, err := a.submitter.Submit(msg.Context(), warehouse.Payload{ID: msg.UUID, Activities: payload.Activities})
	if err != nil {
		return nil, err
	}
	if outcome.Status == warehouse.Rejected {
		return nil, messages.Permanent(outcome.Err)
	}
	if a.OnOutcome != nil {
		a.OnOutcome(msg.UUID, outcome.Status)
	}
	appliedAt := a.now()
	event, err := json.Marshal(messages.AppliedEvent{
		PayloadID:       msg.UUID,
		Tables:          tables,
		RowsAffected:    outcome.RowsAffected,
		AppliedAt:       appliedAt.UTC(),
		ApplyDurationMS: float64(appliedAt.Sub(started).Microseconds()) / 1000,
		Duplicate:       outcome.Status == warehouse.Duplicate,
	})
	if err != nil {
		return nil, messages.Permanent(err)
	}
	// The stage's CorrelationID middleware gives the event the payload's
	// correlation id.
	return []*message.Message{message.NewMessage(msg.UUID, event)}, nil
}
