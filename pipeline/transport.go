package pipeline

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/api/option"

	"github.com/gatekeeper/gatekeeper/pipeline/transport"
)

// transportConfig is the Pub/Sub transport's part of cfg; onPublish sees
// every publish (nil for a client that does not publish through it).
func transportConfig(cfg Config, logger *slog.Logger, onPublish func(topic string, took time.Duration, err error)) transport.Config {
	tc := transport.Config{
		Mode:            transport.Mode(cfg.ResolvedPubSubMode()),
		ProjectID:       cfg.ProjectID,
		EmulatorHost:    cfg.EmulatorHost,
		EmbeddedAddr:    cfg.EmbeddedPubSubAddr,
		CredentialsFile: cfg.CredentialsFile,

		Topic: cfg.TopicID, OrderedTopic: cfg.OrderedTopicID, AppliedTopic: cfg.AppliedTopicID, PoisonTopic: cfg.PoisonTopicID,
		Subscription: cfg.SubscriptionID, OrderedSubscription: cfg.OrderedSubscriptionID, PoisonSubscription: cfg.PoisonSubscriptionID,

		Apply:                      cfg.Runs(StageApply),
		DoNotCreateResources:       cfg.DoNotCreateResources,
		DisableExactlyOnceDelivery: cfg.DisableExactlyOnceDelivery,
		DeadLetterMaxAttempts:      cfg.DeadLetterMaxAttempts,

		PublishTimeout: cfg.PublishTimeout,
		PublishDelay:   cfg.publishDelay(),
		ReceiveStreams: cfg.ReceiveStreams,
		MaxOutstanding: cfg.MaxOutstanding,
		MaxLease:       cfg.maxLeaseTime(),

		OnPublish: onPublish,
	}
	if logger != nil {
		tc.WatermillLogger = watermillLogger(logger)
	}
	if cfg.OutboxFollowsTopics() {
		tc.FollowAppliedSubscription, tc.FollowPoisonSubscription = cfg.outboxSubscription("applied"), cfg.outboxSubscription("poison")
	}
	return tc
}

// NewPubSub connects to the Pub/Sub cfg selects, as the service does, for
// a tool that publishes with the service's settings (bench/floor).
func NewPubSub(ctx context.Context, cfg Config, logger *slog.Logger) (*transport.PubSub, error) {
	return transport.New(ctx, transportConfig(cfg, logger, nil), logger)
}

// ClientOptions reach the Pub/Sub cfg selects from a process other than the
// service: in embedded mode, the running service's embedded server.
func ClientOptions(cfg Config) []option.ClientOption {
	return transport.ClientOptions(transportConfig(cfg, nil, nil))
}
