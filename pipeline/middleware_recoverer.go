package pipeline

import (
	"errors"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/gatekeeper/gatekeeper/messages"
)

// recoverer is Watermill's Recoverer with the panic classified: a panic is
// a bug, and no retry fixes a bug, so it is permanent. The edge answers 500
// rather than 503 "retry", and the apply stage poisons the payload at once,
// with the stack in the poison reason, rather than retrying it RETRY_MAX
// times first.
func recoverer(h message.HandlerFunc) message.HandlerFunc {
	h = middleware.Recoverer(h)
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if errors.As(err, new(middleware.RecoveredPanicError)) {
			err = messages.Permanent(err)
		}
		return out, err
	}
}
