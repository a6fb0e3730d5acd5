// Package outbox keeps every accepted payload on local disk until the apply
// stage has settled it, so that "200 means it will be applied" holds when
// the Pub/Sub between the stages forgets: the embedded Pub/Sub is process
// memory, and the emulator loses everything when it restarts.
//
// It is the transactional-outbox pattern (Watermill's components/forwarder
// shows it over a SQL table): the gate appends a payload, durably, before it
// publishes and answers 200; the apply stage forgets it once its commit (or
// its ledger row) is in the warehouse; whatever is left at the next start,
// or when the accepted subscription had to be recreated, is published again.
// The warehouse ledger makes republishing safe: a payload already applied
// is a duplicate, never applied twice.
//
// The outbox is its own SQLite file, not a table of the SQLite warehouse, so
// that ingestion never waits behind a warehouse transaction or a lock
// another process holds on the warehouse (the case where an outbox matters
// most). Appends from concurrent requests share one transaction and one
// fsync (group commit).
//
// The file has an identity (identity.go), so that a process can record
// elsewhere which outbox it kept and refuse to start without it; a file
// SQLite finds damaged is not opened, and Salvage (salvage.go) saves what
// can still be read of it.
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/gatekeeper/gatekeeper/pipeline/condition"
)

// State is where an outboxed payload stands.
type State string

const (
	// Pending: accepted, not yet applied or poisoned.
	Pending State = "pending"
	// Poisoned: the apply stage gave up on it and published it to the
	// poison topic. It stays so that a poison topic the Pub/Sub forgot can
	// be refilled; applying it (after a replay) forgets it.
	Poisoned State = "poisoned"
)

// Entry is one payload in the outbox.
type Entry struct {
	ID       string
	Payload  []byte
	Metadata map[string]string
	State    State
	// Republished counts how often it was published again.
	Republished int
	// AppendedAt is when the gate recorded it.
	AppendedAt time.Time
}

// Config configures an Outbox.
type Config struct {
	// Path is the outbox's SQLite file, created when missing. Required.
	Path string
	// Sync is "full" (default): an append returns only once it is on disk,
	// so it survives a power loss; or "normal": it survives a crash of the
	// process, not of the machine. Optional.
	Sync string
	// MaxBatch bounds the operations written in one transaction.
	// Optional, default 1024.
	MaxBatch int
	// Linger is how long a commit waits for more operations to share it
	// once it has some, when the one before it was shared too: under load,
	// appends arrive a few at a time, and each commit costs about as much
	// as the rows it writes. A commit after a lone operation does not wait,
	// so appends under light load are not delayed; the first one after a
	// burst (or after forgets from an apply stage in this process) waits
	// one Linger. Optional, default 1ms; negative: never wait.
	Linger time.Duration
	// RedeliverAfter is how long a pending payload may wait before Due
	// offers it for publishing again; each further republish doubles the
	// wait (up to 64 times it), so a slow apply stage is not buried under
	// copies. Optional, default 2m.
	RedeliverAfter time.Duration
	// ProbeEvery is how often, while writes fail (a full disk, a file made
	// read-only), the outbox tries one small write of its own, so that it
	// knows the fault is over without waiting for an append: a process
	// that is not ready receives none. Optional, default 1s.
	ProbeEvery time.Duration
	// LogEvery is the least time between two "Outbox writes still failing"
	// lines, each with the count of failures since the one before.
	// Optional, default 1m.
	LogEvery time.Duration
}

func (c *Config) setDefaults() {
	if c.Sync == "" {
		c.Sync = "full"
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1024
	}
	if c.Linger == 0 {
		c.Linger = time.Millisecond
	}
	if c.RedeliverAfter == 0 {
		c.RedeliverAfter = 2 * time.Minute
	}
	if c.ProbeEvery == 0 {
		c.ProbeEvery = time.Second
	}
	if c.LogEvery == 0 {
		c.LogEvery = time.Minute
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Path) == "" {
		errs = append(errs, errors.New("outbox: Path is required"))
	} else if strings.ContainsAny(c.Path, "?#") || c.Path == ":memory:" {
		errs = append(errs, fmt.Errorf("outbox: Path %q must be a plain file path", c.Path))
	}
	if c.Sync != "full" && c.Sync != "normal" {
		errs = append(errs, fmt.Errorf("outbox: Sync %q: want full or normal", c.Sync))
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("outbox: MaxBatch must be at least 1, got %d", c.MaxBatch))
	}
	if c.RedeliverAfter < 0 {
		errs = append(errs, fmt.Errorf("outbox: RedeliverAfter must not be negative, got %s", c.RedeliverAfter))
	}
	if c.ProbeEvery < 0 {
		errs = append(errs, fmt.Errorf("outbox: ProbeEvery must not be negative, got %s", c.ProbeEvery))
	}
	if c.LogEvery < 0 {
		errs = append(errs, fmt.Errorf("outbox: LogEvery must not be negative, got %s", c.LogEvery))
	}
	return errors.Join(errs...)
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("outbox closed")

type opKind int

const (
	opAppend opKind = iota
	opForget
	opPoison
	opPostpone
	opFlush
	// opProbe is the writer's own small write while writes fail.
	opProbe
)

type op struct {
	kind     opKind
	id       string
	payload  []byte
	metadata string
	nextAt   int64
	// done is closed (after err is set) once the op is written; nil for
	// fire-and-forget ops.
	done chan struct{}
	err  error
}

// Outbox is the durable record of accepted payloads not yet settled.
type Outbox struct {
	cfg    Config
	logger *slog.Logger
	write  *sql.DB
	read   *sql.DB

	ops     chan *op
	closing chan struct{}
	stopped chan struct{}
	mu      sync.RWMutex // held for reading while sending on ops
	closed  bool
	commits atomic.Int64
	// stmts are the writer goroutine's prepared statements (see
	// writeStatements).
	stmts map[string]*sql.Stmt
	// writes is whether the writer's transactions fail: set and cleared by
	// the writer only, once per batch, so Append's path costs nothing more.
	writes *condition.Condition
	// identity is the random id the file was given when it was created
	// (see Identity); created reports that this Open created it.
	identity string
	created  bool
}

// Identity is the outbox file's own id, made when the file was created and
// kept in it (table outbox_meta, and the SQLite header as a copy that
// survives a damaged table): a process that records it elsewhere can tell
// at its next start whether it finds the same outbox, an empty new one, or
// another one.
func (o *Outbox) Identity() string { return o.identity }

// Created reports whether this Open created the outbox: the file was
// missing, empty, or held no outbox yet.
func (o *Outbox) Created() bool { return o.created }

// Path is the outbox's file, as configured.
func (o *Outbox) Path() string { return o.cfg.Path }

// Commits counts the transactions written so far; with concurrent appends
// it grows slower than the appends do.
func (o *Outbox) Commits() int64 { return o.commits.Load() }

// Open opens, creating if needed, the outbox at cfg.Path. An outbox that
// fails SQLite's quick_check (a truncated file, zeroed pages, not a
// database at all) is not opened: the error is a *DamagedError, and
// Salvage reads what can still be read out of it.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Outbox, error) {
	return open(ctx, cfg, logger, "")
}

// open is Open; a new file takes identity when it is not "" (Salvage
// keeps the damaged outbox's).
func open(ctx context.Context, cfg Config, logger *slog.Logger, identity string) (_ *Outbox, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Whether a file with content was there decides what a SQLite error
	// means: damage to an outbox, or a failure to create one.
	info, statErr := os.Stat(cfg.Path)
	existed := statErr == nil && info.Size() > 0
	fail := func(err error) error {
		if existed && isDamage(err) {
			return &DamagedError{Path: cfg.Path, Detail: err.Error(), Err: err}
		}
		return fmt.Errorf("outbox %s: %w", cfg.Path, err)
	}
	write, err := sql.Open("sqlite", dsn(cfg.Path, "_pragma=journal_mode(WAL)", "_pragma=synchronous("+strings.ToUpper(cfg.Sync)+")"))
	if err != nil {
		return nil, fail(err)
	}
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	write.SetConnMaxLifetime(0)
	defer func() {
		if err != nil {
			_ = write.Close() // closes the statements prepared so far
		}
	}()
	if existed {
		if err := quickCheck(ctx, write); err != nil {
			return nil, fail(err)
		}
	}
	hadTable, err := hasTable(ctx, write, "outbox")
	if err != nil {
		return nil, fail(err)
	}
	if _, err := write.ExecContext(ctx, createOutboxSQL); err != nil {
		return nil, fail(err)
	}
	if identity, err = ensureIdentity(ctx, write, identity); err != nil {
		return nil, fail(err)
	}
	stmts := map[string]*sql.Stmt{}
	for name, query := range writeStatements() {
		s, err := write.PrepareContext(ctx, query)
		if err != nil {
			return nil, fail(err)
		}
		stmts[name] = s
	}
	read, err := sql.Open("sqlite", dsn(cfg.Path, "_pragma=query_only(1)"))
	if err != nil {
		return nil, fail(err)
	}
	read.SetMaxOpenConns(2)
	writes, err := condition.New(condition.Config{Name: "Outbox writes", Interval: cfg.LogEvery,
		Attrs: []any{"outbox", cfg.Path}}, logger)
	if err != nil {
		_ = read.Close()
		return nil, err
	}
	o := &Outbox{
		cfg: cfg, logger: logger, write: write, read: read,
		ops: make(chan *op, 4*cfg.MaxBatch), closing: make(chan struct{}), stopped: make(chan struct{}),
		stmts: stmts, identity: identity, created: !hadTable, writes: writes,
	}
	go o.writer()
	return o, nil
}

func dsn(path string, extra ...string) string {
	return path + "?" + strings.Join(append([]string{"_pragma=busy_timeout(5000)"}, extra...), "&")
}

const createOutboxSQL = `CREATE TABLE IF NOT EXISTS outbox (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		id TEXT NOT NULL UNIQUE,
		state TEXT NOT NULL,
		payload BLOB NOT NULL,
		metadata TEXT NOT NULL,
		appended_at TEXT NOT NULL,
		next_at INTEGER NOT NULL, -- unix nanoseconds
		republished INTEGER NOT NULL DEFAULT 0)`

// Append records a payload durably (per Config.Sync) and returns once it is
// written. When ctx ends first the append may still land; it is then
// forgotten again, so that a payload whose client was told to retry is not
// applied behind its back.
func (o *Outbox) Append(ctx context.Context, e Entry) error {
	meta, err := encodeMetadata(e.Metadata)
	if err != nil {
		return fmt.Errorf("outbox %s: payload %s: metadata: %w", o.cfg.Path, e.ID, err)
	}
	a := &op{kind: opAppend, id: e.ID, payload: e.Payload, metadata: meta, done: make(chan struct{})}
	if err := o.sendWait(ctx, a); err != nil {
		if ctx.Err() != nil {
			o.Forget(e.ID)
			return fmt.Errorf("outbox %s: append: %w", o.cfg.Path, err)
		}
		return err
	}
	return nil
}

// Forget drops a payload: it was applied, was a duplicate, or its publish
// failed and its client was told to retry. Written asynchronously, in order
// with every other operation; a forget lost to a crash only means the
// payload is published once more, and the ledger makes it a duplicate.
func (o *Outbox) Forget(id string) {
	_ = o.send(context.Background(), &op{kind: opForget, id: id})
}

// ForgetNow is Forget, returning once the entry is gone from the file:
// the gate uses it when it is about to tell the client to retry, so that
// no republish can still find the entry afterwards.
func (o *Outbox) ForgetNow(ctx context.Context, id string) error {
	return o.sendWait(ctx, &op{kind: opForget, id: id, done: make(chan struct{})})
}

// MarkPoisoned records that the payload went to the poison topic, with the
// metadata it went with. Asynchronous, like Forget.
func (o *Outbox) MarkPoisoned(id string, metadata map[string]string) {
	meta, err := encodeMetadata(metadata)
	if err != nil {
		o.logger.Error("Outbox: cannot record a poisoned payload", "outbox", o.cfg.Path, "payload_id", id, "error", err)
		return
	}
	_ = o.send(context.Background(), &op{kind: opPoison, id: id, metadata: meta})
}

// Republished records that a payload was published again, and
// when Due may offer it next. Asynchronous, like Forget.
func (o *Outbox) Republished(e Entry) {
	wait := o.cfg.RedeliverAfter << min(e.Republished+1, 6)
	next := time.Now().Add(wait).UnixNano()
	_ = o.send(context.Background(), &op{kind: opPostpone, id: e.ID, nextAt: next})
}

// Failing reports since when the outbox's writes fail, and the last error;
// a zero time while they succeed. Cleared by the next write that succeeds
// (an append's, or the outbox's own probe, every Config.ProbeEvery while
// failing). The readiness probe reads it: while appends cannot be written,
// every POST would get 503.
func (o *Outbox) Failing() (since time.Time, err error) {
	st := o.writes.State()
	return st.Since, st.Err
}

// Flush waits until every operation sent before it is written.
func (o *Outbox) Flush(ctx context.Context) error {
	return o.sendWait(ctx, &op{kind: opFlush, done: make(chan struct{})})
}

// sendWait sends x, which must have a done channel, and waits until it is
// written or ctx ends.
func (o *Outbox) sendWait(ctx context.Context, x *op) error {
	if err := o.send(ctx, x); err != nil {
		return err
	}
	select {
	case <-x.done:
		return x.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrClosed is wrapped with the file's name; errors.Is(err, ErrClosed)
// still holds.
func (o *Outbox) closedErr() error {
	return fmt.Errorf("outbox %s: %w", o.cfg.Path, ErrClosed)
}

func (o *Outbox) send(ctx context.Context, x *op) error {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		return o.closedErr()
	}
	select {
	case o.ops <- x:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("outbox %s: %w", o.cfg.Path, ctx.Err())
	}
}

// writer is the one goroutine that writes: it takes whatever operations
// are waiting, up to MaxBatch, and writes them in one transaction, so
// concurrent appends share one fsync.
func (o *Outbox) writer() {
	defer close(o.stopped)
	batch := make([]*op, 0, o.cfg.MaxBatch)
	// shared: the last commit carried more than one operation, so more
	// are likely on the way.
	shared := false
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	// probe is armed while writes fail: recovery shows even when no
	// append comes.
	probe := time.NewTimer(time.Hour)
	probe.Stop()
	probing := false
	for {
		if !probing && o.failing() {
			probe.Reset(o.cfg.ProbeEvery)
			probing = true
		}
		var first *op
		select {
		case first = <-o.ops:
		case <-probe.C:
			probing = false
			if o.failing() {
				o.writeBatch([]*op{{kind: opProbe}})
			}
			continue
		case <-o.closing:
			// Close holds mu, so nothing more arrives: write what is queued.
			batch = batch[:0]
			for {
				select {
				case x := <-o.ops:
					batch = append(batch, x)
					if len(batch) == o.cfg.MaxBatch {
						o.writeBatch(batch)
						batch = batch[:0]
					}
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				o.writeBatch(batch)
			}
			return
		}
		batch = o.collect(batch[:0], first, shared, linger)
		shared = len(batch) > 1
		o.writeBatch(batch)
	}
}

// collect is the batch that starts with first: first, what is waiting, and,
// when the last commit was shared, what arrives within Config.Linger; at
// most MaxBatch operations. timer is the writer's, stopped.
func (o *Outbox) collect(batch []*op, first *op, shared bool, timer *time.Timer) []*op {
	batch = append(batch, first)
	for len(batch) < o.cfg.MaxBatch {
		select {
		case x := <-o.ops:
			batch = append(batch, x)
			continue
		default:
		}
		break
	}
	if !shared || len(batch) == o.cfg.MaxBatch || o.cfg.Linger <= 0 {
		return batch
	}
	timer.Reset(o.cfg.Linger)
	defer timer.Stop()
	for len(batch) < o.cfg.MaxBatch {
		select {
		case x := <-o.ops:
			batch = append(batch, x)
		case <-timer.C:
			return batch
		case <-o.closing:
			return batch
		}
	}
	return batch
}

// failing is whether the last write failed.
func (o *Outbox) failing() bool {
	return o.writes.State().Failing()
}

func (o *Outbox) writeBatch(batch []*op) {
	err := o.writeTx(batch)
	// Logged once when writes start failing, then as a count per LogEvery,
	// then once when they succeed again: a full disk fails every batch.
	if err != nil {
		// Wrapped once per failed batch, never on the way of a success.
		if isDamage(err) {
			err = &DamagedError{Path: o.cfg.Path, Detail: err.Error(), Err: err}
		} else {
			err = fmt.Errorf("outbox %s: write: %w", o.cfg.Path, err)
		}
		o.writes.Fail(err)
	} else {
		o.writes.OK()
	}
	for _, x := range batch {
		if x.done != nil {
			x.err = err
			close(x.done)
		}
	}
}

func (o *Outbox) writeTx(batch []*op) error {
	ctx := context.Background()
	tx, err := o.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	now := time.Now().UTC().Format(time.RFC3339Nano)
	next := time.Now().Add(o.cfg.RedeliverAfter).UnixNano()
	for i := 0; i < len(batch); {
		x := batch[i]
		switch x.kind {
		case opAppend, opForget:
			// A run of appends (or of forgets) is written a chunk of rows
			// per statement: each statement costs modernc's SQLite a
			// prepare-bind-step-reset round, and one per payload was most
			// of the outbox's CPU. Runs keep the batch's order, so an
			// append and its forget in one batch still end forgotten.
			j := i + 1
			for j < len(batch) && batch[j].kind == x.kind {
				j++
			}
			if err := o.writeRows(ctx, tx, x.kind, batch[i:j], now, next); err != nil {
				return err
			}
			i = j
			continue
		case opPoison:
			_, err = o.exec(ctx, tx, "poison", x.metadata, next, x.id)
		case opPostpone:
			_, err = o.exec(ctx, tx, "postpone", x.nextAt, x.id)
		case opProbe:
			// A row about a payload's size, taken back in the same
			// transaction: the commit writes pages as an append does, and
			// leaves nothing behind.
			if _, err = o.exec(ctx, tx, "probe", probeID, probeBytes); err == nil {
				_, err = o.exec(ctx, tx, "unprobe", probeID)
			}
		}
		if err != nil {
			return err
		}
		i++
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	o.commits.Add(1)
	return nil
}

// probeID and probeBytes are the probe's row: an id no payload has, and a
// body about the size of a small payload.
const (
	probeID    = "\x00probe"
	probeBytes = 4096
)

// rowChunks are the statement sizes a run of rows is split into, largest
// first, so that a handful of prepared statements serve every run length.
var rowChunks = []int{64, 16, 4, 1}

func (o *Outbox) writeRows(ctx context.Context, tx *sql.Tx, kind opKind, run []*op, now string, next int64) error {
	for len(run) > 0 {
		n := rowChunks[len(rowChunks)-1]
		for _, c := range rowChunks {
			if c <= len(run) {
				n = c
				break
			}
		}
		chunk := run[:n]
		run = run[n:]
		var err error
		if kind == opAppend {
			args := make([]any, 0, 5*n)
			for _, x := range chunk {
				args = append(args, x.id, x.payload, x.metadata, now, next)
			}
			_, err = o.exec(ctx, tx, "append"+strconv.Itoa(n), args...)
		} else {
			args := make([]any, 0, n)
			for _, x := range chunk {
				args = append(args, x.id)
			}
			_, err = o.exec(ctx, tx, "forget"+strconv.Itoa(n), args...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeStatements are the writer's statements by name, prepared once at
// Open: the writer is the outbox's only writing goroutine and holds its
// only connection, so a statement prepared later, while a transaction holds
// that connection, would wait for it forever.
func writeStatements() map[string]string {
	q := map[string]string{
		// The poison index has RedeliverAfter to take it before the
		// overdue sweep publishes it to the poison topic again.
		"poison":   `UPDATE outbox SET state = 'poisoned', metadata = ?, next_at = ?, republished = 0 WHERE id = ?`,
		"postpone": `UPDATE outbox SET next_at = ?, republished = republished + 1 WHERE id = ?`,
		"probe":    `INSERT OR REPLACE INTO outbox (id, state, payload, metadata, appended_at, next_at) VALUES (?, 'probe', zeroblob(?), 'null', '', 0)`,
		"unprobe":  `DELETE FROM outbox WHERE id = ?`,
	}
	for _, n := range rowChunks {
		q["append"+strconv.Itoa(n)] = `INSERT INTO outbox (id, state, payload, metadata, appended_at, next_at) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, 'pending', ?, ?, ?, ?), ", n), ", ") + ` ON CONFLICT (id) DO NOTHING`
		q["forget"+strconv.Itoa(n)] = `DELETE FROM outbox WHERE id IN (` + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + `)`
	}
	return q
}

func (o *Outbox) exec(ctx context.Context, tx *sql.Tx, name string, args ...any) (sql.Result, error) {
	return tx.StmtContext(ctx, o.stmts[name]).ExecContext(ctx, args...)
}

// Each calls fn for every entry in state, oldest first, and stops at fn's
// first error.
func (o *Outbox) Each(ctx context.Context, state State, fn func(Entry) error) error {
	return o.each(ctx, fn, `SELECT id, payload, metadata, republished, state, appended_at FROM outbox WHERE state = ? ORDER BY seq`, string(state))
}

// Due calls fn, oldest first, for every entry in state that has waited
// past its time (Config.RedeliverAfter, doubled per republish): a message
// the Pub/Sub lost, or holds out of reach, while this process runs. A
// poisoned entry waits from when it was poisoned.
func (o *Outbox) Due(ctx context.Context, state State, fn func(Entry) error) error {
	now := time.Now().UnixNano()
	return o.each(ctx, fn, `SELECT id, payload, metadata, republished, state, appended_at FROM outbox
		WHERE state = ? AND next_at <= ? ORDER BY seq`, string(state), now)
}

func (o *Outbox) each(ctx context.Context, fn func(Entry) error, query string, args ...any) error {
	rows, err := o.read.QueryContext(ctx, query, args...)
	if err != nil {
		return o.readErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		var meta, state, appended string
		if err := rows.Scan(&e.ID, &e.Payload, &meta, &e.Republished, &state, &appended); err != nil {
			return o.readErr(err)
		}
		e.AppendedAt, _ = time.Parse(time.RFC3339Nano, appended)
		e.State = State(state)
		if err := json.Unmarshal([]byte(meta), &e.Metadata); err != nil {
			return fmt.Errorf("outbox %s: entry %s: metadata: %w", o.cfg.Path, e.ID, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return o.readErr(err)
	}
	return nil
}

// readErr names the file in a read's error; damage found while running
// is a *DamagedError, which says how to salvage the outbox.
func (o *Outbox) readErr(err error) error {
	if isDamage(err) {
		return &DamagedError{Path: o.cfg.Path, Detail: err.Error(), Err: err}
	}
	return fmt.Errorf("outbox %s: read: %w", o.cfg.Path, err)
}

// Count returns how many entries are in each state.
func (o *Outbox) Count(ctx context.Context) (map[State]int, error) {
	rows, err := o.read.QueryContext(ctx, `SELECT state, count(*) FROM outbox GROUP BY state`)
	if err != nil {
		return nil, o.readErr(err)
	}
	defer rows.Close()
	counts := map[State]int{Pending: 0, Poisoned: 0}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, o.readErr(err)
		}
		counts[State(s)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, o.readErr(err)
	}
	return counts, nil
}

// Close writes what is queued and closes the file.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	close(o.closing)
	o.mu.Unlock()
	<-o.stopped
	var errs []error
	for _, s := range o.stmts {
		errs = append(errs, s.Close())
	}
	if err := errors.Join(append(errs, o.write.Close(), o.read.Close())...); err != nil {
		return fmt.Errorf("outbox %s: close: %w", o.cfg.Path, err)
	}
	return nil
}
