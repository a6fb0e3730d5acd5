package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/transport/embedded"
)

// PubSub is the transport between the stages: one admin client for
// resources and readiness, one shared publisher, and subscribers on demand.
type PubSub struct {
	Mode     Mode
	Embedded *embedded.Server // set in embedded mode only

	cfg     Config
	client  *pubsub.Client
	options []option.ClientOption
	pub     message.Publisher
	wlog    watermill.LoggerAdapter
	logger  *slog.Logger

	// created lists what New had to create: a subscription created
	// here holds nothing that was published before.
	created []Resource
	// missing lists what New found missing and could not create; only
	// an ingest-only process starts so, and is not ready until they exist.
	missing []MissingResource
	// warnedUnordered holds the subscriptions already warned about
	// ordering otherwise than wanted: the health monitor checks them every
	// few seconds, and the warning says all there is to say once.
	warnedUnordered sync.Map
}

// New connects to the Pub/Sub that cfg selects, starting the embedded
// server in embedded mode, and creates or checks the topics and
// subscriptions the configured stages use.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*PubSub, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pub/sub transport:\n%w", err)
	}
	ps := &PubSub{Mode: cfg.Mode, cfg: cfg, logger: logger, wlog: cfg.WatermillLogger}
	if ps.wlog == nil {
		ps.wlog = watermill.NewSlogLogger(logger)
	}
	switch ps.Mode {
	case ModeEmbedded:
		emb, err := embedded.New(embedded.Config{Addr: cfg.EmbeddedAddr}, logger)
		if err != nil {
			return nil, err
		}
		ps.Embedded = emb
		ps.options = emulatorOptions(emb.Addr())
	default:
		ps.options = ClientOptions(cfg)
	}
	logger.Info("Pub/Sub mode", "mode", ps.Mode, "project", cfg.ProjectID, "endpoint", ps.endpoint())

	client, err := pubsub.NewClient(ctx, cfg.ProjectID, ps.options...)
	if err != nil {
		ps.closeEmbedded()
		return nil, fmt.Errorf("pub/sub client: %w", err)
	}
	ps.client = client
	if err := ps.ensureResources(ctx); err != nil {
		_ = ps.Close()
		return nil, err
	}
	if len(ps.missing) > 0 && cfg.Apply {
		// The apply stage's subscriber cannot start without them.
		var errs []error
		for _, m := range ps.missing {
			errs = append(errs, m.Err)
		}
		_ = ps.Close()
		return nil, errors.Join(errs...)
	}
	ps.pub, err = ps.newPublisher()
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("pub/sub publisher: %w", err)
	}
	return ps, nil
}

// newPublisher is the publisher every stage shares.
func (ps *PubSub) newPublisher() (message.Publisher, error) {
	pub, err := googlecloud.NewPublisher(googlecloud.PublisherConfig{
		ProjectID: ps.cfg.ProjectID,
		// Resources were created or checked above; checking again per
		// topic would cost a round trip on the first publish of each.
		DoNotCheckTopicExistence:  true,
		DoNotCreateTopicIfMissing: true,
		PublishTimeout:            ps.cfg.PublishTimeout,
		PublishSettings:           ps.publishSettings(),
		ClientOptions:             ps.options,
		// Payloads of one ordering key are published in the order the gate
		// hands them over. After a failed publish the client pauses the
		// key until ResumePublish; the publisher resumes it at once, so
		// only the failed payload (whose client got 503) is lost to the
		// key, and not every later one.
		EnableMessageOrdering:                         true,
		EnableMessageOrderingAutoResumePublishOnError: true,
		Marshaler: googlecloud.NewOrderingMarshaler(ps.orderingKey),
	}, ps.wlog)
	if err != nil {
		// Not a nil *googlecloud.Publisher in a non-nil interface, which
		// Close would call.
		return nil, err
	}
	return pub, nil
}

// orderingKey is the Pub/Sub ordering key of a message published to topic:
// the payload's ordering key on the ordered accepted topic (a replay or an
// outbox redelivery carries it in its metadata too), and none elsewhere.
// No other topic is read by an ordered subscription, and a key there would
// only make the client publish its messages one batch at a time.
func (ps *PubSub) orderingKey(topic string, msg *message.Message) (string, error) {
	if topic != ps.cfg.OrderedTopic {
		return "", nil
	}
	return msg.Metadata.Get(messages.MetaOrderingKey), nil
}

// acceptedTopic is the topic an accepted payload with orderingKey goes to.
// Payloads without a key travel apart from keyed ones: an ordered
// subscription delivers everything slowly, keyed or not (see
// Config.Topic).
func (ps *PubSub) acceptedTopic(orderingKey string) string {
	if orderingKey != "" {
		return ps.cfg.OrderedTopic
	}
	return ps.cfg.Topic
}

func (ps *PubSub) endpoint() string {
	switch ps.Mode {
	case ModeEmbedded:
		return ps.Embedded.Addr()
	case ModeEmulator:
		return ps.cfg.EmulatorHost
	default:
		return "pubsub.googleapis.com"
	}
}

// publishSettings favour latency: every HTTP request waits for its own
// publish, so batching delay is paid by every caller, while concurrency
// across requests still fills batches.
func (ps *PubSub) publishSettings() *pubsub.PublishSettings {
	s := pubsub.DefaultPublishSettings
	s.DelayThreshold = ps.cfg.PublishDelay
	s.CountThreshold = 100
	s.Timeout = ps.cfg.PublishTimeout
	s.FlowControlSettings.MaxOutstandingMessages = 10_000
	s.FlowControlSettings.MaxOutstandingBytes = 256 << 20
	s.FlowControlSettings.LimitExceededBehavior = pubsub.FlowControlBlock
	return &s
}

// Publisher is shared by every handler. Routers close the publishers their
// handlers use, so they get a view whose Close does nothing; PubSub.Close
// closes the real ones once, last.
// Every publish's result is reported to Config.OnPublish, so that a topic Pub/Sub
// lost is noticed (and recreated) at the first publish that finds it gone.
func (ps *PubSub) Publisher() message.Publisher { return sharedPublisher{ps.pub, ps} }

type sharedPublisher struct {
	message.Publisher
	ps *PubSub
}

// A payload published to the accepted topic (Config.Topic) goes to the ordered
// topic instead when it has an ordering key, so that every publisher of
// accepted payloads (the gate, the outbox, replays) routes them alike.
func (p sharedPublisher) Publish(topic string, msgs ...*message.Message) error {
	if topic != p.ps.cfg.Topic {
		return p.publish(topic, msgs)
	}
	var unordered, ordered []*message.Message
	for _, m := range msgs {
		if p.ps.acceptedTopic(m.Metadata.Get(messages.MetaOrderingKey)) == p.ps.cfg.OrderedTopic {
			ordered = append(ordered, m)
		} else {
			unordered = append(unordered, m)
		}
	}
	var errs []error
	if len(unordered) > 0 {
		errs = append(errs, p.publish(topic, unordered))
	}
	if len(ordered) > 0 {
		errs = append(errs, p.publish(p.ps.cfg.OrderedTopic, ordered))
	}
	return errors.Join(errs...)
}

func (p sharedPublisher) publish(topic string, msgs []*message.Message) error {
	start := time.Now()
	err := p.Publisher.Publish(topic, msgs...)
	if p.ps.cfg.OnPublish != nil {
		p.ps.cfg.OnPublish(topic, time.Since(start), err)
	}
	return err
}

func (sharedPublisher) Close() error { return nil }

// NewSubscriber returns a subscriber that reads subscription from topic.
// Each call gets its own subscriber: subscribing twice to one subscription on
// one subscriber starves the second channel.
func (ps *PubSub) NewSubscriber(topic, subscription string) (*googlecloud.Subscriber, error) {
	return googlecloud.NewSubscriber(googlecloud.SubscriberConfig{
		ProjectID: ps.cfg.ProjectID,
		GenerateSubscriptionName: func(t string) string {
			if t == topic {
				return subscription
			}
			return t
		},
		DoNotCreateSubscriptionIfMissing: true,
		DoNotCreateTopicIfMissing:        true,
		ReceiveSettings: pubsub.ReceiveSettings{
			NumGoroutines: ps.cfg.ReceiveStreams,
			// MAX_OUTSTANDING is shared among the streams, and each stream
			// asks Pub/Sub for its share only. With one limit for the
			// client, every stream asks for all of it: 32 streams lease
			// 32 times what the handlers can hold, and what waits in the
			// client past the lease is delivered again (on the emulator,
			// after stalls of 10-20 s with nothing applied).
			EnablePerStreamFlowControl: true,
			MaxOutstandingMessages:     max(1, ps.cfg.MaxOutstanding/max(1, ps.cfg.ReceiveStreams)),
			MaxOutstandingBytes:        max(1, (256<<20)/max(1, ps.cfg.ReceiveStreams)),
			// The lease is extended for as long as the apply stage may
			// hold the message (a pause's hold, then every attempt and
			// backoff), and no longer: a second apply process must not
			// get a message this one is still applying (BigQuery lets two
			// insert-only transactions commit side by side).
			MaxExtension: ps.cfg.MaxLease,
			// Leases are renewed 20 s at a time, so a message whose consumer
			// died or stopped without a nack comes back within 20 s, not the
			// up to 10 minutes a lease may otherwise be extended by.
			MaxDurationPerAckExtension: 20 * time.Second,
			// The streams are closed gracefully: the client nacks what it
			// holds, sends the last acks and nacks, and half-closes each
			// stream before it cancels it. Any ShutdownOptions with a
			// timeout (ShutdownBehaviorNackImmediately included) cancels
			// the streams first instead, and the gcloud emulator (0.8.20)
			// never learns of a cancelled stream (its gRPC server fails on
			// the RST_STREAM with a NoSuchMethodError): it goes on handing
			// messages to the dead streams, which come back only when their
			// lease expires, about 20 s later, and partly to the dead
			// streams again. After one SIGTERM restart a backlog of 20,000
			// drained at 185/s, its first payload applied after 11 s. See
			// gracefulShutdown.
			//
			// Nothing held waits for its deadline: the watermill subscriber
			// nacks every message it holds when it closes (whether the
			// handler got it or not), and the client nacks what is still
			// in its flow control, so another replica, or the next start,
			// gets them at once, as with ShutdownBehaviorNackImmediately.
			// The wait is bounded by the router's CloseTimeout
			// (SHUTDOWN_TIMEOUT), which also bounds a close that cannot
			// reach Pub/Sub.
			ShutdownOptions: gracefulShutdown(),
		},
		ClientOptions: ps.options,
	}, ps.wlog)
}

// gracefulShutdown is the client's own default made explicit (a nil
// ShutdownOptions means the same): no timeout, so Receive stops each stream
// by half-closing it once its messages are settled, rather than cancelling
// it at once. See NewSubscriber.
func gracefulShutdown() *pubsub.ShutdownOptions {
	return &pubsub.ShutdownOptions{Behavior: pubsub.ShutdownBehaviorWaitForProcessing, Timeout: -1}
}

// Resource is a topic, or a subscription on a topic.
type Resource struct {
	Topic, Subscription string
	ackDeadline         time.Duration
	exactlyOnce         bool
	// ordered delivers the messages of one ordering key in publish order,
	// each after the previous one was acked.
	ordered bool
	// unorderedWanted marks the subscription of payloads without an
	// ordering key: an existing one created ordered (before the ordered
	// topic existed) is correct, only slow, and worth a warning.
	unorderedWanted bool
	// expires makes Pub/Sub delete the subscription after a day unused:
	// one per outbox file, so a replica that is gone leaves nothing behind.
	expires bool
	// deadLetterTopic and deadLetterAttempts, when set, move a message
	// delivered that many times without an ack to that topic.
	deadLetterTopic    string
	deadLetterAttempts int
}

// MissingResource is a resource New found missing and could not create,
// with why.
type MissingResource struct {
	Resource
	Err error
}

// Name is the subscription's name, or the topic's.
func (r Resource) Name() string {
	if r.Subscription != "" {
		return r.Subscription
	}
	return r.Topic
}

// resources lists, topics before their subscriptions, what the stages this
// process runs need.
func (ps *PubSub) resources() []Resource { return resourcesOf(ps.cfg) }

// Needs lists, topics before their subscriptions, the resources a process
// with cfg needs, without connecting: what `gatekeeper check` looks for.
func Needs(cfg Config) []Resource {
	cfg.setDefaults()
	return resourcesOf(cfg)
}

// GcloudCreate is the gcloud command that creates r in project as
// gatekeeper would (CREATE_RESOURCES=true), for a deployer who creates
// the resources beforehand.
func (r Resource) GcloudCreate(project string) string {
	if r.Subscription == "" {
		return fmt.Sprintf("gcloud pubsub topics create %s --project=%s", r.Topic, project)
	}
	cmd := fmt.Sprintf("gcloud pubsub subscriptions create %s --project=%s --topic=%s --ack-deadline=%d --message-retention-duration=7d",
		r.Subscription, project, r.Topic, int(r.ackDeadline/time.Second))
	if r.exactlyOnce {
		cmd += " --enable-exactly-once-delivery"
	}
	if r.ordered {
		cmd += " --enable-message-ordering"
	}
	if r.deadLetterTopic != "" {
		cmd += fmt.Sprintf(" --dead-letter-topic=%s --max-delivery-attempts=%d", r.deadLetterTopic, r.deadLetterAttempts)
	}
	if r.expires {
		cmd += " --expiration-period=1d"
	}
	return cmd
}

func resourcesOf(c Config) []Resource {
	rs := []Resource{{Topic: c.Topic}, {Topic: c.OrderedTopic}}
	// The ingest stage needs the apply subscriptions as much as the apply
	// stage does: Pub/Sub drops what is published to a topic without one.
	apply := Resource{
		Topic: c.Topic, Subscription: c.Subscription,
		// The client keeps extending the deadline while a group is
		// applied; 20 s only bounds how soon a crashed consumer's
		// messages are redelivered.
		ackDeadline: 20 * time.Second,
		exactlyOnce: !c.DisableExactlyOnceDelivery && c.Mode == ModeGoogle,
		// Unordered: the payloads here have no ordering key, and an
		// ordered subscription would cap the apply stage's intake (on
		// the emulator at 53 payloads/s from a backlog of 100,000, with
		// stalls of 10-20 s; see Config.Topic).
		unorderedWanted: true,
	}
	ordered := apply
	ordered.Topic, ordered.Subscription = c.OrderedTopic, c.OrderedSubscription
	ordered.ordered, ordered.unorderedWanted = true, false
	if c.DeadLetterMaxAttempts > 0 {
		// The dead-letter topic must exist before the subscription names it.
		apply.deadLetterTopic, apply.deadLetterAttempts = c.PoisonTopic, c.DeadLetterMaxAttempts
		ordered.deadLetterTopic, ordered.deadLetterAttempts = c.PoisonTopic, c.DeadLetterMaxAttempts
		rs = append(rs, Resource{Topic: c.PoisonTopic})
	}
	if !c.Apply {
		rs = append(rs, apply, ordered)
		if c.FollowAppliedSubscription != "" || c.FollowPoisonSubscription != "" {
			rs = append(rs, Resource{Topic: c.AppliedTopic}, Resource{Topic: c.PoisonTopic})
		}
		if c.FollowAppliedSubscription != "" {
			rs = append(rs, Resource{Topic: c.AppliedTopic, Subscription: c.FollowAppliedSubscription, ackDeadline: 20 * time.Second, expires: true})
		}
		if c.FollowPoisonSubscription != "" {
			rs = append(rs, Resource{Topic: c.PoisonTopic, Subscription: c.FollowPoisonSubscription, ackDeadline: 20 * time.Second, expires: true})
		}
		return rs
	}
	return append(rs,
		Resource{Topic: c.PoisonTopic},
		Resource{Topic: c.AppliedTopic},
		apply, ordered,
		// Without a subscription Pub/Sub keeps nothing: this one holds
		// poisoned payloads until an operator reads or replays them.
		Resource{Topic: c.PoisonTopic, Subscription: c.PoisonSubscription, ackDeadline: 60 * time.Second},
	)
}

// ensureResources creates or checks every resource at start. What is
// missing and may not be created is collected in ps.missing; any other
// failure is returned.
func (ps *PubSub) ensureResources(ctx context.Context) error {
	var errs []error
	for _, r := range ps.resources() {
		created, err := ps.ensure(ctx, r)
		switch {
		case err == nil:
			if created {
				ps.created = append(ps.created, r)
			}
		case status.Code(err) == codes.NotFound:
			ps.missing = append(ps.missing, MissingResource{r, err})
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ensure checks that r exists and creates it when it is missing and
// CREATE_RESOURCES allows; created reports that it did. A missing resource
// it may not create is an error whose status code is NotFound.
func (ps *PubSub) ensure(ctx context.Context, r Resource) (created bool, err error) {
	topicName := TopicPath(ps.cfg.ProjectID, r.Topic)
	if r.Subscription == "" {
		_, err := ps.client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: topicName})
		if status.Code(err) == codes.NotFound && ps.cfg.DoNotCreateResources {
			return false, fmt.Errorf("topic %s does not exist, and CREATE_RESOURCES=false forbids creating it: %w", r.Topic, err)
		}
		if status.Code(err) == codes.NotFound {
			_, err = ps.client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topicName})
			if status.Code(err) == codes.AlreadyExists {
				err = nil
			} else if err == nil {
				created = true
				ps.logger.Info("Created topic", "topic", r.Topic)
			}
		}
		if err != nil {
			return false, fmt.Errorf("topic %s: %w", r.Topic, err)
		}
		return created, nil
	}
	subName := SubscriptionPath(ps.cfg.ProjectID, r.Subscription)
	sub, err := ps.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: subName})
	if err == nil {
		if sub.GetTopic() == deletedTopic {
			// Its backlog can still be pulled, so gatekeeper does not
			// delete it; until someone does, nothing published reaches it.
			return false, status.Errorf(codes.NotFound, "subscription %s is detached: its topic %s was deleted; "+
				"drain it if it holds anything, then delete it so that gatekeeper can recreate it", r.Subscription, r.Topic)
		}
		if sub.GetTopic() != topicName {
			return false, fmt.Errorf("subscription %s is attached to %s, want %s", r.Subscription, sub.GetTopic(), topicName)
		}
		ordered := sub.GetEnableMessageOrdering()
		if mismatch := r.ordered && !ordered || r.unorderedWanted && ordered; mismatch {
			if _, warned := ps.warnedUnordered.LoadOrStore(r.Subscription, true); !warned {
				ps.warnOrdering(r, ordered)
			}
		}
		return false, nil
	}
	if status.Code(err) == codes.NotFound && ps.cfg.DoNotCreateResources {
		return false, fmt.Errorf("subscription %s on topic %s does not exist, and CREATE_RESOURCES=false forbids creating it; "+
			"Pub/Sub would drop every payload published to the topic: %w", r.Subscription, r.Topic, err)
	}
	if status.Code(err) != codes.NotFound {
		return false, fmt.Errorf("subscription %s: %w", r.Subscription, err)
	}
	sub = &pubsubpb.Subscription{
		Name:                      subName,
		Topic:                     topicName,
		AckDeadlineSeconds:        int32(r.ackDeadline / time.Second),
		MessageRetentionDuration:  durationpb.New(7 * 24 * time.Hour),
		EnableExactlyOnceDelivery: r.exactlyOnce,
		EnableMessageOrdering:     r.ordered,
	}
	if r.deadLetterTopic != "" {
		sub.DeadLetterPolicy = &pubsubpb.DeadLetterPolicy{
			DeadLetterTopic:     TopicPath(ps.cfg.ProjectID, r.deadLetterTopic),
			MaxDeliveryAttempts: int32(r.deadLetterAttempts),
		}
	}
	if r.expires {
		sub.ExpirationPolicy = &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(24 * time.Hour)}
	}
	_, err = ps.client.SubscriptionAdminClient.CreateSubscription(ctx, sub)
	if status.Code(err) == codes.AlreadyExists {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create subscription %s: %w", r.Subscription, err)
	}
	ps.logger.Info("Created subscription", "subscription", r.Subscription, "topic", r.Topic, "exactly_once", r.exactlyOnce, "ordered", r.ordered)
	return true, nil
}

// warnOrdering says once that an existing subscription orders otherwise
// than gatekeeper would have created it: Pub/Sub cannot change ordering on
// an existing subscription, and refusing to start would stop every payload.
func (ps *PubSub) warnOrdering(r Resource, ordered bool) {
	if !ordered {
		ps.logger.Warn("Subscription delivers without message ordering: payloads with the same ordering key "+
			"may be applied out of order. Ordering cannot be changed on an existing subscription; "+
			"create a new one with message ordering enabled (or delete this one, once drained, and let gatekeeper recreate it)",
			"subscription", r.Subscription, "topic", r.Topic)
		return
	}
	ps.logger.Warn("Subscription delivers with message ordering, although it only carries payloads without an ordering key: "+
		"correct, but ordered delivery slows the apply stage (the emulator stalls on a backlog). "+
		"Ordering cannot be changed on an existing subscription; once it is drained, delete it and let gatekeeper recreate it",
		"subscription", r.Subscription, "topic", r.Topic)
}

// deletedTopic is what Pub/Sub names as the topic of a subscription whose
// topic was deleted.
const deletedTopic = "_deleted-topic_"

// TopicPath and SubscriptionPath are the resource names the admin API takes.
func TopicPath(project, topic string) string {
	return "projects/" + project + "/topics/" + topic
}

func SubscriptionPath(project, subscription string) string {
	return "projects/" + project + "/subscriptions/" + subscription
}

// Client is the admin client, for what reads resources or subscribes
// beside the stages (the console, the poison index, the outbox's follow).
func (ps *PubSub) Client() *pubsub.Client { return ps.client }

// Created lists the topics and subscriptions New had to create: a
// subscription created at this start holds nothing published before.
func (ps *PubSub) Created() []Resource { return ps.created }

// Missing lists what New found missing and could not create; only an
// ingest-only process starts so.
func (ps *PubSub) Missing() []MissingResource { return ps.missing }

// Resources lists, topics before their subscriptions, what the stages this
// process runs need: what the health monitor keeps in place.
func (ps *PubSub) Resources() []Resource { return ps.resources() }

// Ensure checks that r exists and creates it when it is missing and
// creating is allowed; created reports that it did. A missing resource it
// may not create is an error whose status code is NotFound.
func (ps *PubSub) Ensure(ctx context.Context, r Resource) (created bool, err error) {
	return ps.ensure(ctx, r)
}

// AcceptedPath names the topics and subscriptions an accepted payload may
// travel through: while one is missing, the gate refuses payloads.
func (ps *PubSub) AcceptedPath() []string {
	c := ps.cfg
	return []string{c.Topic, c.Subscription, c.OrderedTopic, c.OrderedSubscription}
}

// AcceptedSubscription is the apply subscription on the accepted topic
// topic, or "" when topic is none of them.
func (ps *PubSub) AcceptedSubscription(topic string) string {
	switch topic {
	case ps.cfg.Topic:
		return ps.cfg.Subscription
	case ps.cfg.OrderedTopic:
		return ps.cfg.OrderedSubscription
	}
	return ""
}

// Ping reports whether Pub/Sub answers, for /readyz.
func (ps *PubSub) Ping(ctx context.Context) error {
	_, err := ps.client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{
		Topic: TopicPath(ps.cfg.ProjectID, ps.cfg.Topic),
	})
	return err
}

// Close closes the publisher, the admin client and the embedded server, in
// that order, so nothing publishes into a closed server.
func (ps *PubSub) Close() error {
	var errs []error
	if ps.pub != nil {
		errs = append(errs, ps.pub.Close())
	}
	if ps.client != nil {
		errs = append(errs, ps.client.Close())
	}
	errs = append(errs, ps.closeEmbedded())
	return errors.Join(errs...)
}

func (ps *PubSub) closeEmbedded() error {
	if ps.Embedded == nil {
		return nil
	}
	return ps.Embedded.Close()
}
