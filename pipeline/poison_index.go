package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
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

// indexBatch bounds one pull, and one write of the poison index: one
// transaction (SQLite) or one streaming insert (BigQuery).
const indexBatch = 500

// indexPoison feeds the events log from the poison subscription, so that
// operators query the log, never the subscription: listing leases nothing
// and adds no delivery attempt. A message is acked only once its event is
// written, and the event's ID is the same for every copy of it, so a crash
// between the two indexes it once. Runs until ctx ends.
//
// It pulls (unary Pull, up to indexBatch at a time) rather than streams: a
// batch is written in one transaction and acked in one call, and what a
// killed process had pulled comes back when its ack deadline passes. The
// emulator holds messages it streamed to a killed process's open streams
// for minutes, and hands them new messages too.
func (s *Service) indexPoison(ctx context.Context) {
	sub := transport.SubscriptionPath(s.cfg.ProjectID, s.cfg.PoisonSubscriptionID)
	admin := s.PubSub.Client().SubscriptionAdminClient
	wait := indexRetryMin
	backoff := func() {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	failing := newIndexFailures(s.logger)
	for ctx.Err() == nil {
		// Pub/Sub may hold an empty pull open for long (the emulator for
		// minutes); a short deadline bounds it, and ends it on shutdown.
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := admin.Pull(pctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: indexBatch})
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if status.Code(err) != codes.DeadlineExceeded {
				s.logger.Warn("Cannot read the poison subscription; retrying", "subscription", s.cfg.PoisonSubscriptionID, "error", err)
				backoff()
			}
			continue
		}
		received := resp.GetReceivedMessages()
		if len(received) == 0 {
			// Some servers (pstest) answer an empty pull at once.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		now := time.Now()
		events := make([]warehouse.Event, len(received))
		ackIDs := make([]string, len(received))
		for i, rm := range received {
			m := rm.GetMessage()
			events[i] = poisonEvent(m.GetMessageId(), m.GetAttributes(), m.GetData(), now)
			ackIDs[i] = rm.GetAckId()
		}
		// Written whole even when shutdown begins: the ack must follow.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err = s.Store.AppendEvents(wctx, events)
		if err != nil {
			cancel()
			failing.failed(len(events), err)
			// Back to the subscription now rather than at the deadline.
			_ = admin.ModifyAckDeadline(context.WithoutCancel(ctx), &pubsubpb.ModifyAckDeadlineRequest{
				Subscription: sub, AckIds: ackIDs, AckDeadlineSeconds: 0,
			})
			backoff()
			wait = min(2*wait, indexRetryMax)
			continue
		}
		failing.ended()
		wait = indexRetryMin
		err = admin.Acknowledge(wctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ackIDs})
		cancel()
		if err != nil {
			// Indexed: a redelivered copy is indexed once all the same.
			s.logger.Warn("Indexed poisoned payloads, but cannot ack them; Pub/Sub redelivers them", "payloads", len(events), "error", err)
		}
		s.Metrics.Indexed(len(events))
		if s.outbox != nil {
			// Indexed: the outbox need not bring them back any more.
			for _, e := range events {
				s.outbox.Forget(e.PayloadID)
			}
		}
	}
}

// The indexer's wait after a failed write of the index: it doubles while
// the writes keep failing (the warehouse is down: an outage), up to the
// maximum.
const (
	indexRetryMin = 2 * time.Second
	indexRetryMax = 30 * time.Second
)

// indexFailures logs the index's failed writes as one condition: once when
// they begin (with the error and its class: an outage is the warehouse
// down, not anything wrong with the poisoned payloads), then a count once
// per pauseLogEvery while they go on, and once when a write succeeds again.
// Nothing is acked meanwhile: Pub/Sub keeps the poison messages.
type indexFailures struct {
	logger          *slog.Logger
	since, lastLog  time.Time
	batches, events int // since the last line
}

func newIndexFailures(logger *slog.Logger) *indexFailures { return &indexFailures{logger: logger} }

func (f *indexFailures) failed(events int, err error) {
	now := time.Now()
	f.batches++
	f.events += events
	switch {
	case f.since.IsZero():
		f.since, f.lastLog = now, now
		f.logger.Error("Cannot index poisoned payloads; Pub/Sub keeps them until the index can be written",
			"payloads", events, "class", messages.ClassOf(err), "error", err)
		f.batches, f.events = 0, 0
	case now.Sub(f.lastLog) >= pauseLogEvery:
		f.lastLog = now
		f.logger.Warn("Still cannot index poisoned payloads", "failing_for", now.Sub(f.since).Round(time.Second).String(),
			"attempts", f.batches, "payloads", f.events, "class", messages.ClassOf(err), "error", err)
		f.batches, f.events = 0, 0
	}
}

func (f *indexFailures) ended() {
	if f.since.IsZero() {
		return
	}
	f.logger.Warn("Indexing poisoned payloads again", "failed_for", time.Since(f.since).Round(time.Millisecond).String())
	f.since = time.Time{}
	f.batches, f.events = 0, 0
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
