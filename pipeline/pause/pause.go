// Package pause holds the apply stage's messages while the warehouse is
// unavailable (an outage), probes it, and lets them go on when it answers
// again: an outage never costs a payload an attempt, a retry or a poisoning.
package pause

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/metrics"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// DefaultHoldMax is how long one message is held before it is given back
// to Pub/Sub with a nack. The subscriber must extend the lease for at least
// this long plus the longest a handling may take: a message is given back
// before its lease lapses, never taken from under a hold by another
// process. Each give-back is a delivery attempt: with
// DEAD_LETTER_MAX_ATTEMPTS=N, Pub/Sub moves a payload to the poison topic
// (class unknown, replayable) once an outage has held it about N times this
// long (2.5 hours at N=5, the least Pub/Sub allows). Without a dead-letter
// policy a give-back costs only a redelivery.
const DefaultHoldMax = 30 * time.Minute

// Config configures a Pause.
type Config struct {
	// Warehouse names the warehouse in the logs. Required.
	Warehouse string
	// Ping probes the warehouse while nothing is held. Required.
	Ping func(ctx context.Context) error
	// HoldMax: see DefaultHoldMax. Optional, default DefaultHoldMax.
	HoldMax time.Duration
	// ProbeMin and ProbeMax bound the wait between two probes: it starts
	// at ProbeMin and doubles after every probe that meets the outage
	// again. Optional, default 1s and 30s.
	ProbeMin, ProbeMax time.Duration
	// LogEvery is how often a pause that lasts says so, with the count of
	// payloads it holds. Optional, default 30s.
	LogEvery time.Duration
}

func (c *Config) setDefaults() {
	if c.HoldMax == 0 {
		c.HoldMax = DefaultHoldMax
	}
	if c.ProbeMin == 0 {
		c.ProbeMin = time.Second
	}
	if c.ProbeMax == 0 {
		c.ProbeMax = 30 * time.Second
	}
	if c.LogEvery == 0 {
		c.LogEvery = 30 * time.Second
	}
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.Warehouse == "" {
		errs = append(errs, errors.New("pause config: Warehouse is required"))
	}
	if c.Ping == nil {
		errs = append(errs, errors.New("pause config: Ping is required"))
	}
	if c.HoldMax < 0 || c.ProbeMin < 0 || c.ProbeMax < 0 || c.LogEvery < 0 {
		errs = append(errs, errors.New("pause config: HoldMax, ProbeMin, ProbeMax and LogEvery must not be negative"))
	}
	if c.ProbeMax > 0 && c.ProbeMin > c.ProbeMax {
		errs = append(errs, fmt.Errorf("pause config: ProbeMin (%s) must not exceed ProbeMax (%s)", c.ProbeMin, c.ProbeMax))
	}
	return errors.Join(errs...)
}

// ErrPaused is the error of a message given back while the stage is
// paused: its class is outage, so it is nacked, neither poisoned nor
// counted as an attempt.
var ErrPaused = errors.New("the apply stage is paused")

// Pause holds the apply stage's messages while the warehouse is
// unavailable. Its middleware sits between the poison queue and Retry: when
// the handler returns an outage (messages.ClassOutage: the warehouse
// corrupt, full, read-only, locked past its timeout or unreachable;
// BigQuery down or rate limited), the stage pauses. While it is paused,
// every message it receives, and every one whose attempt met the outage,
// waits in the middleware: not handed to the handler, not acked, not
// nacked. Outside Retry, the wait counts no attempt and spends no retry.
//
// Holding fills MAX_OUTSTANDING, and the subscriber's flow control then
// stops pulling: the backlog stays in Pub/Sub.
//
// It probes with backoff (ProbeMin doubling to ProbeMax): one
// held message goes through as the probe, since a real apply is the truest
// probe (a read-only ping sees neither a full disk nor zeroed table
// pages). When the probe's result is anything but an outage, the stage
// resumes and every held message goes on. With nothing held, the probe is
// the warehouse's Ping.
//
// A message held HoldMax is given back with a nack (see DefaultHoldMax);
// one whose context ends (the stage is shutting down) returns its
// cancellation, nacked too: neither is poisoned.
type Pause struct {
	warehouse string // names the warehouse in the logs
	ping      func(ctx context.Context) error
	logger    *slog.Logger
	holdMax   time.Duration
	probeMin  time.Duration
	probeMax  time.Duration
	logEvery  time.Duration

	// turn carries the probe's token: the held message that takes it is
	// the probe.
	turn chan struct{}

	mu      sync.Mutex
	paused  bool
	since   time.Time
	err     error         // the outage that paused the stage, or the last probe's
	resumed chan struct{} // closed when the pause ends
	held    int           // messages held now
	heldMax int           // most held at once in this pause
	probes  int           // probes made in this pause
	probing bool          // a token was offered, or its probe is applying
	backoff time.Duration
	probeT  *time.Timer
	logT    *time.Timer
	closed  bool
	lastEnd time.Time
	// pauses and pausedFor count every pause and the time spent in the
	// ended ones, for the metrics.
	pauses    int
	pausedFor time.Duration
}

// New returns a Pause, or every problem with cfg.
func New(cfg Config, logger *slog.Logger) (*Pause, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Pause{
		warehouse: cfg.Warehouse, ping: cfg.Ping, logger: logger,
		holdMax: cfg.HoldMax, probeMin: cfg.ProbeMin, probeMax: cfg.ProbeMax, logEvery: cfg.LogEvery,
		turn: make(chan struct{}, 1),
	}, nil
}

// Middleware holds messages while the stage is paused, and pauses it when
// the handler meets an outage.
func (p *Pause) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		received := time.Now()
		for {
			probe, err := p.wait(msg, received)
			if err != nil {
				return nil, err
			}
			out, err := h(msg)
			switch {
			case messages.ClassOf(err) == messages.ClassOutage:
				// Held again, from the top: it counted no attempt.
				p.fail(err, probe)
				continue
			case probe && msg.Context().Err() != nil:
				// The stage is stopping: the probe tells nothing.
				p.probeGone()
			case probe:
				p.resume()
			}
			return out, err
		}
	}
}

// wait returns at once while the stage runs. While it is paused, it holds
// the message until the stage resumes (false), the message is chosen as the
// probe (true), its context ends or it has been held holdMax since it was
// received (an error of class outage, for a nack).
func (p *Pause) wait(msg *message.Message, received time.Time) (probe bool, err error) {
	p.mu.Lock()
	if !p.paused {
		p.mu.Unlock()
		return false, nil
	}
	cause := p.err
	left := p.holdMax - time.Since(received)
	if left <= 0 {
		p.mu.Unlock()
		return false, p.giveBack(cause)
	}
	p.held++
	p.heldMax = max(p.heldMax, p.held)
	resumed := p.resumed
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.held--
		p.mu.Unlock()
	}()
	limit := time.NewTimer(left)
	defer limit.Stop()
	select {
	case <-resumed:
		return false, nil
	case <-p.turn:
		return true, nil
	case <-msg.Context().Done():
		// Still the cancellation (errors.Is), so the router nacks it and
		// the poison queue lets it be.
		return false, messages.Outage(fmt.Errorf("%w; held, and given back as the stage stops: %w", ErrPaused, msg.Context().Err()))
	case <-limit.C:
		return false, p.giveBack(cause)
	}
}

func (p *Pause) giveBack(cause error) error {
	return messages.Outage(fmt.Errorf("%w (%v): held %s, given back to Pub/Sub before its lease ends", ErrPaused, cause, p.holdMax))
}

// fail records an outage: it pauses the stage, or, from a probe, schedules
// the next probe after twice the wait.
func (p *Pause) fail(err error, probe bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
	if !p.paused {
		p.begin(err)
		return
	}
	if probe {
		p.probing = false
		p.backoff = min(2*p.backoff, p.probeMax)
		p.probeT.Reset(p.backoff)
	}
}

// begin pauses the stage. p.mu must be held.
func (p *Pause) begin(err error) {
	now := time.Now()
	p.paused, p.since, p.resumed = true, now, make(chan struct{})
	p.heldMax, p.probes, p.probing = 0, 0, false
	p.pauses++
	p.drainTurn()
	// A pause that follows the last one closely goes on backing off from
	// where that one was: a warehouse that answers one probe and fails the
	// next payloads is not probed every second.
	if p.lastEnd.IsZero() || now.Sub(p.lastEnd) > p.probeMax {
		p.backoff = p.probeMin
	}
	p.logger.Error("Apply paused: the warehouse is unavailable; payloads are held, not retried or poisoned, until it answers again",
		"warehouse", p.warehouse, "reason", warehouse.Reason(err), "error", err)
	if p.probeT == nil {
		p.probeT = time.AfterFunc(p.backoff, p.probeDue)
		p.logT = time.AfterFunc(p.logEvery, p.logStill)
		return
	}
	p.probeT.Reset(p.backoff)
	p.logT.Reset(p.logEvery)
}

// resume ends the pause: every held message goes on.
func (p *Pause) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		return
	}
	took := time.Since(p.since)
	p.paused, p.probing = false, false
	p.pausedFor += took
	p.lastEnd = time.Now()
	close(p.resumed)
	p.probeT.Stop()
	p.logT.Stop()
	p.drainTurn()
	p.logger.Warn("Apply resumed: the warehouse answers again", "warehouse", p.warehouse,
		"paused_for", took.Round(time.Millisecond).String(), "held", p.held, "held_max", p.heldMax, "probes", p.probes)
}

// probeGone forgets a probe that ended without a result; the next one
// follows after the current wait.
func (p *Pause) probeGone() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused && p.probing {
		p.probing = false
		p.probeT.Reset(p.backoff)
	}
}

// drainTurn takes back a token nobody took. p.mu must be held.
func (p *Pause) drainTurn() {
	select {
	case <-p.turn:
	default:
	}
}

// probeDue runs when the next probe is due: it lets one held message
// through, or, with none held, pings the warehouse.
func (p *Pause) probeDue() {
	p.mu.Lock()
	if !p.paused || p.closed {
		p.mu.Unlock()
		return
	}
	if p.probing {
		if len(p.turn) == 0 || p.held > 0 {
			// A probe is applying (or about to): its result schedules
			// the next. Look again later, in case it never reports.
			p.probeT.Reset(p.probeMax)
			p.mu.Unlock()
			return
		}
		// Offered when something was held, and nothing is any more.
		p.drainTurn()
	}
	p.probing = true
	p.probes++
	if p.held > 0 {
		select {
		case p.turn <- struct{}{}: // empty: drained above, or taken
		default:
		}
		p.probeT.Reset(p.probeMax)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := p.ping(ctx)
	cancel()
	if messages.ClassOf(err) == messages.ClassOutage {
		p.fail(err, true)
		return
	}
	p.resume()
}

// logStill says, once per interval while the pause lasts, how many
// payloads it holds.
func (p *Pause) logStill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused || p.closed {
		return
	}
	p.logger.Warn("Apply still paused: the warehouse is unavailable", "warehouse", p.warehouse,
		"paused_for", time.Since(p.since).Round(time.Second).String(), "held", p.held, "probes", p.probes, "error", p.err)
	p.logT.Reset(p.logEvery)
}

// Stop ends the probes and the logs, at shutdown.
func (p *Pause) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.probeT != nil {
		p.probeT.Stop()
		p.logT.Stop()
	}
}

// State reports since when the stage is paused and why; a zero time while
// it runs.
func (p *Pause) State() (since time.Time, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		return time.Time{}, nil
	}
	return p.since, p.err
}

// Metrics reads the pause for the metrics.
func (p *Pause) Metrics() metrics.ApplyPause {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := metrics.ApplyPause{Paused: p.paused, Pauses: p.pauses, PausedFor: p.pausedFor, Held: p.held}
	if p.paused {
		s.PausedFor += time.Since(p.since)
		s.Reason = warehouse.Reason(p.err)
	}
	return s
}
