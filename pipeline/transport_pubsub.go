package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/transport/embedded"
)

// PubSub is the transport between the stages: one admin client for
// resources and readiness, one shared publisher (two Pub/Sub publishers
// behind it, see sharedPublisher.publisherFor), and subscribers on demand.
type PubSub struct {
	Mode     PubSubMode
	Embedded *embedded.Server // set in embedded mode only

	cfg     Config
	client  *pubsub.Client
	options []option.ClientOption
	pub     message.Publisher
	// busyPub batches longer (Config.PublishBusyDelayThreshold); nil when
	// that is off. It has a Pub/Sub client, and connections, of its own.
	// See sharedPublisher.publisherFor.
	busyPub message.Publisher
	// inFlight counts the publishes in flight to each topic that may take
	// busyPub; it is filled once, by NewPubSub, and only read after. Empty
	// when busyPub is nil: there is nothing to choose, so nothing to count.
	inFlight map[string]*atomic.Int64
	// shortPublishes and busyPublishes count the messages published
	// through pub and busyPub.
	shortPublishes, busyPublishes atomic.Int64
	wlog                          watermill.LoggerAdapter
	logger                        *slog.Logger

	// created lists what NewPubSub had to create: a subscription created
	// here holds nothing that was published before.
	created []resource
	// missing lists what NewPubSub found missing and could not create; only
	// an ingest-only process starts so, and is not ready until they exist.
	missing []missingResource
	// warnedUnordered holds the subscriptions already warned about
	// ordering otherwise than wanted: the health monitor checks them every
	// few seconds, and the warning says all there is to say once.
	warnedUnordered sync.Map
	// onPublish, when set, sees the result of every publish and how long
	// it took.
	onPublish func(topic string, took time.Duration, err error)
}

// NewPubSub connects to the Pub/Sub that cfg selects, starting the embedded
// server in embedded mode, and creates or checks the topics and
// subscriptions the configured stages use.
func NewPubSub(ctx context.Context, cfg Config, logger *slog.Logger) (*PubSub, error) {
	ps := &PubSub{Mode: cfg.ResolvedPubSubMode(), cfg: cfg, logger: logger, wlog: watermillLogger(logger)}
	switch ps.Mode {
	case PubSubEmbedded:
		emb, err := embedded.New(cfg.EmbeddedPubSubAddr, 0, logger)
		if err != nil {
			return nil, err
		}
		ps.Embedded = emb
		ps.options = emulatorOptions(emb.Addr())
	case PubSubEmulator:
		ps.options = emulatorOptions(cfg.EmulatorHost)
	case PubSubGoogle:
		if cfg.CredentialsFile != "" {
			ps.options = []option.ClientOption{option.WithAuthCredentialsFile(option.ServiceAccount, cfg.CredentialsFile)}
		}
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
	if len(ps.missing) > 0 && cfg.Runs(StageApply) {
		// The apply stage's subscriber cannot start without them.
		var errs []error
		for _, m := range ps.missing {
			errs = append(errs, m.err)
		}
		_ = ps.Close()
		return nil, errors.Join(errs...)
	}
	ps.pub, err = ps.newPublisher(cfg.publishDelay())
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("pub/sub publisher: %w", err)
	}
	if busy := cfg.publishBusyDelay(); busy > 0 {
		if ps.busyPub, err = ps.newPublisher(busy); err != nil {
			_ = ps.Close()
			return nil, fmt.Errorf("pub/sub publisher: %w", err)
		}
		ps.inFlight = inFlightCounters(cfg)
	}
	return ps, nil
}

// newPublisher is a publisher as every stage shares it, batching for delay.
func (ps *PubSub) newPublisher(delay time.Duration) (message.Publisher, error) {
	pub, err := googlecloud.NewPublisher(googlecloud.PublisherConfig{
		ProjectID: ps.cfg.ProjectID,
		// Resources were created or checked above; checking again per
		// topic would cost a round trip on the first publish of each.
		DoNotCheckTopicExistence:  true,
		DoNotCreateTopicIfMissing: true,
		PublishTimeout:            ps.cfg.PublishTimeout,
		PublishSettings:           ps.publishSettings(delay),
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
	if topic != ps.cfg.OrderedTopicID {
		return "", nil
	}
	return msg.Metadata.Get(messages.MetaOrderingKey), nil
}

// acceptedTopic is the topic an accepted payload with orderingKey goes to.
// Payloads without a key travel apart from keyed ones: an ordered
// subscription delivers everything slowly, keyed or not (see
// Config.OrderedTopicID).
func (ps *PubSub) acceptedTopic(orderingKey string) string {
	if orderingKey != "" {
		return ps.cfg.OrderedTopicID
	}
	return ps.cfg.TopicID
}

func emulatorOptions(addr string) []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(addr),
		// The client opens one connection for an emulator; one connection
		// serialises the many concurrent publishes of the ingestion stage.
		option.WithGRPCConnectionPool(4),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

func (ps *PubSub) endpoint() string {
	switch ps.Mode {
	case PubSubEmbedded:
		return ps.Embedded.Addr()
	case PubSubEmulator:
		return ps.cfg.EmulatorHost
	default:
		return "pubsub.googleapis.com"
	}
}

// publishSettings favour latency: every HTTP request waits for its own
// publish, so batching delay is paid by every caller, while concurrency
// across requests still fills batches.
func (ps *PubSub) publishSettings(delay time.Duration) *pubsub.PublishSettings {
	s := pubsub.DefaultPublishSettings
	s.DelayThreshold = delay
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
// Every publish's result is reported to onPublish, so that a topic Pub/Sub
// lost is noticed (and recreated) at the first publish that finds it gone.
func (ps *PubSub) Publisher() message.Publisher { return sharedPublisher{ps.pub, ps} }

type sharedPublisher struct {
	message.Publisher
	ps *PubSub
}

// A payload published to the accepted topic (TopicID) goes to the ordered
// topic instead when it has an ordering key, so that every publisher of
// accepted payloads (the gate, the outbox, replays) routes them alike.
func (p sharedPublisher) Publish(topic string, msgs ...*message.Message) error {
	if topic != p.ps.cfg.TopicID {
		return p.publish(topic, msgs)
	}
	var unordered, ordered []*message.Message
	for _, m := range msgs {
		if p.ps.acceptedTopic(m.Metadata.Get(messages.MetaOrderingKey)) == p.ps.cfg.OrderedTopicID {
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
		errs = append(errs, p.publish(p.ps.cfg.OrderedTopicID, ordered))
	}
	return errors.Join(errs...)
}

func (p sharedPublisher) publish(topic string, msgs []*message.Message) error {
	start := time.Now()
	pub, busy, done := p.publisherFor(topic)
	defer done()
	err := pub.Publish(topic, msgs...)
	switch {
	case err != nil:
	case busy:
		p.ps.busyPublishes.Add(int64(len(msgs)))
	default:
		p.ps.shortPublishes.Add(int64(len(msgs)))
	}
	if p.ps.onPublish != nil {
		p.ps.onPublish(topic, time.Since(start), err)
	}
	return err
}

func (sharedPublisher) Close() error { return nil }

// busyPublishing is how many publishes to one topic must be in flight for
// the next one to it to go through the busy publisher. Each HTTP request
// waits for its own publish, so the longer delay is paid by every request
// that finds no company for its batch: a lone client, or a few, would lose
// rate on every payload for no saved RPC. A backend with up to 32
// connections never waits it out; under the load that saturates this
// machine (256 connections) most publishes do, and each publish RPC they
// save is Pub/Sub server CPU, here the emulator's, beside the service's
// own. 16 put 61 % of a 32-connection client's publishes on the busy path.
const busyPublishing = 32

// inFlightCounters are the topics whose publishes may take the busy
// publisher, each with its count. Company counts per topic because a batch
// holds one topic's messages: the applied events of a committed group (up
// to GROUP_MAX_SIZE at once) fill no batch of accepted payloads. The
// ordered topic is not among them: its keys keep to one publisher, so
// that each key keeps its order.
func inFlightCounters(cfg Config) map[string]*atomic.Int64 {
	counters := map[string]*atomic.Int64{}
	for _, topic := range []string{cfg.TopicID, cfg.AppliedTopicID, cfg.PoisonTopicID} {
		if topic != "" && topic != cfg.OrderedTopicID {
			counters[topic] = new(atomic.Int64)
		}
	}
	return counters
}

// publisherFor picks the publisher of one publish to topic, and counts it
// in flight until done is called. Watermill's Google Cloud publisher sends
// the messages of one call one after another, each waiting for its ack, so
// a call of many messages would wait the delay once per message; every
// caller here publishes one message per call.
func (p sharedPublisher) publisherFor(topic string) (pub message.Publisher, busy bool, done func()) {
	count := p.ps.inFlight[topic]
	if count == nil {
		return p.Publisher, false, func() {}
	}
	inFlight := count.Add(1)
	done = func() { count.Add(-1) }
	if inFlight <= busyPublishing {
		return p.Publisher, false, done
	}
	return p.ps.busyPub, true, done
}

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
			MaxExtension: ps.cfg.maxLeaseTime(),
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

// resource is a topic, or a subscription on a topic.
type resource struct {
	topic, subscription string
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

type missingResource struct {
	resource
	err error
}

func (r resource) name() string {
	if r.subscription != "" {
		return r.subscription
	}
	return r.topic
}

// resources lists, topics before their subscriptions, what the stages this
// process runs need.
func (ps *PubSub) resources() []resource {
	c := ps.cfg
	rs := []resource{{topic: c.TopicID}, {topic: c.OrderedTopicID}}
	// The ingest stage needs the apply subscriptions as much as the apply
	// stage does: Pub/Sub drops what is published to a topic without one.
	apply := resource{
		topic: c.TopicID, subscription: c.SubscriptionID,
		// The client keeps extending the deadline while a group is
		// applied; 20 s only bounds how soon a crashed consumer's
		// messages are redelivered.
		ackDeadline: 20 * time.Second,
		exactlyOnce: !c.DisableExactlyOnceDelivery && ps.Mode == PubSubGoogle,
		// Unordered: the payloads here have no ordering key, and an
		// ordered subscription would cap the apply stage's intake (on
		// the emulator at 53 payloads/s from a backlog of 100,000, with
		// stalls of 10-20 s; see Config.OrderedTopicID).
		unorderedWanted: true,
	}
	ordered := apply
	ordered.topic, ordered.subscription = c.OrderedTopicID, c.OrderedSubscriptionID
	ordered.ordered, ordered.unorderedWanted = true, false
	if c.DeadLetterMaxAttempts > 0 {
		// The dead-letter topic must exist before the subscription names it.
		apply.deadLetterTopic, apply.deadLetterAttempts = c.PoisonTopicID, c.DeadLetterMaxAttempts
		ordered.deadLetterTopic, ordered.deadLetterAttempts = c.PoisonTopicID, c.DeadLetterMaxAttempts
		rs = append(rs, resource{topic: c.PoisonTopicID})
	}
	if !c.Runs(StageApply) {
		rs = append(rs, apply, ordered)
		if c.OutboxFollowsTopics() {
			rs = append(rs,
				resource{topic: c.AppliedTopicID}, resource{topic: c.PoisonTopicID},
				resource{topic: c.AppliedTopicID, subscription: c.outboxSubscription("applied"), ackDeadline: 20 * time.Second, expires: true},
				resource{topic: c.PoisonTopicID, subscription: c.outboxSubscription("poison"), ackDeadline: 20 * time.Second, expires: true},
			)
		}
		return rs
	}
	return append(rs,
		resource{topic: c.PoisonTopicID},
		resource{topic: c.AppliedTopicID},
		apply, ordered,
		// Without a subscription Pub/Sub keeps nothing: this one holds
		// poisoned payloads until an operator reads or replays them.
		resource{topic: c.PoisonTopicID, subscription: c.PoisonSubscriptionID, ackDeadline: 60 * time.Second},
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
			ps.missing = append(ps.missing, missingResource{r, err})
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ensure checks that r exists and creates it when it is missing and
// CREATE_RESOURCES allows; created reports that it did. A missing resource
// it may not create is an error whose status code is NotFound.
func (ps *PubSub) ensure(ctx context.Context, r resource) (created bool, err error) {
	topicName := topicPath(ps.cfg.ProjectID, r.topic)
	if r.subscription == "" {
		_, err := ps.client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: topicName})
		if status.Code(err) == codes.NotFound && ps.cfg.DoNotCreateResources {
			return false, fmt.Errorf("topic %s does not exist, and CREATE_RESOURCES=false forbids creating it: %w", r.topic, err)
		}
		if status.Code(err) == codes.NotFound {
			_, err = ps.client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topicName})
			if status.Code(err) == codes.AlreadyExists {
				err = nil
			} else if err == nil {
				created = true
				ps.logger.Info("Created topic", "topic", r.topic)
			}
		}
		if err != nil {
			return false, fmt.Errorf("topic %s: %w", r.topic, err)
		}
		return created, nil
	}
	subName := subscriptionPath(ps.cfg.ProjectID, r.subscription)
	sub, err := ps.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: subName})
	if err == nil {
		if sub.GetTopic() == deletedTopic {
			// Its backlog can still be pulled, so gatekeeper does not
			// delete it; until someone does, nothing published reaches it.
			return false, status.Errorf(codes.NotFound, "subscription %s is detached: its topic %s was deleted; "+
				"drain it if it holds anything, then delete it so that gatekeeper can recreate it", r.subscription, r.topic)
		}
		if sub.GetTopic() != topicName {
			return false, fmt.Errorf("subscription %s is attached to %s, want %s", r.subscription, sub.GetTopic(), topicName)
		}
		ordered := sub.GetEnableMessageOrdering()
		if mismatch := r.ordered && !ordered || r.unorderedWanted && ordered; mismatch {
			if _, warned := ps.warnedUnordered.LoadOrStore(r.subscription, true); !warned {
				ps.warnOrdering(r, ordered)
			}
		}
		return false, nil
	}
	if status.Code(err) == codes.NotFound && ps.cfg.DoNotCreateResources {
		return false, fmt.Errorf("subscription %s on topic %s does not exist, and CREATE_RESOURCES=false forbids creating it; "+
			"Pub/Sub would drop every payload published to the topic: %w", r.subscription, r.topic, err)
	}
	if status.Code(err) != codes.NotFound {
		return false, fmt.Errorf("subscription %s: %w", r.subscription, err)
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
			DeadLetterTopic:     topicPath(ps.cfg.ProjectID, r.deadLetterTopic),
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
		return false, fmt.Errorf("create subscription %s: %w", r.subscription, err)
	}
	ps.logger.Info("Created subscription", "subscription", r.subscription, "topic", r.topic, "exactly_once", r.exactlyOnce, "ordered", r.ordered)
	return true, nil
}

// warnOrdering says once that an existing subscription orders otherwise
// than gatekeeper would have created it: Pub/Sub cannot change ordering on
// an existing subscription, and refusing to start would stop every payload.
func (ps *PubSub) warnOrdering(r resource, ordered bool) {
	if !ordered {
		ps.logger.Warn("Subscription delivers without message ordering: payloads with the same ordering key "+
			"may be applied out of order. Ordering cannot be changed on an existing subscription; "+
			"create a new one with message ordering enabled (or delete this one, once drained, and let gatekeeper recreate it)",
			"subscription", r.subscription, "topic", r.topic)
		return
	}
	ps.logger.Warn("Subscription delivers with message ordering, although it only carries payloads without an ordering key: "+
		"correct, but ordered delivery slows the apply stage (the emulator stalls on a backlog). "+
		"Ordering cannot be changed on an existing subscription; once it is drained, delete it and let gatekeeper recreate it",
		"subscription", r.subscription, "topic", r.topic)
}

// deletedTopic is what Pub/Sub names as the topic of a subscription whose
// topic was deleted.
const deletedTopic = "_deleted-topic_"

// topicPath and subscriptionPath are the resource names the admin API takes.
func topicPath(project, topic string) string {
	return "projects/" + project + "/topics/" + topic
}

func subscriptionPath(project, subscription string) string {
	return "projects/" + project + "/subscriptions/" + subscription
}

// Ping reports whether Pub/Sub answers, for /readyz.
func (ps *PubSub) Ping(ctx context.Context) error {
	_, err := ps.client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{
		Topic: topicPath(ps.cfg.ProjectID, ps.cfg.TopicID),
	})
	return err
}

// Close closes the publishers, the admin client and the embedded server, in
// that order, so nothing publishes into a closed server.
func (ps *PubSub) Close() error {
	var errs []error
	if ps.pub != nil {
		errs = append(errs, ps.pub.Close())
	}
	if ps.busyPub != nil {
		errs = append(errs, ps.busyPub.Close())
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
