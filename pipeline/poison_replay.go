package pipeline

import (
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

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
