package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
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

// PoisonQueue lets an operator read and replay poisoned payloads from
// another process than the service.
type PoisonQueue struct {
	cfg    Config
	client *pubsub.Client
}

// Poisoned is one poisoned payload as an operator sees it.
type Poisoned struct {
	PayloadID      string          `json:"payload_id"`
	Reason         string          `json:"reason"`
	ErrorClass     string          `json:"error_class"`
	Attempts       string          `json:"attempts"`
	Tables         string          `json:"tables"`
	FirstFailureAt string          `json:"first_failure_at"`
	LastFailureAt  string          `json:"last_failure_at"`
	ReceivedAt     string          `json:"received_at"`
	CorrelationID  string          `json:"correlation_id"`
	Replays        string          `json:"replays,omitempty"`
	Payload        json.RawMessage `json:"payload"`

	ackID      string
	attributes map[string]string
	data       []byte
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

// NewPoisonQueue connects to the poison subscription cfg names.
func NewPoisonQueue(ctx context.Context, cfg Config) (*PoisonQueue, error) {
	cfg.setDefaults()
	client, err := pubsub.NewClient(ctx, cfg.ProjectID, ClientOptions(cfg)...)
	if err != nil {
		return nil, err
	}
	return &PoisonQueue{cfg: cfg, client: client}, nil
}

// Close releases the client.
func (q *PoisonQueue) Close() error { return q.client.Close() }

// pull takes up to max poisoned payloads (all when max <= 0) and holds them
// until released or acked. A pull that returns nothing ends the walk.
func (q *PoisonQueue) pull(ctx context.Context, max int) ([]Poisoned, error) {
	sub := q.subscription()
	// An empty pull is told apart from an unreachable Pub/Sub only by its
	// deadline, so ask first whether the subscription is there at all: an
	// operator must not read "nothing poisoned" when nothing answered.
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := q.client.SubscriptionAdminClient.GetSubscription(gctx, &pubsubpb.GetSubscriptionRequest{Subscription: sub})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", q.cfg.PoisonSubscriptionID, err)
	}
	var out []Poisoned
	for max <= 0 || len(out) < max {
		want := 100
		if max > 0 && max-len(out) < want {
			want = max - len(out)
		}
		resp, err := q.pullOnce(ctx, sub, want)
		if err != nil {
			return out, fmt.Errorf("pull %s: %w", q.cfg.PoisonSubscriptionID, err)
		}
		if len(resp.ReceivedMessages) == 0 {
			break
		}
		for _, rm := range resp.ReceivedMessages {
			m := rm.GetMessage()
			a := m.GetAttributes()
			p := Poisoned{
				PayloadID: a[googlecloud.UUIDHeaderKey], Reason: a[middleware.ReasonForPoisonedKey],
				ErrorClass: a[messages.MetaErrorClass], Attempts: a[messages.MetaAttempts],
				Tables: a[messages.MetaTables], FirstFailureAt: a[messages.MetaFirstFailureAt],
				LastFailureAt: a[messages.MetaLastFailureAt], ReceivedAt: a[messages.MetaReceivedAt],
				CorrelationID: a[messages.MetaCorrelationID], Replays: a[MetaReplays],
				ackID: rm.GetAckId(), attributes: a, data: m.GetData(),
			}
			if json.Valid(m.GetData()) {
				p.Payload = m.GetData()
			} else {
				p.Payload, _ = json.Marshal(string(m.GetData()))
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func (q *PoisonQueue) subscription() string {
	return subscriptionPath(q.cfg.ProjectID, q.cfg.PoisonSubscriptionID)
}

// release hands pulled payloads straight back to the subscription (a zero
// ack deadline), for the next list or replay to find.
func (q *PoisonQueue) release(ctx context.Context, ps []Poisoned) error {
	return q.client.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{
		Subscription: q.subscription(), AckIds: ackIDs(ps), AckDeadlineSeconds: 0,
	})
}

func ackIDs(ps []Poisoned) []string {
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ackID
	}
	return ids
}

// List returns up to max poisoned payloads and leaves them on the queue.
func (q *PoisonQueue) List(ctx context.Context, max int) ([]Poisoned, error) {
	ps, err := q.pull(ctx, max)
	if len(ps) > 0 {
		if rerr := q.release(ctx, ps); rerr != nil && err == nil {
			err = fmt.Errorf("release: %w", rerr)
		}
	}
	return ps, err
}

// Replay publishes up to max poisoned payloads (only the one with payloadID
// when it is not empty) back to the accepted topic with their original id
// and metadata, then removes them from the poison queue. The ledger makes
// this safe even for a payload that was in fact applied. It returns what it
// replayed.
func (q *PoisonQueue) Replay(ctx context.Context, max int, payloadID string) ([]Poisoned, error) {
	ps, err := q.pull(ctx, 0)
	if err != nil {
		return nil, err
	}
	var replay, keep []Poisoned
	for _, p := range ps {
		if (payloadID == "" || p.PayloadID == payloadID) && (max <= 0 || len(replay) < max) {
			replay = append(replay, p)
		} else {
			keep = append(keep, p)
		}
	}
	if len(keep) > 0 {
		_ = q.release(ctx, keep)
	}
	if len(replay) == 0 {
		return nil, nil
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	var done []Poisoned
	// A publish request carries at most 1,000 messages; each chunk reaches
	// the topic whole or not at all, and only then leaves the poison queue.
	for start := 0; start < len(replay); start += 500 {
		chunk := replay[start:min(start+500, len(replay))]
		if err := q.republish(ctx, chunk, now); err != nil {
			_ = q.release(ctx, replay[start:])
			return done, err
		}
		done = append(done, chunk...)
	}
	return done, nil
}

func (q *PoisonQueue) republish(ctx context.Context, chunk []Poisoned, now string) error {
	msgs := make([]*pubsubpb.PubsubMessage, len(chunk))
	for i, p := range chunk {
		attrs := make(map[string]string, len(p.attributes))
		for k, v := range p.attributes {
			attrs[k] = v
		}
		for _, k := range poisonKeys {
			delete(attrs, k)
		}
		n, _ := strconv.Atoi(p.attributes[MetaReplays])
		attrs[MetaReplays] = strconv.Itoa(n + 1)
		attrs[MetaReplayedAt] = now
		msgs[i] = &pubsubpb.PubsubMessage{Data: p.data, Attributes: attrs}
	}
	if _, err := q.client.TopicAdminClient.Publish(ctx, &pubsubpb.PublishRequest{
		Topic: topicPath(q.cfg.ProjectID, q.cfg.TopicID), Messages: msgs,
	}); err != nil {
		return fmt.Errorf("publish to %s: %w", q.cfg.TopicID, err)
	}
	if err := q.client.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{
		Subscription: q.subscription(), AckIds: ackIDs(chunk),
	}); err != nil {
		return fmt.Errorf("replayed, but could not remove them from the poison queue (they will show again; replaying twice is harmless): %w", err)
	}
	return nil
}

// pullOnce asks for up to n messages. Pub/Sub may hold an empty pull open
// for a long time (the emulator for minutes), so an empty queue is detected
// by a short deadline as well as by ReturnImmediately, which Google
// deprecated but emulators honour.
func (q *PoisonQueue) pullOnce(ctx context.Context, sub string, n int) (*pubsubpb.PullResponse, error) {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := q.client.SubscriptionAdminClient.Pull(pctx, &pubsubpb.PullRequest{
		Subscription: sub, MaxMessages: int32(n),
		//lint:ignore SA1019 deprecated by Google, still honoured by the emulators; see above
		ReturnImmediately: true,
	})
	if err != nil && ctx.Err() == nil && pctx.Err() != nil {
		return &pubsubpb.PullResponse{}, nil
	}
	return resp, err
}
