package outbox

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
)

// FollowConfig configures a Follower.
type FollowConfig struct {
	// Outbox is what the Follower keeps in step. Required.
	Outbox *Outbox
	// Client reads the subscriptions. Required.
	Client *pubsub.Client
	// Applied and Poison are this outbox's own subscriptions on the
	// applied and poison topics. Required.
	Applied, Poison string
	// Retry is the wait before receiving again after a subscription
	// failed (it may be gone with the emulator, until it is recreated).
	// Optional, default 2s.
	Retry time.Duration
	// StopWait bounds how long Run waits, once ctx ends, for the Pub/Sub
	// client to return. Optional, default 5s.
	StopWait time.Duration
}

func (c *FollowConfig) setDefaults() {
	if c.Retry == 0 {
		c.Retry = 2 * time.Second
	}
	if c.StopWait == 0 {
		c.StopWait = 5 * time.Second
	}
}

// Validate reports every problem with c.
func (c FollowConfig) Validate() error {
	var errs []error
	if c.Outbox == nil {
		errs = append(errs, errors.New("outbox follow config: Outbox is required"))
	}
	if c.Client == nil {
		errs = append(errs, errors.New("outbox follow config: Client is required"))
	}
	if c.Applied == "" {
		errs = append(errs, errors.New("outbox follow config: Applied is required"))
	}
	if c.Poison == "" {
		errs = append(errs, errors.New("outbox follow config: Poison is required"))
	}
	if c.Retry < 0 || c.StopWait < 0 {
		errs = append(errs, errors.New("outbox follow config: Retry and StopWait must not be negative"))
	}
	return errors.Join(errs...)
}

// Follower keeps an ingest-only process's outbox in step with an apply
// stage running elsewhere: through subscriptions of its own on the applied
// and poison topics, it forgets each payload that was applied and marks
// each that was poisoned. What is neither after the outbox's
// RedeliverAfter is published again (Redeliverer), which is what makes a
// message the Pub/Sub lost between the stages come back (the emulator
// loses messages handed to a consumer that is killed).
type Follower struct {
	cfg    FollowConfig
	logger *slog.Logger
}

// NewFollower returns a Follower, or every problem with cfg.
func NewFollower(cfg FollowConfig, logger *slog.Logger) (*Follower, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Follower{cfg: cfg, logger: logger}, nil
}

// Run follows both topics until ctx ends.
func (f *Follower) Run(ctx context.Context) {
	box := f.cfg.Outbox
	var wg sync.WaitGroup
	for _, s := range []struct {
		subscription string
		settled      func(*pubsub.Message)
	}{
		{f.cfg.Applied, func(m *pubsub.Message) {
			box.Forget(m.Attributes[googlecloud.UUIDHeaderKey])
		}},
		{f.cfg.Poison, func(m *pubsub.Message) {
			meta := make(map[string]string, len(m.Attributes))
			for k, v := range m.Attributes {
				if k != googlecloud.UUIDHeaderKey {
					meta[k] = v
				}
			}
			box.MarkPoisoned(m.Attributes[googlecloud.UUIDHeaderKey], meta)
		}},
	} {
		wg.Go(func() {
			sub := f.cfg.Client.Subscriber(s.subscription)
			sub.ReceiveSettings.NumGoroutines = 2
			sub.ReceiveSettings.MaxOutstandingMessages = 1000
			for ctx.Err() == nil {
				err := sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
					if m.Attributes[googlecloud.UUIDHeaderKey] != "" {
						s.settled(m)
					}
					m.Ack()
				})
				if err != nil && !errors.Is(err, context.Canceled) {
					// The subscription may be gone with the emulator; the
					// monitor recreates it.
					f.logger.Warn("Cannot follow settled payloads; retrying", "outbox", box.Path(), "subscription", s.subscription, "error", err)
					select {
					case <-ctx.Done():
					case <-time.After(f.cfg.Retry):
					}
				}
			}
		})
	}
	// The Pub/Sub client's Receive can hang on its way out while the
	// server is unreachable (pubsub v2.9.0, reconnecting under a lock):
	// shutdown does not wait for it beyond StopWait.
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	<-ctx.Done()
	select {
	case <-done:
	case <-time.After(f.cfg.StopWait):
		f.logger.Warn("Stopped following settled payloads without waiting for the Pub/Sub client, which did not return", "outbox", box.Path())
	}
}
