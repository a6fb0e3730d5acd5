package outbox

// What is published again, and when: the outbox's part in "200 means it
// will be applied" while the service runs.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// RedeliverConfig configures a Redeliverer.
type RedeliverConfig struct {
	// Outbox holds the entries. Required.
	Outbox *Outbox
	// Publisher publishes them again. Required.
	Publisher message.Publisher
	// AcceptedTopic receives pending entries, PoisonTopic poisoned ones.
	// Required.
	AcceptedTopic, PoisonTopic string
	// PublishTimeout bounds one publish. Optional, default 10s.
	PublishTimeout time.Duration
	// Interval is how often Run looks for overdue entries (the outbox's
	// RedeliverAfter decides which are). Optional, default 30s.
	Interval time.Duration
	// Poisoned: Run also publishes overdue poisoned entries again. Set it
	// where this process indexes the poison topic: a poisoned entry leaves
	// the outbox once indexed, so one still here after its time was lost
	// on the way. Optional.
	Poisoned bool
	// Busy, when set, names the entries not to publish now: those the gate
	// is still publishing (its client may yet hear 503 and retry) and
	// those the apply stage is handling (a copy would only be a duplicate).
	// Optional.
	Busy func(id string) bool
	// Counted, when set, is told +1 before each pending entry is published
	// and -1 when its publish failed: the embedded backlog's count.
	// Optional.
	Counted func(delta int64)
	// Workers is how many publishes run at once. Optional, default 32.
	Workers int
}

func (c *RedeliverConfig) setDefaults() {
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.Interval == 0 {
		c.Interval = 30 * time.Second
	}
	if c.Workers == 0 {
		c.Workers = 32
	}
}

// Validate reports every problem with c.
func (c RedeliverConfig) Validate() error {
	var errs []error
	if c.Outbox == nil {
		errs = append(errs, errors.New("outbox redeliver config: Outbox is required"))
	}
	if c.Publisher == nil {
		errs = append(errs, errors.New("outbox redeliver config: Publisher is required"))
	}
	if c.AcceptedTopic == "" {
		errs = append(errs, errors.New("outbox redeliver config: AcceptedTopic is required"))
	}
	if c.PoisonTopic == "" {
		errs = append(errs, errors.New("outbox redeliver config: PoisonTopic is required"))
	}
	if c.PublishTimeout < 0 {
		errs = append(errs, errors.New("outbox redeliver config: PublishTimeout must not be negative"))
	}
	if c.Interval < 0 {
		errs = append(errs, errors.New("outbox redeliver config: Interval must not be negative"))
	}
	if c.Workers < 0 {
		errs = append(errs, errors.New("outbox redeliver config: Workers must not be negative"))
	}
	return errors.Join(errs...)
}

// Redeliverer publishes again what the outbox holds: at a start, what was
// accepted and not settled before the last stop; when Pub/Sub lost a
// subscription, what it held; and while the service runs, what has waited
// past the outbox's RedeliverAfter (a message the Pub/Sub lost, or holds
// out of reach: the emulator keeps messages it handed to the streams of a
// killed process for minutes). The warehouse's ledger makes a copy of an
// applied payload a duplicate.
type Redeliverer struct {
	cfg    RedeliverConfig
	logger *slog.Logger
}

// NewRedeliverer returns a Redeliverer, or every problem with cfg.
func NewRedeliverer(cfg RedeliverConfig, logger *slog.Logger) (*Redeliverer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Redeliverer{cfg: cfg, logger: logger}, nil
}

// All publishes every entry in state again, busy or not: at a start
// nothing is in flight yet.
func (r *Redeliverer) All(ctx context.Context, state State) (int, error) {
	return r.republish(ctx, state, false, func(Entry) bool { return true })
}

// Idle publishes every entry in state that is not Busy: what a
// subscription Pub/Sub recreated empty held. An entry the gate is still
// publishing may yet fail and its client hear 503; the overdue sweep takes
// any of them whose message was lost.
func (r *Redeliverer) Idle(ctx context.Context, state State) (int, error) {
	return r.republish(ctx, state, false, r.idle)
}

// Run publishes overdue entries again every Interval until ctx ends.
func (r *Redeliverer) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A payload the apply stage is handling right now (retrying through
		// a locked warehouse, say) is not lost; a copy would only be
		// applied as a duplicate or poisoned a second time.
		if _, err := r.republish(ctx, Pending, true, r.idle); err != nil && ctx.Err() == nil {
			r.logger.Warn("Cannot republish overdue payloads from the outbox; will try again", "outbox", r.cfg.Outbox.Path(), "error", err)
		}
		// The index's event ids make a second copy of a poisoned payload
		// harmless.
		if r.cfg.Poisoned {
			if _, err := r.republish(ctx, Poisoned, true, r.idle); err != nil && ctx.Err() == nil {
				r.logger.Warn("Cannot republish overdue poisoned payloads from the outbox; will try again", "outbox", r.cfg.Outbox.Path(), "error", err)
			}
		}
	}
}

func (r *Redeliverer) idle(e Entry) bool {
	return r.cfg.Busy == nil || !r.cfg.Busy(e.ID)
}

// republish publishes the entries in state that keep accepts (only those
// overdue when dueOnly), with their ids and metadata, to the topic that
// state belongs on.
func (r *Redeliverer) republish(ctx context.Context, state State, dueOnly bool, keep func(Entry) bool) (int, error) {
	topic := r.cfg.AcceptedTopic
	if state == Poisoned {
		topic = r.cfg.PoisonTopic
	}
	count := func(delta int64) {
		if state == Pending && r.cfg.Counted != nil {
			r.cfg.Counted(delta)
		}
	}
	started := time.Now()
	entries := make(chan Entry)
	var (
		wg        sync.WaitGroup
		published atomic.Int64
		errOnce   sync.Once
		firstErr  error
	)
	failed := make(chan struct{})
	for range r.cfg.Workers {
		wg.Go(func() {
			for e := range entries {
				msg := message.NewMessage(e.ID, e.Payload)
				for k, v := range e.Metadata {
					msg.Metadata.Set(k, v)
				}
				pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
				msg.SetContext(pctx)
				count(1)
				err := r.cfg.Publisher.Publish(topic, msg)
				cancel()
				if err != nil {
					count(-1)
					errOnce.Do(func() {
						firstErr = fmt.Errorf("republishing payload %s from the outbox %s: %w", e.ID, r.cfg.Outbox.Path(), err)
						close(failed)
					})
					continue
				}
				r.cfg.Outbox.Republished(e)
				published.Add(1)
			}
		})
	}
	feed := func(e Entry) error {
		if !keep(e) {
			return nil
		}
		select {
		case entries <- e:
			return nil
		case <-failed:
			return errors.New("stopped")
		}
	}
	var walkErr error
	if dueOnly {
		walkErr = r.cfg.Outbox.Due(ctx, state, feed)
	} else {
		walkErr = r.cfg.Outbox.Each(ctx, state, feed)
	}
	close(entries)
	wg.Wait()
	n := int(published.Load())
	if firstErr != nil {
		return n, firstErr
	}
	if walkErr != nil {
		return n, walkErr
	}
	if n > 0 {
		r.logger.Info("Republished payloads from the outbox", "outbox", r.cfg.Outbox.Path(), "state", state, "overdue_only", dueOnly,
			"payloads", n, "topic", topic, "took", time.Since(started).Round(time.Millisecond))
	}
	return n, nil
}

// Recorder is the outbox as the gate sees it (handlers.Outbox). It marks
// each payload whose publish is under way, so that no republish sends a
// copy of a payload whose client may yet be told to retry.
type Recorder struct {
	box        *Outbox
	publishing sync.Map
}

// NewRecorder returns the gate's view of box.
func NewRecorder(box *Outbox) *Recorder { return &Recorder{box: box} }

// Record appends msg durably, marking it as being published.
func (g *Recorder) Record(ctx context.Context, msg *message.Message) error {
	g.publishing.Store(msg.UUID, struct{}{})
	err := g.box.Append(ctx, Entry{ID: msg.UUID, Payload: msg.Payload, Metadata: msg.Metadata})
	if err != nil {
		g.publishing.Delete(msg.UUID)
	}
	return err
}

// Published ends the publish of payloadID; a failed one is dropped at once:
// its client is told to retry, so it must not be applied behind its back.
func (g *Recorder) Published(payloadID string, err error) {
	defer g.publishing.Delete(payloadID)
	if err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = g.box.ForgetNow(ctx, payloadID)
}

// Publishing reports whether the gate is publishing payloadID now.
func (g *Recorder) Publishing(payloadID string) bool {
	_, ok := g.publishing.Load(payloadID)
	return ok
}
