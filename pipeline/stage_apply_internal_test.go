package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/ordering"
	"github.com/gatekeeper/gatekeeper/pipeline/pause"
)

// An attempt that meets an outage is not an attempt of the payload's.
func TestRecordFailuresSkipsOutages(t *testing.T) {
	t.Parallel()
	h := RecordFailures(time.Now, slog.New(slog.DiscardHandler))(func(*message.Message) ([]*message.Message, error) {
		return nil, messages.Outage(errors.New("disk full"))
	})
	msg := message.NewMessage("1", nil)
	_, _ = h(msg)
	_, _ = h(msg)
	if a, c := msg.Metadata.Get(messages.MetaAttempts), msg.Metadata.Get(messages.MetaErrorClass); a != "" || c != "" {
		t.Fatalf("attempts %q, class %q recorded for outages; want nothing", a, c)
	}
}

// The poison queue lets through, to a nack, what is no failure of the
// payload's: a shutdown's cancellation, a hold of a blocked ordering key,
// and an outage (the pause gives back what it held past its time as one).
func TestShouldPoisonOnlyThePayloadsOwnFailures(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("shutdown: %w", context.Canceled), false},
		{fmt.Errorf("key k: %w", ordering.ErrHeld), false},
		{messages.Outage(fmt.Errorf("held too long: %w", pause.ErrPaused)), false},
		{messages.Transient(errors.New("busy")), true},
		{messages.Permanent(errors.New("no such table")), true},
		{errors.New("a bug"), true},
	} {
		if got := shouldPoison(c.err); got != c.want {
			t.Errorf("shouldPoison(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
