package pipeline

import (
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"google.golang.org/api/option"

	"github.com/gatekeeper/gatekeeper/messages"
)

// MetaReplayedAt and MetaReplays mark a payload an operator sent back from
// the poison topic.
const (
	MetaReplayedAt = "replayed_at"
	MetaReplays    = "replays"
)

// poisonKeys are dropped on replay: they describe the failure that is being
// retried, and the apply stage writes them afresh if it fails again.
var poisonKeys = []string{
	middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey,
	middleware.PoisonedSubscriberKey, messages.MetaErrorClass, messages.MetaAttempts,
	messages.MetaFirstFailureAt, messages.MetaLastFailureAt, messages.MetaTables,
}

// ClientOptions reach the Pub/Sub cfg selects from a process other than the
// service: in embedded mode, the running service's embedded server.
func ClientOptions(cfg Config) []option.ClientOption {
	switch cfg.ResolvedPubSubMode() {
	case PubSubEmbedded:
		return emulatorOptions(cfg.EmbeddedPubSubAddr)
	case PubSubEmulator:
		return emulatorOptions(cfg.EmulatorHost)
	default:
		if cfg.CredentialsFile != "" {
			return []option.ClientOption{option.WithAuthCredentialsFile(option.ServiceAccount, cfg.CredentialsFile)}
		}
		return nil
	}
}
