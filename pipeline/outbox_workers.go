package pipeline

import (
	"context"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// openOutbox opens the outbox through its keeper, which refuses a file
// that is not the one the warehouse or Pub/Sub remember.
func (s *Service) openOutbox(ctx context.Context) (err error) {
	var registry warehouse.OutboxRegistry
	if reg, ok := s.Store.(warehouse.OutboxRegistry); ok && s.cfg.Runs(StageApply) {
		registry = reg
	}
	if s.keeper, err = outbox.NewKeeper(outbox.KeeperConfig{
		Outbox: outbox.Config{
			Path: s.cfg.OutboxPath, Sync: s.cfg.SQLiteSync, RedeliverAfter: s.cfg.OutboxRedeliverAfter,
			LogEvery: s.cfg.LogRepeatInterval,
		},
		Registry: registry, Remembered: s.subscriptionRemembers, AcceptLoss: s.cfg.OutboxAcceptLoss,
	}, s.logger); err != nil {
		return err
	}
	s.outbox, err = s.keeper.Open(ctx)
	return err
}

// subscriptionRemembers is what Pub/Sub remembers of an ingest-only
// process's outbox: its follow subscription on the applied topic, named
// after the host and the file, existed before this start (the transport
// did not create it). Its existence is all it says. Labels could carry
// the identity and the count, but the emulator refuses to update them
// ("labels is not a known Subscription field"), and a subscription's
// labels set only at its creation would keep a lost outbox's identity for
// ever. So on Pub/Sub a missing or empty file is caught, a file replaced
// by another outbox is not. The embedded Pub/Sub keeps nothing across
// restarts, and a follow subscription unused for a day expires: then only
// the warehouse remembers, when this process applies to it.
func (s *Service) subscriptionRemembers(ctx context.Context) (outbox.Remembered, bool) {
	if !s.cfg.OutboxFollowsTopics() || s.PubSub.Mode == transport.ModeEmbedded {
		return outbox.Remembered{}, false
	}
	name := s.cfg.outboxSubscription("applied")
	for _, r := range s.PubSub.Created() {
		if r.Subscription == name {
			return outbox.Remembered{}, false
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := s.PubSub.Client().SubscriptionAdminClient.GetSubscription(rctx,
		&pubsubpb.GetSubscriptionRequest{Subscription: transport.SubscriptionPath(s.cfg.ProjectID, name)})
	if err != nil {
		if status.Code(err) != codes.NotFound {
			s.logger.Warn("Cannot read Pub/Sub's record of the outbox; starting without checking it against the file",
				"subscription", name, "error", err)
		}
		return outbox.Remembered{}, false
	}
	return outbox.Remembered{Where: "Pub/Sub (subscription " + name + ")"}, true
}

// buildOutboxWorkers builds what works on the outbox besides the gate: the
// gate's recorder, the redeliverer, and, where the apply stage runs in
// another process, the follower of the applied and poison topics.
func (s *Service) buildOutboxWorkers() (err error) {
	s.recorder = outbox.NewRecorder(s.outbox)
	if s.redeliverer, err = outbox.NewRedeliverer(outbox.RedeliverConfig{
		Outbox: s.outbox, Publisher: s.PubSub.Publisher(),
		AcceptedTopic: s.cfg.TopicID, PoisonTopic: s.cfg.PoisonTopicID,
		PublishTimeout: s.cfg.PublishTimeout,
		Interval:       max(s.cfg.OutboxRedeliverAfter/4, time.Second),
		Poisoned:       s.cfg.Runs(StageApply),
		Busy:           s.busy,
		Counted:        func(delta int64) { s.accepted.Add(delta) },
	}, s.logger); err != nil {
		return err
	}
	if s.cfg.OutboxFollowsTopics() {
		s.follower, err = outbox.NewFollower(outbox.FollowConfig{
			Outbox: s.outbox, Client: s.PubSub.Client(),
			Applied: s.cfg.outboxSubscription("applied"), Poison: s.cfg.outboxSubscription("poison"),
		}, s.logger)
	}
	return err
}

// busy names the payloads no republish may copy now: those the gate is
// publishing (their client may yet hear 503 and retry) and those the apply
// stage is handling.
func (s *Service) busy(id string) bool {
	if s.recorder.Publishing(id) {
		return true
	}
	_, handling := s.handling.Load(id)
	return handling
}

// republishAtStart publishes again what the outbox holds: payloads accepted
// and not settled before the last stop, and, when the poison subscription
// is new (the embedded Pub/Sub always, an emulator that restarted), the
// poisoned ones, so operators still find them there. The ledger turns a
// payload that was in fact applied into a duplicate.
func (s *Service) republishAtStart(ctx context.Context) error {
	if _, err := s.redeliverer.All(ctx, outbox.Pending); err != nil {
		return err
	}
	for _, r := range s.PubSub.Created() {
		if r.Subscription == s.cfg.PoisonSubscriptionID {
			if _, err := s.redeliverer.All(ctx, outbox.Poisoned); err != nil {
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
	if _, err := s.redeliverer.Idle(ctx, state); err != nil && ctx.Err() == nil {
		s.logger.Error("Cannot republish the outbox after Pub/Sub lost a subscription; the next start will",
			"outbox", s.cfg.OutboxPath, "state", state, "error", err)
	}
}
