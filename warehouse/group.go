package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
)

// ErrCommitterClosed is returned by Submit once Close has begun, and to
// payloads still waiting when Close gives up. It is classified transient,
// never an outage: the warehouse is fine, this process is stopping, and
// another instance may apply the payload. The adapter's errors pass
// through Submit unchanged, with the class the adapter gave them.
var ErrCommitterClosed = errors.New("group committer closed")

// GroupConfig configures a GroupCommitter.
type GroupConfig struct {
	// MaxSize is the most payloads one Apply call carries.
	// Optional, default 200.
	MaxSize int
	// MaxWait bounds how long a payload waits for companions while other
	// groups are being applied. A payload that arrives when nothing is being
	// applied starts a group at once, because waiting could only add latency.
	// Optional, default 2ms; a negative value never waits.
	MaxWait time.Duration
	// MaxInFlight is how many groups may be applied at the same time. Groups
	// in flight never share a table.
	// Optional, default 4.
	MaxInFlight int
	// OnGroup, when set, is called after every Apply call, before the
	// group's submitters are released. It must not block. Optional.
	OnGroup func(GroupReport)
}

// GroupReport is what one Apply call did.
type GroupReport struct {
	// Size is the number of payloads in the group.
	Size int
	// Took is how long Apply took.
	Took time.Duration
	// Err is the group-level error: nothing of the group was written.
	Err error
	// Rejected are the errors of the payloads the warehouse rejected in a
	// group that committed.
	Rejected []error
}

func (c *GroupConfig) setDefaults() {
	if c.MaxSize == 0 {
		c.MaxSize = 200
	}
	if c.MaxWait == 0 {
		c.MaxWait = 2 * time.Millisecond
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 4
	}
}

// Validate reports every problem of the configuration at once.
func (c GroupConfig) Validate() error {
	var errs []error
	if c.MaxSize < 1 {
		errs = append(errs, fmt.Errorf("MaxSize must be at least 1, got %d", c.MaxSize))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("MaxInFlight must be at least 1, got %d", c.MaxInFlight))
	}
	return errors.Join(errs...)
}

// GroupStats counts what a GroupCommitter has applied so far.
type GroupStats struct {
	// Groups is the number of Apply calls made.
	Groups uint64
	// Payloads is the number of payloads those calls carried.
	Payloads uint64
	// FailedGroups is the number of Apply calls that returned an error.
	FailedGroups uint64
	// LargestGroup is the size of the largest group formed.
	LargestGroup int
}

// GroupCommitter combines payloads submitted concurrently into groups and
// applies each group with one Warehouse.Apply call, so the cost of a
// transaction is shared by many payloads.
//
// It never runs two groups that touch the same table at once: BigQuery
// aborts one of two concurrent transactions on a table, and SQLite has one
// writer anyway. Payloads touching a table that a running group holds wait,
// in arrival order, and so do later payloads sharing any table with a waiting
// one, so no payload is overtaken forever on a table it shares.
//
// A payload's ordering key is held like one more table: two payloads of one
// key are never in two groups in flight at once, and a later one waits
// behind an earlier one that waits. In one group they are in arrival order,
// which Warehouse.Apply keeps. So of two payloads of one key, the one
// submitted first commits first, or in the same transaction before the
// other, whatever tables either touches. (When the first one's group fails,
// its Submit returns the error; the second may then commit before the
// first is submitted again. The apply stage never submits a key's next
// payload before the previous one's Submit returned with success or it
// was poisoned, so this never arises there; see pipeline/stage_apply.go.)
// Payloads without a key pay nothing for this.
//
// It has no worker goroutine: one member of each group, its leader, makes
// the Apply call on its own goroutine and hands the others their outcomes.
// Waking a goroutine costs more than a small Apply on SQLite, so a lone
// submitter that finds the warehouse idle applies its payload with no
// hand-over at all.
type GroupCommitter struct {
	warehouse Warehouse
	cfg       GroupConfig
	logger    *slog.Logger

	// applyCtx is the context of every Apply call: a group outlives any one
	// submitter's context. Close cancels it when its own context ends.
	applyCtx    context.Context
	cancelApply context.CancelFunc

	mu       sync.Mutex
	pending  []*submission
	inFlight int
	// busyTables counts, per table key, the in-flight groups holding it. It is
	// at most one by construction; a count keeps release simple.
	busyTables map[string]int
	// stuck, when not nil, holds what the last eligible() found: nothing,
	// because each of the first stuckScanned pending payloads touches a
	// table in stuck (busy, or wanted by an earlier waiting payload). Until
	// a group starts or ends or a payload is withdrawn, that stays true,
	// and eligible need only look at the payloads submitted since. With a
	// backlog on one table, pending holds up to MAX_OUTSTANDING payloads,
	// and scanning them all on every Submit was 6 % of the apply stage's
	// CPU.
	stuck        map[string]bool
	stuckScanned int
	timer        *time.Timer
	timerAt      time.Time
	closed       bool
	drained      chan struct{}
	stats        GroupStats

	// giveUpHook, when set, is called as giveUp begins, before it takes c.mu.
	// Only tests set it, to act between a submitter's ctx ending and its
	// withdrawal.
	giveUpHook func()
}

type submission struct {
	payload Payload
	tables  []string
	arrived time.Time
	started bool
	// result receives, at most once each and in this order: the group to
	// lead, when elected, and the outcome. Its buffer of one never blocks a
	// sender: the outcome is only sent after the lead message was taken.
	result chan submissionResult
}

type submissionResult struct {
	lead    *group
	outcome Outcome
	err     error
}

// group is a set of payloads applied by one Apply call.
type group struct {
	members []*submission
	tables  []string
}

// NewGroupCommitter returns a GroupCommitter applying to w. A nil logger
// discards logs.
func NewGroupCommitter(w Warehouse, cfg GroupConfig, logger *slog.Logger) (*GroupCommitter, error) {
	if w == nil {
		return nil, errors.New("warehouse is nil")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid group config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &GroupCommitter{
		warehouse:   w,
		cfg:         cfg,
		logger:      logger,
		applyCtx:    ctx,
		cancelApply: cancel,
		busyTables:  map[string]int{},
		drained:     make(chan struct{}),
	}, nil
}

// Submit applies p as a member of a group and returns its outcome once the
// group's Apply call returned. A group-level error is returned to every
// member: none of the group was written, and the caller retries.
//
// When ctx ends before the group started, p is withdrawn and ctx's error is
// returned. When it ends after, the error is returned too but the group goes
// on: p may or may not be applied, and the ledger makes a retry safe. The one
// exception is a submitter already making its group's Apply call as the
// leader: it returns when that call does.
func (c *GroupCommitter) Submit(ctx context.Context, p Payload) (Outcome, error) {
	if err := ctx.Err(); err != nil {
		return Outcome{}, err
	}
	s := &submission{
		payload: p,
		tables:  lockKeys(p),
		arrived: time.Now(),
		result:  make(chan submissionResult, 1),
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Outcome{}, messages.Transient(ErrCommitterClosed)
	}
	c.pending = append(c.pending, s)
	own := c.schedule(s)
	c.mu.Unlock()
	if own != nil {
		c.run(own)
	}

	for {
		select {
		case r := <-s.result:
			if r.lead != nil {
				c.run(r.lead)
				continue
			}
			return r.outcome, r.err
		case <-ctx.Done():
			return c.giveUp(ctx, s)
		}
	}
}

// giveUp ends a Submit whose ctx ended: it withdraws s if its group has not
// started, and otherwise makes sure a group s was elected to lead still runs.
func (c *GroupCommitter) giveUp(ctx context.Context, s *submission) (Outcome, error) {
	if c.giveUpHook != nil {
		c.giveUpHook()
	}
	c.mu.Lock()
	withdrawn := !s.started && c.remove(s)
	if withdrawn {
		// The withdrawn payload may have been the one holding back others
		// behind a shared table, or the last thing Close waited for.
		c.schedule(nil)
		c.checkDrained()
	}
	c.mu.Unlock()
	if withdrawn {
		return Outcome{}, ctx.Err()
	}
	// Lead messages are sent under c.mu, so once s.started was seen there,
	// one meant for s is already here; an outcome may or may not be.
	select {
	case r := <-s.result:
		if r.lead != nil {
			// The other members wait for this group; run it without holding
			// up this caller any longer.
			go c.run(r.lead)
			break
		}
		return r.outcome, r.err
	default:
	}
	return Outcome{}, ctx.Err()
}

// Close stops accepting payloads, starts groups for everything pending
// without waiting for companions, and waits until every group is applied.
// When ctx ends first, Close cancels the Apply calls in flight, fails the
// payloads not yet started with ErrCommitterClosed, and returns ctx's error.
func (c *GroupCommitter) Close(ctx context.Context) error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		c.schedule(nil)
		c.checkDrained()
	}
	c.mu.Unlock()

	select {
	case <-c.drained:
		c.cancelApply()
		return nil
	case <-ctx.Done():
	}

	// Take the pending payloads before cancelling: a cancelled Apply that
	// returns would otherwise start them.
	c.mu.Lock()
	abandoned := c.pending
	c.pending = nil
	c.stuck = nil
	c.checkDrained()
	c.mu.Unlock()
	c.cancelApply()
	for _, s := range abandoned {
		s.result <- submissionResult{err: messages.Transient(ErrCommitterClosed)}
	}
	return ctx.Err()
}

// Stats returns counters of the groups applied so far.
func (c *GroupCommitter) Stats() GroupStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// schedule starts every group that may start now and arms the timer for the
// earliest group that must wait. A started group that contains self is
// returned for the caller to run; every other one is handed to its first
// member to lead. c.mu must be held.
func (c *GroupCommitter) schedule(self *submission) (own *group) {
	now := time.Now()
	for c.inFlight < c.cfg.MaxInFlight {
		members := c.eligible()
		if len(members) == 0 {
			return own
		}
		ready := len(members) == c.cfg.MaxSize ||
			c.inFlight == 0 ||
			c.closed ||
			now.Sub(members[0].arrived) >= c.cfg.MaxWait
		if !ready {
			c.wakeAt(members[0].arrived.Add(c.cfg.MaxWait))
			return own
		}
		g := c.start(members)
		if own == nil && self != nil && slices.Contains(members, self) {
			own = g
			continue
		}
		// The leader is waiting in Submit with an empty buffer.
		members[0].result <- submissionResult{lead: g}
	}
	return own
}

// eligible returns, in arrival order, up to MaxSize pending payloads that
// share no table with a group in flight nor with an earlier pending payload
// that has to wait. c.mu must be held.
func (c *GroupCommitter) eligible() []*submission {
	if c.stuck != nil && c.stillStuck() {
		return nil
	}
	var members []*submission
	var waiting map[string]bool
	for _, s := range c.pending {
		if len(members) == c.cfg.MaxSize {
			break
		}
		blocked := false
		for _, t := range s.tables {
			if c.busyTables[t] > 0 || waiting[t] {
				blocked = true
				break
			}
		}
		if !blocked {
			members = append(members, s)
			continue
		}
		if waiting == nil {
			waiting = map[string]bool{}
		}
		for _, t := range s.tables {
			waiting[t] = true
		}
	}
	if len(members) == 0 && len(c.pending) > 0 {
		for t := range c.busyTables {
			waiting[t] = true
		}
		c.stuck, c.stuckScanned = waiting, len(c.pending)
	}
	return members
}

// stillStuck extends c.stuck over the payloads submitted since it was
// found, and reports whether every one of them waits too. c.mu must be
// held.
func (c *GroupCommitter) stillStuck() bool {
	for _, s := range c.pending[c.stuckScanned:] {
		blocked := false
		for _, t := range s.tables {
			if c.stuck[t] {
				blocked = true
				break
			}
		}
		if !blocked {
			c.stuck = nil
			return false
		}
		for _, t := range s.tables {
			c.stuck[t] = true
		}
	}
	c.stuckScanned = len(c.pending)
	return true
}

// start takes members out of pending and claims their tables. c.mu must be
// held.
func (c *GroupCommitter) start(members []*submission) *group {
	c.stuck = nil
	g := &group{members: members}
	started := make(map[*submission]bool, len(members))
	claimed := map[string]bool{}
	for _, s := range members {
		s.started = true
		started[s] = true
		for _, t := range s.tables {
			if !claimed[t] {
				claimed[t] = true
				g.tables = append(g.tables, t)
				c.busyTables[t]++
			}
		}
	}
	kept := c.pending[:0]
	for _, s := range c.pending {
		if !started[s] {
			kept = append(kept, s)
		}
	}
	clear(c.pending[len(kept):])
	c.pending = kept
	c.inFlight++
	return g
}

// release frees g's slot and tables. c.mu must be held.
func (c *GroupCommitter) release(g *group) {
	c.inFlight--
	c.stuck = nil
	for _, t := range g.tables {
		if c.busyTables[t]--; c.busyTables[t] == 0 {
			delete(c.busyTables, t)
		}
	}
}

// run makes g's Apply call, starts what waited for g's tables, and hands
// every member its outcome.
// apply calls the warehouse and turns a panic into the group's error, of
// class permanent like every bug. Unrecovered, a panic would crash the
// process from a timer's goroutine, or leave the group's members waiting
// and its slot taken for ever from a leader's.
func (c *GroupCommitter) apply(payloads []Payload) (outcomes []Outcome, err error) {
	defer func() {
		if r := recover(); r != nil {
			outcomes, err = nil, messages.Permanent(fmt.Errorf("the warehouse panicked: %v\n%s", r, debug.Stack()))
		}
	}()
	return c.warehouse.Apply(c.applyCtx, payloads)
}

func (c *GroupCommitter) run(g *group) {
	payloads := make([]Payload, len(g.members))
	for i, s := range g.members {
		payloads[i] = s.payload
	}
	began := time.Now()
	outcomes, err := c.apply(payloads)
	took := time.Since(began)
	if err == nil && len(outcomes) != len(payloads) {
		err = messages.Transient(fmt.Errorf("warehouse returned %d outcomes for a group of %d payloads", len(outcomes), len(payloads)))
	}
	switch {
	case err == nil:
	case messages.ClassOf(err) == messages.ClassOutage:
		// The warehouse itself is down: the apply stage pauses and logs
		// that once, not once per group it probes with.
		c.logger.Debug("Group apply failed: the warehouse is unavailable", "size", len(payloads), "took", took, "error", err)
	default:
		c.logger.Warn("Group apply failed", "size", len(payloads), "took", took, "error", err)
	}

	c.mu.Lock()
	c.release(g)
	c.stats.Groups++
	c.stats.Payloads += uint64(len(payloads))
	if err != nil {
		c.stats.FailedGroups++
	}
	c.stats.LargestGroup = max(c.stats.LargestGroup, len(payloads))
	// Start what waited for these tables before releasing the members, so
	// the warehouse is busy again while they hand their outcomes on.
	c.schedule(nil)
	c.checkDrained()
	c.mu.Unlock()

	if c.cfg.OnGroup != nil {
		report := GroupReport{Size: len(payloads), Took: took, Err: err}
		if err == nil {
			for _, o := range outcomes {
				if o.Status == Rejected {
					report.Rejected = append(report.Rejected, o.Err)
				}
			}
		}
		c.cfg.OnGroup(report)
	}
	for i, s := range g.members {
		if err != nil {
			s.result <- submissionResult{err: err}
			continue
		}
		s.result <- submissionResult{outcome: outcomes[i]}
	}
}

// wakeAt arms the timer to schedule again at t, unless it already fires
// earlier. c.mu must be held.
func (c *GroupCommitter) wakeAt(t time.Time) {
	if c.timer != nil && !c.timerAt.IsZero() && !c.timerAt.After(t) {
		return
	}
	c.timerAt = t
	d := max(time.Until(t), 0)
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.onTimer)
		return
	}
	c.timer.Reset(d)
}

func (c *GroupCommitter) onTimer() {
	c.mu.Lock()
	c.timerAt = time.Time{}
	c.schedule(nil)
	c.mu.Unlock()
}

// remove takes s out of pending and reports whether it was there. c.mu must
// be held.
func (c *GroupCommitter) remove(s *submission) bool {
	i := slices.Index(c.pending, s)
	if i < 0 {
		return false
	}
	c.pending = slices.Delete(c.pending, i, i+1)
	c.stuck = nil
	return true
}

// checkDrained signals Close once it has begun and nothing is left. c.mu
// must be held.
func (c *GroupCommitter) checkDrained() {
	if !c.closed || len(c.pending) > 0 || c.inFlight > 0 {
		return
	}
	select {
	case <-c.drained:
	default:
		close(c.drained)
		if c.timer != nil {
			c.timer.Stop()
		}
	}
}

// orderingLockPrefix makes an ordering key a lock key no table name can
// equal: table names are identifiers, which hold no NUL.
const orderingLockPrefix = "\x00ordering:"

// lockKeys returns what p holds while its group is in flight: its tables
// and its ordering key.
func lockKeys(p Payload) []string {
	keys := tableKeys(p.Activities)
	if p.OrderingKey != "" {
		keys = append(keys, orderingLockPrefix+p.OrderingKey)
	}
	return keys
}

// tableKeys returns the distinct tables the activities touch, as lock keys. Keys are
// case-folded so that backends treating table names case-insensitively
// (SQLite) are serialized too; for case-sensitive backends that only
// serializes a little more than needed.
func tableKeys(activities []messages.Activity) []string {
	var keys []string
	for _, a := range activities {
		k := strings.ToLower(a.Table)
		seen := false
		for _, existing := range keys {
			if existing == k {
				seen = true
				break
			}
		}
		if !seen {
			keys = append(keys, k)
		}
	}
	return keys
}
