package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
)

// RecordFailures writes each failed attempt into the message's metadata —
// attempts, first and last failure time, error class — so that a poisoned
// message tells an operator what happened without reading logs. It sits
// inside Retry, so it sees every attempt, and outside Timeout, so it can
// hand Retry and the poison queue back the message with the context they
// gave it rather than the expired one Timeout leaves behind.
//
// It also logs each failed attempt once, with the payload's ids: Retry's
// own log line has neither, so Retry logs nothing.
//
// An attempt that met an outage is no attempt of the payload's: the
// warehouse was down. It is neither counted nor logged here; the apply
// stage's pause holds the payload and logs the outage once.
func RecordFailures(now func() time.Time, logger *slog.Logger) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := msg.Context()
			out, err := h(msg)
			msg.SetContext(ctx)
			if messages.ClassOf(err) == messages.ClassOutage {
				return out, err
			}

			attempts, _ := strconv.Atoi(msg.Metadata.Get(messages.MetaAttempts))
			msg.Metadata.Set(messages.MetaAttempts, strconv.Itoa(attempts+1))
			if err == nil {
				return out, nil
			}
			at := now().UTC().Format(time.RFC3339Nano)
			if msg.Metadata.Get(messages.MetaFirstFailureAt) == "" {
				msg.Metadata.Set(messages.MetaFirstFailureAt, at)
			}
			msg.Metadata.Set(messages.MetaLastFailureAt, at)
			class := messages.ClassOf(err)
			msg.Metadata.Set(messages.MetaErrorClass, string(class))
			if !errors.Is(err, context.Canceled) {
				logger.Warn("Apply attempt failed", "payload_id", msg.UUID,
					"correlation_id", msg.Metadata.Get(messages.MetaCorrelationID),
					"attempt", attempts+1, "class", class, "error", err)
			}
			return out, err
		}
	}
}
