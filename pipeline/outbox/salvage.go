package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// SalvageOptions configures Salvage.
type SalvageOptions struct {
	// DryRun reads and counts, and writes nothing.
	DryRun bool
	// Sync is the new outbox's (see Config.Sync). Optional, default full.
	Sync string
	// Now stamps the damaged file's new name. Optional, default time.Now.
	Now func() time.Time
}

// SalvageReport says what Salvage found and did.
type SalvageReport struct {
	// Path is the outbox; after a salvage, the new one.
	Path string
	// DamagedPath is where the damaged file was moved ("" on a dry run).
	DamagedPath string
	// Damage is what SQLite's quick_check said ("ok" when it found none).
	Damage string
	// Identity is the damaged outbox's identity, kept by the new one.
	// NewIdentity: it could not be read, and Identity is the new outbox's
	// own ("" on a dry run), which the record of the old one will not match.
	Identity    string
	NewIdentity bool
	// Saved counts the entries read (and, unless a dry run, written to
	// the new outbox), by state.
	Saved map[State]int
	// Unreadable counts the entries known to be in the file that could
	// not be read. When UnreadableKnown is false the file lost rows that
	// nothing counts (its index is damaged too, or cut off): Unreadable is
	// then only a lower bound.
	Unreadable      int
	UnreadableKnown bool
	// FailedRows counts the row numbers whose reading failed: each was an
	// entry, or a gap left by one already settled.
	FailedRows int
	// LastRow is the highest row number ever used, as SQLite's
	// sqlite_sequence still tells it (rows are numbered in append order,
	// never reused); 0 when it could not be read.
	LastRow int64
}

// MostUnreadable is the most entries that can have been lost: every row
// number up to LastRow that was not saved; -1 when LastRow is unknown.
func (r SalvageReport) MostUnreadable() int {
	if r.LastRow == 0 {
		return -1
	}
	return max(int(r.LastRow)-r.SavedTotal(), r.Unreadable)
}

// SavedTotal is the number of entries saved.
func (r SalvageReport) SavedTotal() int {
	n := 0
	for _, c := range r.Saved {
		n += c
	}
	return n
}

// salvagedRow is one outbox row as read from the damaged file.
type salvagedRow struct {
	seq                           int64
	id, state, metadata, appended string
	payload                       []byte
	nextAt, republished           int64
}

// Salvage reads every entry it still can out of a damaged outbox at path
// and, unless opts.DryRun, writes them to a new outbox at path with the
// same identity (so that the service accepts it as the outbox it had),
// after moving the damaged file aside to path.damaged-TIMESTAMP. It reads
// row by row around damaged pages: ranges of row numbers, halved around
// every error down to single rows, so one bad page costs only its rows.
// A file quick_check finds sound is left alone. Salvage works on a file no
// process has open; the service must be stopped.
func Salvage(ctx context.Context, path string, opts SalvageOptions) (SalvageReport, error) {
	rep := SalvageReport{Path: path, Saved: map[State]int{Pending: 0, Poisoned: 0}}
	if opts.Sync == "" {
		opts.Sync = "full"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return rep, fmt.Errorf("outbox %s: no such file, so nothing to salvage. If it was deleted, restore it from a copy; "+
			"if it is lost, start the service with --outbox-accept-loss (OUTBOX_ACCEPT_LOSS=true) to accept that the payloads waiting in it are lost", path)
	case err != nil:
		return rep, fmt.Errorf("outbox %s: %w", path, err)
	case info.Size() == 0:
		return rep, fmt.Errorf("outbox %s: the file is empty, so nothing to salvage. Restore it from a copy, "+
			"or start the service with --outbox-accept-loss (OUTBOX_ACCEPT_LOSS=true) to accept that the payloads waiting in it are lost", path)
	}
	rows, err := readDamaged(ctx, path, &rep)
	if err != nil {
		return rep, err
	}
	for _, r := range rows {
		rep.Saved[State(r.state)]++
	}
	if opts.DryRun || rep.Damage == "ok" {
		// A file quick_check passes is left as it is: copying it would
		// gain nothing.
		rep.NewIdentity = rep.Identity == ""
		return rep, nil
	}

	// The new outbox is written beside the old one and takes its place
	// only once complete: a salvage that fails halfway leaves the damaged
	// file where it was.
	stamp := opts.Now().UTC().Format("20060102T150405Z")
	fresh := path + ".salvage-" + stamp
	for _, p := range []string{fresh, fresh + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return rep, fmt.Errorf("outbox %s: %w", path, err)
		}
	}
	rep.NewIdentity = rep.Identity == ""
	identity, err := writeSalvaged(ctx, fresh, rep.Identity, rows)
	if err != nil {
		_ = os.Remove(fresh)
		return rep, fmt.Errorf("outbox %s: writing the salvaged entries to %s: %w", path, fresh, err)
	}
	rep.Identity = identity
	rep.DamagedPath = path + ".damaged-" + stamp
	for _, suffix := range []string{"", "-wal", "-shm"} {
		err := os.Rename(path+suffix, rep.DamagedPath+suffix)
		if err != nil && (suffix == "" || !errors.Is(err, os.ErrNotExist)) {
			return rep, fmt.Errorf("outbox %s: moving the damaged file aside to %s: %w (the salvaged entries are in %s)",
				path, rep.DamagedPath+suffix, err, fresh)
		}
	}
	if err := os.Rename(fresh, path); err != nil {
		return rep, fmt.Errorf("outbox %s: putting the salvaged outbox %s in its place: %w", path, fresh, err)
	}
	return rep, nil
}

// readDamaged reads the identity and every readable row of the outbox at
// path, and fills rep's Damage, Identity and the unreadable counts.
func readDamaged(ctx context.Context, path string, rep *SalvageReport) ([]salvagedRow, error) {
	// writable_schema lets SQLite read a file shorter than its header
	// says (a truncated one) up to where it ends, instead of refusing it
	// whole; query_only keeps it from writing anything.
	db, err := sql.Open("sqlite", dsn(path, "_pragma=query_only(1)", "_pragma=writable_schema(1)"))
	if err != nil {
		return nil, fmt.Errorf("outbox %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rep.Damage = "ok"
	if err := quickCheck(ctx, db); err != nil {
		rep.Damage = err.Error()
	}
	if id, err := metaIdentity(ctx, db); err == nil && id != "" {
		rep.Identity = id
	} else if id, err := headerIdentity(ctx, db); err == nil {
		rep.Identity = id
	}

	// The entries the file is known to hold: the unique index on id keeps
	// every entry's row number apart from the table's own pages, so a
	// covering scan of it counts entries whose rows are lost. A damaged
	// or cut index leaves the count a lower bound.
	known := map[int64]bool{}
	knownComplete := true
	if err := scanInts(ctx, db, `SELECT seq FROM outbox INDEXED BY sqlite_autoindex_outbox_1 WHERE id IS NOT NULL`, func(seq int64) {
		known[seq] = true
	}); err != nil {
		knownComplete = false
	}
	// How far to look: the highest row number anything still tells.
	var last int64
	for seq := range known {
		last = max(last, seq)
	}
	for i, q := range []string{
		// AUTOINCREMENT's record of the highest row number ever used: the
		// only bound on what the file held.
		`SELECT seq FROM sqlite_sequence WHERE name = 'outbox'`,
		`SELECT max(seq) FROM outbox`,
	} {
		var n sql.NullInt64
		if err := db.QueryRowContext(ctx, q).Scan(&n); err == nil && n.Valid {
			last = max(last, n.Int64)
			if i == 0 {
				rep.LastRow = n.Int64
			}
		} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
			knownComplete = false
		}
	}

	var rows []salvagedRow
	var failed []int64
	const chunk = 1024
	for lo := int64(1); lo <= last; lo += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		readRange(ctx, db, lo, min(lo+chunk-1, last), &rows, &failed)
	}
	got := make(map[int64]bool, len(rows))
	for _, r := range rows {
		got[r.seq] = true
	}
	for seq := range known {
		if !got[seq] {
			rep.Unreadable++
		}
	}
	rep.FailedRows = len(failed)
	// Without a complete index, a failed row number may have been an
	// entry the index no longer lists, and rows past the last number
	// anything tells are not even tried: Unreadable is a lower bound.
	rep.UnreadableKnown = knownComplete
	slices.SortFunc(rows, func(a, b salvagedRow) int { return int(a.seq - b.seq) })
	return rows, nil
}

// readRange reads rows lo..hi into rows; a range that fails is halved,
// from the first row not yet read, down to single rows, whose failures
// land in failed.
func readRange(ctx context.Context, db *sql.DB, lo, hi int64, rows *[]salvagedRow, failed *[]int64) {
	next, err := queryRange(ctx, db, lo, hi, rows)
	if err == nil || next > hi || ctx.Err() != nil {
		return
	}
	if next == hi {
		*failed = append(*failed, hi)
		return
	}
	// next <= mid < hi: both halves are smaller than lo..hi.
	mid := next + (hi-next)/2
	readRange(ctx, db, next, mid, rows, failed)
	readRange(ctx, db, mid+1, hi, rows, failed)
}

// queryRange appends the rows lo..hi it can read; on an error it returns
// the first row number not yet known to be read.
func queryRange(ctx context.Context, db *sql.DB, lo, hi int64, out *[]salvagedRow) (next int64, err error) {
	next = lo
	rs, err := db.QueryContext(ctx, `SELECT seq, id, state, payload, metadata, appended_at, next_at, republished
		FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq`, lo, hi)
	if err != nil {
		return next, err
	}
	defer rs.Close()
	for rs.Next() {
		var r salvagedRow
		if err := rs.Scan(&r.seq, &r.id, &r.state, &r.payload, &r.metadata, &r.appended, &r.nextAt, &r.republished); err != nil {
			return next, err
		}
		var meta map[string]string
		if State(r.state) != Pending && State(r.state) != Poisoned || json.Unmarshal([]byte(r.metadata), &meta) != nil {
			// Bytes that read but make no entry: damage inside a page.
			return next, fmt.Errorf("row %d is not an entry", r.seq)
		}
		*out = append(*out, r)
		next = r.seq + 1
	}
	if err := rs.Err(); err != nil {
		return next, err
	}
	return hi + 1, nil
}

func scanInts(ctx context.Context, db *sql.DB, query string, fn func(int64)) error {
	rs, err := db.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		var n int64
		if err := rs.Scan(&n); err != nil {
			return err
		}
		fn(n)
	}
	return rs.Err()
}

func metaIdentity(ctx context.Context, db *sql.DB) (string, error) {
	var id string
	err := db.QueryRowContext(ctx, `SELECT value FROM outbox_meta WHERE key = 'identity'`).Scan(&id)
	return id, err
}

// writeSalvaged writes rows, with their row numbers, to a new outbox at
// path with identity (a new one when ""), and returns the identity.
func writeSalvaged(ctx context.Context, path, identity string, rows []salvagedRow) (string, error) {
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return "", err
	}
	db.SetMaxOpenConns(1)
	defer db.Close()
	if _, err := db.ExecContext(ctx, createOutboxSQL); err != nil {
		return "", err
	}
	if identity, err = ensureIdentity(ctx, db, identity); err != nil {
		return "", err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO outbox (seq, id, state, payload, metadata, appended_at, next_at, republished)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
	if err != nil {
		return "", err
	}
	defer stmt.Close()
	for _, r := range rows {
		if _, err := stmt.ExecContext(ctx, r.seq, r.id, r.state, r.payload, r.metadata, r.appended, r.nextAt, r.republished); err != nil {
			return "", err
		}
	}
	if err := tx.Commit(); err != nil {
		return "", err
	}
	if err := quickCheck(ctx, db); err != nil {
		return "", err
	}
	return identity, db.Close()
}
