// Package ordering holds back, with ORDERING_POISON=block, the payloads of
// an ordering key while an earlier payload of that key is poisoned, so that
// a key's payloads never apply around a hole.
package ordering

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// Config configures Blocks.
type Config struct {
	// Store holds the poison index (the blocked keys) and the ledger (a
	// replayed payload that applied). Required.
	Store warehouse.Store
	// Refresh is how often the blocked keys are read from the index: how
	// long a purge or a replay made elsewhere takes to unblock a key.
	// Optional, default 2s.
	Refresh time.Duration
	// HoldDelay is how long a held payload waits before it is nacked, so
	// that a blocked key costs a redelivery a second, not a spin.
	// Optional, default 1s.
	HoldDelay time.Duration
	// HeadTTL bounds how long a key waits for the redelivery of the
	// payload this process gave back first (see Blocks.heads), in case
	// Pub/Sub delivered it to another process. Optional, default 1m.
	HeadTTL time.Duration
}

func (c *Config) setDefaults() {
	if c.Refresh == 0 {
		c.Refresh = 2 * time.Second
	}
	if c.HoldDelay == 0 {
		c.HoldDelay = time.Second
	}
	if c.HeadTTL == 0 {
		c.HeadTTL = time.Minute
	}
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("ordering config: Store is required"))
	}
	if c.Refresh < 0 || c.HoldDelay < 0 || c.HeadTTL < 0 {
		errs = append(errs, errors.New("ordering config: Refresh, HoldDelay and HeadTTL must not be negative"))
	}
	return errors.Join(errs...)
}

// ErrHeld is what Blocks' middleware returns for a payload held back by
// its blocked key. It is a flow-control signal of the apply stage, not a
// class of failure: nothing failed, the payload is fine and must wait, so
// no class (messages.Class) describes it and nothing outside the apply
// stage ever sees it. The apply stage's poison queue nacks it, and its
// router logs it at debug.
var ErrHeld = errors.New("held: an earlier payload of its ordering key is poisoned (ORDERING_POISON=block)")

type head struct {
	id string
	at time.Time
}

// Blocks is the ordering keys ORDERING_POISON=block holds back. A key is
// blocked while one of its payloads is Poisoned in the poison index, or
// replayed and not yet in the ledger. The index is the durable record,
// shared by every process and kept across restarts; Blocks caches it and
// adds what this process poisoned itself before the indexer wrote it,
// since the key's next payload can arrive sooner than that.
type Blocks struct {
	cfg    Config
	store  warehouse.Store
	logger *slog.Logger
	now    func() time.Time

	mu    sync.Mutex
	ready bool // read from the index once: until then every keyed payload is held
	// blocked maps a key to the payloads that block it: the index's, and
	// local's until the index has them.
	blocked map[string]map[string]bool
	// local holds the payloads this process poisoned, by key, until the
	// index holds them (in any state).
	local map[string]map[string]bool
	// heads holds, per key, the first payload this process nacked while
	// the key was blocked. Pub/Sub may already have handed this process the
	// key's later messages, and hands them over after the nack, before it
	// delivers the nacked one again; until the head comes back and applies
	// they are held too, even once the key is unblocked.
	heads map[string]head
}

// New returns the blocked keys of the Store's poison index, or every
// problem with cfg; Run keeps them fresh.
func New(cfg Config, logger *slog.Logger) (*Blocks, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Blocks{cfg: cfg, store: cfg.Store, logger: logger, now: time.Now,
		blocked: map[string]map[string]bool{}, local: map[string]map[string]bool{}, heads: map[string]head{}}, nil
}

// Run refreshes the blocked keys from the index until ctx ends.
func (b *Blocks) Run(ctx context.Context) {
	for {
		if err := b.refresh(ctx); err != nil && ctx.Err() == nil {
			// The cache stays as it was: stale blocks only delay.
			b.logger.Warn("Cannot read the blocked ordering keys from the poison index; will try again", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.cfg.Refresh):
		}
	}
}

func (b *Blocks) refresh(ctx context.Context) error {
	entries, err := b.store.Entries(ctx, warehouse.EventFilter{
		Keyed: true, States: []warehouse.EventKind{warehouse.EventPoisoned, warehouse.EventReplayed},
	})
	if err != nil {
		return err
	}
	blocked := map[string]map[string]bool{}
	for _, e := range entries {
		// A payload blocks until it is in the ledger: a replayed copy can
		// apply before its replay is recorded.
		applied, err := b.store.Applied(ctx, e.Latest.PayloadID)
		if err != nil {
			return err
		}
		if !applied {
			addBlock(blocked, e.Poisoned.Attributes[messages.MetaOrderingKey], e.Latest.PayloadID)
		}
	}
	b.mu.Lock()
	var local []string
	for _, ids := range b.local {
		for id := range ids {
			local = append(local, id)
		}
	}
	b.mu.Unlock()
	resolved := map[string]bool{}
	for _, id := range local {
		st, err := b.store.State(ctx, id)
		if err != nil {
			return err
		}
		// Once the index holds it, in any state, the index decides.
		resolved[id] = st.Entry != nil || st.Applied
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for key, ids := range b.local {
		for id := range ids {
			if resolved[id] {
				delete(ids, id)
				continue
			}
			addBlock(blocked, key, id)
		}
		if len(ids) == 0 {
			delete(b.local, key)
		}
	}
	b.blocked, b.ready = blocked, true
	return nil
}

func addBlock(m map[string]map[string]bool, key, id string) {
	if key == "" {
		return
	}
	if m[key] == nil {
		m[key] = map[string]bool{}
	}
	m[key][id] = true
}

// mayApply reports whether payload id of key may be applied now; when not, it
// is held.
func (b *Blocks) mayApply(key, id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.ready {
		return false
	}
	if ids := b.blocked[key]; len(ids) > 0 {
		// A blocking payload itself, replayed, comes before every payload
		// held behind it.
		if ids[id] {
			return true
		}
		if _, ok := b.heads[key]; !ok {
			b.heads[key] = head{id, b.now()}
		}
		return false
	}
	if h, ok := b.heads[key]; ok && h.id != id {
		if b.now().Sub(h.at) < b.cfg.HeadTTL {
			return false
		}
		delete(b.heads, key)
	}
	return true
}

// applied records that payload id of key applied (or was a duplicate): it
// blocks nothing any more.
func (b *Blocks) applied(key, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.heads[key]; ok && h.id == id {
		delete(b.heads, key)
	}
	for _, m := range []map[string]map[string]bool{b.blocked, b.local} {
		delete(m[key], id)
		if len(m[key]) == 0 {
			delete(m, key)
		}
	}
}

// Poisoned records that payload id of key reached the poison topic: the key
// is blocked from now on, before the indexer has it.
func (b *Blocks) Poisoned(key, id string) {
	if key == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.heads[key]; ok && h.id == id {
		delete(b.heads, key)
	}
	addBlock(b.local, key, id)
	addBlock(b.blocked, key, id)
	b.logger.Warn("Ordering key blocked: its later payloads wait until an operator replays or purges the poisoned one",
		"ordering_key", key, "payload_id", id)
}

// Middleware holds the payloads of blocked keys. It sits inside the poison
// queue, which lets a held payload's error through to a nack, and outside
// Retry and RecordFailures: holding is not a failed attempt.
func (b *Blocks) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		key := msg.Metadata.Get(messages.MetaOrderingKey)
		if key == "" {
			return h(msg)
		}
		if !b.mayApply(key, msg.UUID) {
			b.logger.Debug("Payload held: its ordering key is blocked", "payload_id", msg.UUID, "ordering_key", key)
			select {
			case <-msg.Context().Done():
			case <-time.After(b.cfg.HoldDelay):
			}
			return nil, fmt.Errorf("payload %s of ordering key %q: %w", msg.UUID, key, ErrHeld)
		}
		out, err := h(msg)
		if err == nil {
			b.applied(key, msg.UUID)
		}
		return out, err
	}
}
