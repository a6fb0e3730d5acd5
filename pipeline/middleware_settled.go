package pipeline

import (
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
)

// settled is the apply stage's outermost middleware. It counts the
// messages handled without error (acked), for the shutdown drain, and,
// when handling is set, holds the id of every message while it is handled,
// with the time the gate received it, so that the outbox's overdue sweep
// does not publish again a payload this process is applying, and the age of
// the oldest can be read.
func settled(handling *sync.Map, onSettled func()) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if handling != nil {
				handling.Store(msg.UUID, receivedAt(msg))
				defer handling.Delete(msg.UUID)
			}
			out, err := h(msg)
			if err == nil && onSettled != nil {
				onSettled()
			}
			return out, err
		}
	}
}

// receivedAt is when the gate received msg's payload, or now for a message
// without the metadata (published by another tool).
func receivedAt(msg *message.Message) time.Time {
	if at, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(messages.MetaReceivedAt)); err == nil {
		return at
	}
	return time.Now()
}
