package outbox

// The outbox's identity, remembered where it survives the file, so that a
// start that finds the file missing, empty or replaced refuses rather than
// drops silently what was waiting in it (PostgreSQL refuses to start
// without its data directory, for the same reason).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatekeeper/gatekeeper/warehouse"
)

// Place is the outbox file as the records name it: the host, and the
// absolute path. Replicas share one warehouse (and one Pub/Sub), each with
// an outbox of its own, often at the same path inside its container: the
// host name keeps their records apart. A container that gets a new host
// name when recreated (Docker's default: its id) finds no record; give it
// a stable one (compose's hostname:, a StatefulSet's pod name).
type Place struct{ Host, Path string }

// PlaceOf is the place of the outbox file at path on this host.
func PlaceOf(path string) Place {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return Place{Host: host, Path: abs}
}

// Remembered is another place's memory of the outbox: it knows that an
// outbox lived at the path, not which one nor how much it held.
type Remembered struct {
	// Where names the place, for the messages.
	Where string
}

// KeeperConfig configures a Keeper.
type KeeperConfig struct {
	// Outbox is how the file is opened; its Path is the outbox kept.
	// Required.
	Outbox Config
	// Registry is the warehouse's memory of outboxes: it holds each one's
	// identity and the count pending at its last clean stop. Optional:
	// nil where this process does not apply to a warehouse that can
	// remember (BigQuery).
	Registry warehouse.OutboxRegistry
	// Remembered, when set, asks another place whether it remembers an
	// outbox at this place (Pub/Sub's follow subscription existed before
	// this start). Optional.
	Remembered func(ctx context.Context) (Remembered, bool)
	// AcceptLoss (OUTBOX_ACCEPT_LOSS) lets the start go on when the file
	// the records remember is missing, empty or another one: the payloads
	// answered 200 that waited in it are lost. Logged and counted.
	AcceptLoss bool
	// RetryEvery is how often Run tries again to record the start, until
	// it lands. Optional, default 5s.
	RetryEvery time.Duration
}

func (c *KeeperConfig) setDefaults() {
	if c.RetryEvery == 0 {
		c.RetryEvery = 5 * time.Second
	}
}

// Validate reports every problem with c.
func (c KeeperConfig) Validate() error {
	var errs []error
	if c.Outbox.Path == "" {
		errs = append(errs, errors.New("outbox keeper config: Outbox.Path is required"))
	}
	if c.RetryEvery < 0 {
		errs = append(errs, errors.New("outbox keeper config: RetryEvery must not be negative"))
	}
	return errors.Join(errs...)
}

// Keeper opens the outbox this process keeps, or refuses to, and records
// its identity where it survives the file.
type Keeper struct {
	cfg    KeeperConfig
	place  Place
	logger *slog.Logger

	box          *Outbox
	recorded     atomic.Bool
	lossAccepted atomic.Int64
}

// NewKeeper returns a Keeper, or every problem with cfg.
func NewKeeper(cfg KeeperConfig, logger *slog.Logger) (*Keeper, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Keeper{cfg: cfg, place: PlaceOf(cfg.Outbox.Path), logger: logger}, nil
}

// LossAccepted counts the starts that accepted losing the outbox kept
// before: 0 or 1.
func (k *Keeper) LossAccepted() int64 { return k.lossAccepted.Load() }

// record is one place's memory of the outbox this process kept.
type record struct {
	// where names the place, for the messages.
	where string
	// identity is "" when the place only knows that an outbox lived here.
	identity string
	// pending is the count at the last clean stop, or
	// warehouse.PendingUnknown.
	pending int
}

// Open opens the outbox, or refuses to: when a record says an outbox
// lived at this path and the file is missing, empty or another one
// (unless AcceptLoss), or when the file is damaged. A missing file is not
// created before the check passes, so that a refusal leaves the place
// empty for the file to be restored to.
func (k *Keeper) Open(ctx context.Context) (*Outbox, error) {
	path := k.place.Path
	records := k.records(ctx)

	info, err := os.Stat(k.cfg.Outbox.Path)
	var found string
	switch {
	case errors.Is(err, os.ErrNotExist):
		found = "missing"
	case err != nil:
		return nil, fmt.Errorf("OUTBOX_PATH: outbox %s: %w", path, err)
	case info.Size() == 0:
		found = "empty"
	}
	var lost []record
	if found != "" {
		lost = records
	} else {
		box, err := k.open(ctx)
		if err != nil {
			return nil, err
		}
		k.box = box
		for _, r := range records {
			// A place that only knows an outbox lived here cannot tell
			// this file from another; one that knows the identity can.
			if box.Created() || r.identity != "" && r.identity != box.Identity() {
				lost = append(lost, r)
			}
		}
		if len(lost) > 0 {
			found = "of another identity (" + box.Identity() + ")"
			if box.Created() {
				found = "not an outbox that held anything"
			}
		}
	}
	if len(lost) > 0 && !k.cfg.AcceptLoss {
		if k.box != nil {
			_ = k.box.Close()
		}
		return nil, refuse(path, found, lost)
	}
	if k.box == nil {
		if k.box, err = k.open(ctx); err != nil {
			return nil, err
		}
	}
	if len(lost) > 0 {
		k.lossAccepted.Add(1)
		pending, _ := knownPending(lost)
		k.logger.Warn("Outbox loss accepted (OUTBOX_ACCEPT_LOSS): the payloads that waited in the outbox this process kept are lost",
			"outbox", path, "found", found, "identity_lost", lost[0].identity, "pending_known", pending,
			"recorded_in", places(lost), "identity", k.box.Identity())
	} else if k.cfg.AcceptLoss {
		k.logger.Info("OUTBOX_ACCEPT_LOSS is set, and there was nothing to accept: the outbox is the one recorded, or none was; unset it",
			"outbox", path)
	}
	// Briefly: a warehouse another process holds locked must not hold up
	// the start; Run tries again while the service runs.
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	k.recorded.Store(k.record(rctx, warehouse.PendingUnknown, false))
	cancel()
	return k.box, nil
}

// open opens (creating if needed) the outbox file.
func (k *Keeper) open(ctx context.Context) (*Outbox, error) {
	box, err := Open(ctx, k.cfg.Outbox, k.logger)
	if err != nil {
		return nil, fmt.Errorf("OUTBOX_PATH: %w", err)
	}
	return box, nil
}

// Run retries, every RetryEvery until it succeeds or ctx ends, the start's
// record that failed: until it lands, a later start cannot tell this
// outbox lost from a new one.
func (k *Keeper) Run(ctx context.Context) {
	if k.recorded.Load() {
		return
	}
	t := time.NewTicker(k.cfg.RetryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if k.record(ctx, warehouse.PendingUnknown, true) {
			k.recorded.Store(true)
			k.logger.Info("Recorded the outbox's identity in the warehouse", "outbox", k.place.Path, "identity", k.box.Identity())
			return
		}
	}
}

// RecordStop records how many entries the outbox holds pending at a clean
// stop, for the message of a start that finds the file gone. Call it once
// nothing writes to the outbox any more, before closing it.
func (k *Keeper) RecordStop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := k.box.Flush(ctx); err != nil {
		k.logger.Warn("Cannot count the outbox at stop", "outbox", k.place.Path, "error", err)
		return
	}
	counts, err := k.box.Count(ctx)
	if err != nil {
		k.logger.Warn("Cannot count the outbox at stop", "outbox", k.place.Path, "error", err)
		return
	}
	k.record(ctx, counts[Pending], false)
}

// refuse is the refusal to start without the outbox the records remember:
// what was found, what is known of what waited in it, and the two ways on.
func refuse(path, found string, lost []record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "OUTBOX_PATH: refusing to start: the outbox %s is %s, but %s records that this process kept an outbox there",
		path, found, places(lost))
	ids := map[string]bool{}
	for _, r := range lost {
		if r.identity != "" && !ids[r.identity] {
			ids[r.identity] = true
			fmt.Fprintf(&b, " (identity %s)", r.identity)
		}
	}
	if n, ok := knownPending(lost); ok {
		fmt.Fprintf(&b, ", with %d entries pending at its last clean stop: %d payloads answered 200 are not applied yet unless the file comes back", n, n)
	} else {
		b.WriteString("; how many entries were pending is unknown (its last stop did not record a count: the process was killed, " +
			"or the warehouse could not be written then): payloads answered 200 may be waiting in it")
	}
	fmt.Fprintf(&b, ". Either restore the file to %s (with its -wal file if it had one) and start again, "+
		"or start once with --outbox-accept-loss (OUTBOX_ACCEPT_LOSS=true) to accept that they are lost", path)
	return errors.New(b.String())
}

// knownPending is the largest pending count the records know.
func knownPending(rs []record) (int, bool) {
	n, ok := 0, false
	for _, r := range rs {
		if r.pending >= 0 {
			n, ok = max(n, r.pending), true
		}
	}
	return n, ok
}

func places(rs []record) string {
	var names []string
	for _, r := range rs {
		names = append(names, r.where)
	}
	return strings.Join(names, " and ")
}

// records reads what the warehouse and the other place remember of the
// outbox. A place that cannot be read is logged and skipped: the ingest
// stage starts while the warehouse is down.
func (k *Keeper) records(ctx context.Context) []record {
	var rs []record
	if k.cfg.Registry != nil {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rec, found, err := k.cfg.Registry.OutboxRecord(rctx, k.place.Host, k.place.Path)
		cancel()
		switch {
		case err != nil:
			k.logger.Warn("Cannot read the warehouse's record of the outbox; starting without checking it against the file",
				"outbox", k.place.Path, "error", err)
		case found:
			rs = append(rs, record{where: "the warehouse", identity: rec.Identity, pending: rec.Pending})
		}
	}
	if k.cfg.Remembered != nil {
		if r, ok := k.cfg.Remembered(ctx); ok {
			rs = append(rs, record{where: r.Where, pending: warehouse.PendingUnknown})
		}
	}
	return rs
}

// record writes the outbox's identity and pending count in the warehouse,
// where it survives the file, and reports whether it did or there is
// nowhere to write. A failure is logged (unless quiet: a retry): it
// weakens the next start's check, not this process's work.
func (k *Keeper) record(ctx context.Context, pending int, quiet bool) bool {
	if k.cfg.Registry == nil {
		return true
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := k.cfg.Registry.RecordOutbox(rctx, warehouse.OutboxRecord{Host: k.place.Host, Path: k.place.Path, Identity: k.box.Identity(), Pending: pending})
	cancel()
	switch {
	case err == nil:
		return true
	case quiet:
	case pending == warehouse.PendingUnknown:
		k.logger.Warn("Cannot record the outbox's identity in the warehouse yet; until it lands, a later start cannot tell this outbox lost from a new one",
			"outbox", k.place.Path, "error", err)
	default:
		k.logger.Warn("Cannot record in the warehouse how many entries the outbox holds at this stop; a start that finds it lost will say the count is unknown",
			"outbox", k.place.Path, "pending", pending, "error", err)
	}
	return false
}
