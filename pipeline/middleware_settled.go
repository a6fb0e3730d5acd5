package pipeline

import (
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// settled is the apply stage's outermost middleware. It counts the
// messages handled without error (acked), for the shutdown drain, and,
// when handling is set, holds the id of every message while it is handled,
// so that the outbox's overdue sweep does not publish again a payload this
// process is applying.
func settled(handling *sync.Map, onSettled func()) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if handling != nil {
				handling.Store(msg.UUID, struct{}{})
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
