package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// ClassUnknown is the class of a poisoned payload that reached the poison
// topic without gatekeeper's metadata: Pub/Sub's own dead-letter policy
// moved it there (DEAD_LETTER_MAX_ATTEMPTS), or someone published it.
const ClassUnknown = "unknown"

// Pub/Sub's own attributes on a dead-lettered message.
const (
	attrDeadLetterDeliveryCount = "CloudPubSubDeadLetterSourceDeliveryCount"
	attrDeadLetterSubscription  = "CloudPubSubDeadLetterSourceSubscription"
)

// indexBatch bounds one write of the poison index: one transaction (SQLite)
// or one streaming insert (BigQuery) for many poison messages.
const (
	indexBatch     = 500
	indexBatchWait = 20 * time.Millisecond
)

// indexPoison feeds the events log from the poison subscription, so that
// operators query the log, never the subscription: listing leases nothing
// and adds no delivery attempt. A message is acked only once its event is
// written, and the event's ID is the same for every copy of it, so a crash
// between the two indexes it once. Runs until ctx ends.
func (s *Service) indexPoison(ctx context.Context) {
	type pending struct {
		event warehouse.Event
		msg   *pubsub.Message
	}
	queue := make(chan pending, indexBatch)
	var writer sync.WaitGroup
	writer.Go(func() {
		var batch []pending
		flush := func() {
			if len(batch) == 0 {
				return
			}
			events := make([]warehouse.Event, len(batch))
			for i, p := range batch {
				events[i] = p.event
			}
			wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := s.Store.AppendEvents(wctx, events)
			cancel()
			for _, p := range batch {
				if err != nil {
					p.msg.Nack()
				} else {
					p.msg.Ack()
				}
			}
			if err != nil {
				s.logger.Error("Cannot index poisoned payloads; Pub/Sub redelivers them", "payloads", len(batch), "error", err)
			} else {
				s.Metrics.Indexed(len(batch))
			}
			batch = batch[:0]
		}
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case p, ok := <-queue:
				if !ok {
					flush()
					return
				}
				if len(batch) == 0 {
					timer.Reset(indexBatchWait)
				}
				batch = append(batch, p)
				if len(batch) >= indexBatch {
					timer.Stop()
					flush()
				}
			case <-timer.C:
				flush()
			}
		}
	})

	sub := s.PubSub.client.Subscriber(s.cfg.PoisonSubscriptionID)
	sub.ReceiveSettings.NumGoroutines = 2
	sub.ReceiveSettings.MaxOutstandingMessages = 4 * indexBatch
	// Messages handed over but not yet written go back at once on
	// shutdown, so the next start finds them without waiting for a lease.
	sub.ReceiveSettings.ShutdownOptions = &pubsub.ShutdownOptions{Behavior: pubsub.ShutdownBehaviorNackImmediately, Timeout: 5 * time.Second}
	received := make(chan struct{})
	go func() {
		defer close(received)
		for ctx.Err() == nil {
			err := sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
				select {
				case queue <- pending{poisonEvent(m.ID, m.Attributes, m.Data, time.Now()), m}:
				case <-ctx.Done():
					m.Nack()
				}
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				s.logger.Warn("Cannot read the poison subscription; retrying", "subscription", s.cfg.PoisonSubscriptionID, "error", err)
				select {
				case <-ctx.Done():
				case <-time.After(2 * time.Second):
				}
			}
		}
	}()
	<-ctx.Done()
	// Receive can hang on its way out while Pub/Sub is unreachable (see
	// followSettled); what it still holds is redelivered either way.
	select {
	case <-received:
	case <-time.After(5 * time.Second):
		s.logger.Warn("Stopped indexing poisoned payloads without waiting for the Pub/Sub client, which did not return")
	}
	close(queue)
	writer.Wait()
}

// poisonEvent turns one poison message into its event. A message without
// gatekeeper's metadata is indexed all the same, as class unknown, with the
// reason Pub/Sub's dead-letter attributes give.
func poisonEvent(messageID string, attrs map[string]string, data []byte, now time.Time) warehouse.Event {
	id := attrs[googlecloud.UUIDHeaderKey]
	if id == "" {
		id = "pubsub-" + messageID
	}
	generation, _ := strconv.Atoi(attrs[MetaReplays])
	e := warehouse.Event{
		ID: warehouse.EventID(id, warehouse.EventPoisoned, generation), PayloadID: id,
		Kind: warehouse.EventPoisoned, Generation: generation, At: now.UTC(),
		ErrorClass: attrs[messages.MetaErrorClass], Reason: attrs[middleware.ReasonForPoisonedKey],
		CorrelationID:  attrs[messages.MetaCorrelationID],
		FirstFailureAt: parseTime(attrs[messages.MetaFirstFailureAt]),
		LastFailureAt:  parseTime(attrs[messages.MetaLastFailureAt]),
		ReceivedAt:     parseTime(attrs[messages.MetaReceivedAt]),
		Attributes:     attrs, Payload: data,
	}
	e.Attempts, _ = strconv.Atoi(attrs[messages.MetaAttempts])
	if t := attrs[messages.MetaTables]; t != "" {
		e.Tables = strings.Split(t, ",")
	} else if p, err := messages.Parse(data); err == nil {
		e.Tables = payloadTables(p)
	}
	if e.ErrorClass == "" {
		e.ErrorClass = ClassUnknown
		if n := attrs[attrDeadLetterDeliveryCount]; n != "" {
			e.Attempts, _ = strconv.Atoi(n)
			e.Reason = fmt.Sprintf("dead-lettered by Pub/Sub after %s delivery attempts on %s without an ack", n, attrs[attrDeadLetterSubscription])
		} else if e.Reason == "" {
			e.Reason = "reached the poison topic without gatekeeper's metadata (Pub/Sub's dead-letter policy, or another publisher)"
		}
	}
	if e.LastFailureAt.IsZero() {
		e.LastFailureAt = e.At
	}
	if e.FirstFailureAt.IsZero() {
		e.FirstFailureAt = e.LastFailureAt
	}
	return e
}

func payloadTables(p messages.Payload) []string {
	var ts []string
	for _, a := range p.Activities {
		if !slices.Contains(ts, a.Table) {
			ts = append(ts, a.Table)
		}
	}
	slices.Sort(ts)
	return ts
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}
