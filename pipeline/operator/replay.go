package operator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"golang.org/x/time/rate"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// ReplayItem is one payload to replay: from the index, or a line of an
// exported file (then Entry is what the index holds of it, if anything).
type ReplayItem struct {
	PayloadID string
	Metadata  map[string]string
	Payload   []byte
	Entry     *warehouse.Entry
}

// ItemsOf turns index entries into replay items with their stored payload.
func ItemsOf(entries []warehouse.Entry) []ReplayItem {
	items := make([]ReplayItem, len(entries))
	for i := range entries {
		e := &entries[i]
		items[i] = ReplayItem{PayloadID: e.Latest.PayloadID, Metadata: e.Poisoned.Attributes, Payload: e.Poisoned.Payload, Entry: e}
	}
	return items
}

// ReplayOptions tune a replay.
type ReplayOptions struct {
	// Rate is payloads per second; <= 0 means 100.
	Rate float64
	// DryRun checks and counts, and publishes nothing.
	DryRun bool
	// Actor is recorded on the replayed events ("cli", "admin-api").
	Actor string
	// Progress, when set, is called about once a second with how many
	// items are done.
	Progress func(done, total int)
}

// ReplayReport counts what a replay did. Refused lists each payload the gate
// refused, with why; Skipped each that was already applied or purged.
type ReplayReport struct {
	Replayed int             `json:"replayed"`
	Refused  []ReplayRefusal `json:"refused"`
	Skipped  []ReplaySkip    `json:"skipped"`
}

// ReplayRefusal is a payload a replay did not publish, and why.
type ReplayRefusal struct {
	PayloadID string             `json:"payload_id"`
	Error     string             `json:"error"`
	Problems  []messages.Problem `json:"problems,omitempty"`
}

// ReplaySkip is a payload a replay had no need to publish.
type ReplaySkip struct {
	PayloadID string `json:"payload_id"`
	Why       string `json:"why"`
}

// Replay publishes the items to TOPIC_ID (ORDERED_TOPIC_ID when keyed) with their original payload id,
// each re-validated through the gate first, at opts.Rate. The ledger makes
// a replay of a payload that was in fact applied harmless; a payload
// already in the ledger or purged is skipped. What was published is recorded
// as replayed in the index. An error stops the replay; the report says how
// far it got.
func (c *Console) Replay(ctx context.Context, items []ReplayItem, opts ReplayOptions) (ReplayReport, error) {
	rep := ReplayReport{Refused: []ReplayRefusal{}, Skipped: []ReplaySkip{}}
	perSecond := opts.Rate
	if perSecond <= 0 {
		perSecond = 100
	}
	limiter := rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/20)))
	// A keyed payload goes to the ordered topic, where the apply stage
	// reads keyed payloads, but without a Pub/Sub ordering key: a replayed
	// payload is usually the one blocking its key (ORDERING_POISON=block),
	// and with the key it would queue behind the held payloads it must
	// overtake. The key travels as metadata, so the apply stage still
	// holds it while the payload applies.
	var publisher, orderedPublisher *pubsub.Publisher
	if !opts.DryRun {
		publisher = c.cfg.Publishers.Publisher(c.cfg.TopicID)
		orderedPublisher = c.cfg.Publishers.Publisher(c.cfg.OrderedTopicID)
		for _, p := range []*pubsub.Publisher{publisher, orderedPublisher} {
			p.PublishSettings.DelayThreshold = 10 * time.Millisecond
			p.PublishSettings.CountThreshold = 100
			defer p.Stop()
		}
	}
	type inFlight struct {
		item   ReplayItem
		gen    int
		result *pubsub.PublishResult
	}
	var flying []inFlight
	var events []warehouse.Event
	// recordLanded waits for the publishes in flight and records the ones
	// that landed, so that the index never says replayed for what was not.
	recordLanded := func() error {
		var firstErr error
		now := time.Now().UTC()
		for _, f := range flying {
			if _, err := f.result.Get(ctx); err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("publish %s to %s: %w", f.item.PayloadID, c.cfg.TopicID, err)
				}
				continue
			}
			rep.Replayed++
			events = append(events, warehouse.Event{
				ID: warehouse.EventID(f.item.PayloadID, warehouse.EventReplayed, f.gen), PayloadID: f.item.PayloadID,
				Kind: warehouse.EventReplayed, Generation: f.gen, At: now, Actor: opts.Actor,
			})
		}
		flying = flying[:0]
		if len(events) > 0 {
			if err := c.store.AppendEvents(context.WithoutCancel(ctx), events); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("replayed, but could not record it in the poison index (replaying again is harmless): %w", err)
			}
			events = events[:0]
		}
		return firstErr
	}
	lastProgress := time.Now()
	reported := false
	for i, item := range items {
		if opts.Progress != nil && time.Since(lastProgress) >= time.Second {
			opts.Progress(i, len(items))
			lastProgress, reported = time.Now(), true
		}
		if item.Entry != nil && item.Entry.State == warehouse.EventPurged {
			rep.Skipped = append(rep.Skipped, ReplaySkip{item.PayloadID, "purged"})
			continue
		}
		applied, err := c.store.Applied(ctx, item.PayloadID)
		if err != nil {
			return rep, errors.Join(fmt.Errorf("read the ledger: %w", err), recordLanded())
		}
		if applied {
			rep.Skipped = append(rep.Skipped, ReplaySkip{item.PayloadID, "already applied"})
			continue
		}
		payload, err := messages.Parse(item.Payload)
		if err != nil {
			r := ReplayRefusal{PayloadID: item.PayloadID, Error: err.Error()}
			var ve *messages.ValidationError
			if errors.As(err, &ve) {
				r.Problems = ve.Problems
			}
			rep.Refused = append(rep.Refused, r)
			continue
		}
		gen := replayGeneration(item) + 1
		if opts.DryRun {
			rep.Replayed++
			continue
		}
		if err := limiter.Wait(ctx); err != nil {
			return rep, errors.Join(err, recordLanded())
		}
		msg := &pubsub.Message{Data: payload.Canonical(), Attributes: replayAttributes(item, gen)}
		to := publisher
		if payload.OrderingKey != "" {
			to = orderedPublisher
			msg.Attributes[messages.MetaOrderingKey] = payload.OrderingKey
		}
		flying = append(flying, inFlight{item, gen, to.Publish(ctx, msg)})
		if len(flying) >= 500 {
			if err := recordLanded(); err != nil {
				return rep, err
			}
		}
	}
	if err := recordLanded(); err != nil {
		return rep, err
	}
	if reported {
		opts.Progress(len(items), len(items))
	}
	return rep, nil
}

// replayGeneration is the generation the payload is in now: the latest of
// the index's, or the exported metadata's when the index holds nothing.
func replayGeneration(item ReplayItem) int {
	if item.Entry != nil {
		return item.Entry.Latest.Generation
	}
	n, _ := strconv.Atoi(item.Metadata[messages.MetaReplays])
	return n
}

// poisonKeys are dropped on replay: they describe the failure that is being
// retried, and the apply stage writes them afresh if it fails again.
var poisonKeys = []string{
	middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey,
	middleware.PoisonedSubscriberKey, messages.MetaErrorClass, messages.MetaAttempts,
	messages.MetaFirstFailureAt, messages.MetaLastFailureAt, messages.MetaTables,
}

// replayAttributes are the metadata a replayed payload is published with:
// what it was accepted with, without the failure being retried, with the
// replay counted.
func replayAttributes(item ReplayItem, generation int) map[string]string {
	attrs := maps.Clone(item.Metadata)
	if attrs == nil {
		attrs = map[string]string{}
	}
	for _, k := range poisonKeys {
		delete(attrs, k)
	}
	for k := range attrs {
		// Pub/Sub's and Watermill's own, of the poison message: stale on
		// a new message.
		if strings.HasPrefix(k, "CloudPubSubDeadLetter") || strings.HasPrefix(k, "googclient_") ||
			k == "publishTime" || k == "_watermill_message_google_message_id" {
			delete(attrs, k)
		}
	}
	attrs[googlecloud.UUIDHeaderKey] = item.PayloadID
	attrs[messages.MetaReplays] = strconv.Itoa(generation)
	attrs[messages.MetaReplayedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	return attrs
}
