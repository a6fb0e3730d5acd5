package pipeline

// The outbox's part in the service: what is published again, when, and
// what the gate records (see package outbox for the store itself).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
)

// republishAtStart publishes again what the outbox holds: payloads accepted
// and not settled before the last stop, and, when the poison subscription
// is new (the embedded Pub/Sub always, an emulator that restarted), the
// poisoned ones, so operators still find them there. The ledger turns a
// payload that was in fact applied into a duplicate.
func (s *Service) republishAtStart(ctx context.Context) error {
	if _, err := s.republish(ctx, outbox.Pending, false); err != nil {
		return err
	}
	for _, r := range s.PubSub.Created() {
		if r.Subscription == s.cfg.PoisonSubscriptionID {
			if _, err := s.republish(ctx, outbox.Poisoned, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// resourceCreated runs when the monitor had to recreate a subscription:
// whatever it held is gone, and the outbox has it.
func (s *Service) resourceCreated(ctx context.Context, r transport.Resource) {
	if s.outbox == nil {
		return
	}
	var state outbox.State
	switch r.Subscription {
	case s.cfg.SubscriptionID, s.cfg.OrderedSubscriptionID:
		state = outbox.Pending
	case s.cfg.PoisonSubscriptionID:
		state = outbox.Poisoned
	default:
		return
	}
	// An entry the gate is still publishing may yet fail, and its client
	// hear 503: republishing it could apply a payload its client was told
	// to retry. The overdue sweep takes any of them whose message was lost.
	if _, err := s.republishIf(ctx, state, false, s.notInFlight); err != nil && ctx.Err() == nil {
		s.logger.Error("Cannot republish the outbox after Pub/Sub lost a subscription; the next start will",
			"state", state, "error", err)
	}
}

// redeliverLoop publishes again, while the process runs, what has waited in
// the outbox past OUTBOX_REDELIVER_AFTER without being applied: a message
// the Pub/Sub lost, or holds out of reach (the emulator keeps messages it
// handed to the streams of a killed process for minutes).
func (s *Service) redeliverLoop(ctx context.Context) {
	every := max(s.cfg.OutboxRedeliverAfter/4, time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A payload the apply stage is handling right now (retrying through
		// a locked warehouse, say) is not lost; a copy would only be
		// applied as a duplicate or poisoned a second time.
		if _, err := s.republishIf(ctx, outbox.Pending, true, s.notInFlight); err != nil && ctx.Err() == nil {
			s.logger.Warn("Cannot republish overdue payloads from the outbox; will try again", "error", err)
		}
		// Where this process indexes the poison topic, a poisoned entry
		// leaves the outbox once indexed; one still here after its time
		// was lost on the way (the emulator loses messages leased to a
		// killed consumer) and goes to the poison topic again. The
		// index's event ids make a second copy harmless.
		if s.apply != nil {
			if _, err := s.republishIf(ctx, outbox.Poisoned, true, s.notInFlight); err != nil && ctx.Err() == nil {
				s.logger.Warn("Cannot republish overdue poisoned payloads from the outbox; will try again", "error", err)
			}
		}
	}
}

// republish publishes outbox entries in state (only those overdue when
// dueOnly), with their ids and metadata, to the topic that state belongs on.
func (s *Service) republish(ctx context.Context, state outbox.State, dueOnly bool) (int, error) {
	return s.republishIf(ctx, state, dueOnly, func(outbox.Entry) bool { return true })
}

// republishIf is republish for the entries keep accepts.
func (s *Service) republishIf(ctx context.Context, state outbox.State, dueOnly bool, keep func(outbox.Entry) bool) (int, error) {
	topic := s.cfg.TopicID
	if state == outbox.Poisoned {
		topic = s.cfg.PoisonTopicID
	}
	started := time.Now()
	pub := s.PubSub.Publisher()
	entries := make(chan outbox.Entry)
	var (
		wg        sync.WaitGroup
		published atomic.Int64
		errOnce   sync.Once
		firstErr  error
	)
	failed := make(chan struct{})
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range entries {
				msg := message.NewMessage(e.ID, e.Payload)
				for k, v := range e.Metadata {
					msg.Metadata.Set(k, v)
				}
				pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
				msg.SetContext(pctx)
				if state == outbox.Pending {
					s.accepted.Add(1)
				}
				err := pub.Publish(topic, msg)
				cancel()
				if err != nil {
					if state == outbox.Pending {
						s.accepted.Add(-1)
					}
					errOnce.Do(func() {
						firstErr = fmt.Errorf("republishing payload %s from the outbox: %w", e.ID, err)
						close(failed)
					})
					continue
				}
				s.outbox.Republished(e)
				published.Add(1)
			}
		}()
	}
	feed := func(e outbox.Entry) error {
		if !keep(e) {
			return nil
		}
		select {
		case entries <- e:
			return nil
		case <-failed:
			return errors.New("stopped")
		}
	}
	var walkErr error
	if dueOnly {
		walkErr = s.outbox.Due(ctx, state, feed)
	} else {
		walkErr = s.outbox.Each(ctx, state, feed)
	}
	close(entries)
	wg.Wait()
	n := int(published.Load())
	if firstErr != nil {
		return n, firstErr
	}
	if walkErr != nil {
		return n, walkErr
	}
	if n > 0 {
		s.logger.Info("Republished payloads from the outbox", "state", state, "overdue_only", dueOnly, "payloads", n, "topic", topic,
			"took", time.Since(started).Round(time.Millisecond))
	}
	return n, nil
}

// gateOutbox is the outbox as the gate sees it. It marks each payload
// whose publish is under way in publishing, so that no republish sends a
// copy of a payload whose client may yet be told to retry.
type gateOutbox struct {
	box        *outbox.Outbox
	publishing *sync.Map
}

func (g gateOutbox) Record(ctx context.Context, msg *message.Message) error {
	g.publishing.Store(msg.UUID, struct{}{})
	err := g.box.Append(ctx, outbox.Entry{ID: msg.UUID, Payload: msg.Payload, Metadata: msg.Metadata})
	if err != nil {
		g.publishing.Delete(msg.UUID)
	}
	return err
}

func (g gateOutbox) Published(payloadID string, err error) {
	defer g.publishing.Delete(payloadID)
	if err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = g.box.ForgetNow(ctx, payloadID)
}

// notInFlight keeps the outbox entries that neither the gate is publishing
// nor the apply stage is handling right now.
func (s *Service) notInFlight(e outbox.Entry) bool {
	if _, busy := s.publishing.Load(e.ID); busy {
		return false
	}
	_, busy := s.handling.Load(e.ID)
	return !busy
}
