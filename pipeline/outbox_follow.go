package pipeline

import (
	"context"
	"errors"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
)

// followSettled keeps an ingest-only process's outbox in step with an apply
// stage running elsewhere: through subscriptions of its own on the applied
// and poison topics, it forgets each payload that was applied and marks
// each that was poisoned. What is neither after OUTBOX_REDELIVER_AFTER is
// published again, which is what makes a message the Pub/Sub lost between
// the stages come back (the emulator loses messages handed to a consumer
// that is killed). Runs until ctx ends.
func (s *Service) followSettled(ctx context.Context) {
	var wg sync.WaitGroup
	for _, f := range []struct {
		subscription string
		settle       func(*pubsub.Message)
	}{
		{s.cfg.outboxSubscription("applied"), func(m *pubsub.Message) {
			s.outbox.Forget(m.Attributes[googlecloud.UUIDHeaderKey])
		}},
		{s.cfg.outboxSubscription("poison"), func(m *pubsub.Message) {
			meta := make(map[string]string, len(m.Attributes))
			for k, v := range m.Attributes {
				if k != googlecloud.UUIDHeaderKey {
					meta[k] = v
				}
			}
			s.outbox.MarkPoisoned(m.Attributes[googlecloud.UUIDHeaderKey], meta)
		}},
	} {
		wg.Go(func() {
			sub := s.PubSub.Client().Subscriber(f.subscription)
			sub.ReceiveSettings.NumGoroutines = 2
			sub.ReceiveSettings.MaxOutstandingMessages = 1000
			for ctx.Err() == nil {
				err := sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
					if m.Attributes[googlecloud.UUIDHeaderKey] != "" {
						f.settle(m)
					}
					m.Ack()
				})
				if err != nil && !errors.Is(err, context.Canceled) {
					// The subscription may be gone with the emulator; the
					// monitor recreates it.
					s.logger.Warn("Cannot follow settled payloads; retrying", "subscription", f.subscription, "error", err)
					select {
					case <-ctx.Done():
					case <-time.After(2 * time.Second):
					}
				}
			}
		})
	}
	// The Pub/Sub client's Receive can hang on its way out while the
	// server is unreachable (pubsub v2.9.0, reconnecting under a lock):
	// shutdown does not wait for it beyond a few seconds.
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	<-ctx.Done()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.logger.Warn("Stopped following settled payloads without waiting for the Pub/Sub client, which did not return")
	}
}
