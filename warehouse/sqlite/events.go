package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// The events log is one table. Times are unix nanoseconds (NULL for a zero
// time), so they sort as numbers; tables and attributes are JSON text. The
// index on (payload_id, generation, kind_rank, at) is the payload_id index
// and, read backwards, a payload's events latest first (Event.Before).
var (
	eventsTable = quoteIdent(warehouse.EventsTable)

	createEventsSQL = "CREATE TABLE IF NOT EXISTS " + eventsTable + ` (
	event_id TEXT NOT NULL PRIMARY KEY,
	payload_id TEXT NOT NULL,
	kind TEXT NOT NULL,
	kind_rank INTEGER NOT NULL,
	generation INTEGER NOT NULL,
	at INTEGER NOT NULL,
	error_class TEXT NOT NULL,
	reason TEXT NOT NULL,
	tables TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	first_failure_at INTEGER,
	last_failure_at INTEGER,
	received_at INTEGER,
	correlation_id TEXT NOT NULL,
	attributes TEXT NOT NULL,
	payload BLOB,
	actor TEXT NOT NULL)`
	createEventsIndexSQL = "CREATE INDEX IF NOT EXISTS " + quoteIdent(warehouse.EventsTable+"_payload") +
		" ON " + eventsTable + " (payload_id, generation, kind_rank, at)"

	// eventColumns are an Event's columns in the order scanEvent reads them.
	eventColumns = []string{"event_id", "payload_id", "kind", "generation", "at", "error_class", "reason",
		"tables", "attempts", "first_failure_at", "last_failure_at", "received_at", "correlation_id",
		"attributes", "payload", "actor"}

	// An event already in the log is skipped: a redelivered poison message
	// is indexed once.
	eventInsertSQL = "INSERT INTO " + eventsTable + " (" + strings.Join(eventColumns, ", ") +
		", kind_rank) VALUES (" + strings.Repeat("?, ", len(eventColumns)) + "?) ON CONFLICT (event_id) DO NOTHING"
)

func eventColumnList(alias string) string {
	cols := make([]string, len(eventColumns))
	for i, c := range eventColumns {
		cols[i] = alias + "." + c
	}
	return strings.Join(cols, ", ")
}

// briefColumnList is eventColumnList with NULL for the attributes and the
// payload (EventFilter.Brief).
func briefColumnList(alias string) string {
	cols := make([]string, len(eventColumns))
	for i, c := range eventColumns {
		cols[i] = alias + "." + c
		if c == "attributes" || c == "payload" {
			cols[i] = "NULL"
		}
	}
	return strings.Join(cols, ", ")
}

func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// eventArgs are e's values for eventInsertSQL.
func eventArgs(e warehouse.Event) ([]any, error) {
	tables := e.Tables
	if tables == nil {
		tables = []string{}
	}
	tablesJSON, err := json.Marshal(tables)
	if err != nil {
		return nil, err
	}
	attrs := e.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrsJSON, err := json.Marshal(attrs)
	if err != nil {
		return nil, err
	}
	return []any{e.ID, e.PayloadID, string(e.Kind), e.Generation, e.At.UnixNano(), e.ErrorClass, e.Reason,
		string(tablesJSON), e.Attempts, nanos(e.FirstFailureAt), nanos(e.LastFailureAt), nanos(e.ReceivedAt),
		e.CorrelationID, string(attrsJSON), e.Payload, e.Actor, e.Kind.Rank()}, nil
}

// AppendEvents writes events in one transaction on the writer connection,
// skipping those whose ID the log holds. The rows are built before the
// writer is taken, so an Apply waits only for the inserts themselves.
func (w *Warehouse) AppendEvents(ctx context.Context, events []warehouse.Event) error {
	if len(events) == 0 {
		return nil
	}
	now := time.Now()
	args := make([][]any, len(events))
	for i, e := range events {
		if e.At.IsZero() {
			e.At = now
		}
		if err := e.Validate(); err != nil {
			return messages.Permanent(fmt.Errorf("append events: %w", err))
		}
		a, err := eventArgs(e)
		if err != nil {
			return messages.Permanent(fmt.Errorf("append events: event %q: %w", e.ID, err))
		}
		args[i] = a
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return messages.Transient(ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return messages.Transient(err)
	}
	if err := w.ensureConn(ctx); err != nil {
		return w.groupError(ctx, "connect", err)
	}
	if _, err := w.execFixed(ctx, "BEGIN IMMEDIATE"); err != nil {
		return w.groupError(ctx, "begin", err)
	}
	// As in Apply, the short inserts run without a cancellable context.
	quick := context.WithoutCancel(ctx)
	for _, a := range args {
		if err := ctx.Err(); err != nil {
			w.rollback(w.ddlCount)
			return messages.Transient(err)
		}
		if _, err := w.execFixed(quick, eventInsertSQL, a...); err != nil {
			err = w.groupError(ctx, "append events", err)
			w.rollback(w.ddlCount)
			return err
		}
	}
	if _, err := w.execFixed(quick, "COMMIT"); err != nil {
		err = w.groupError(ctx, "commit events", err)
		w.rollback(w.ddlCount)
		return err
	}
	return nil
}

// eventRow scans the columns eventColumnList names; every one may be NULL,
// as on the outer side of a join.
type eventRow struct {
	id, payloadID, kind, errorClass, reason, tables, correlationID, attributes, actor sql.NullString
	generation, at, attempts, firstFailureAt, lastFailureAt, receivedAt               sql.NullInt64
	payload                                                                           []byte
}

func (r *eventRow) dest() []any {
	return []any{&r.id, &r.payloadID, &r.kind, &r.generation, &r.at, &r.errorClass, &r.reason,
		&r.tables, &r.attempts, &r.firstFailureAt, &r.lastFailureAt, &r.receivedAt, &r.correlationID,
		&r.attributes, &r.payload, &r.actor}
}

func (r *eventRow) event() (warehouse.Event, error) {
	e := warehouse.Event{
		ID:             r.id.String,
		PayloadID:      r.payloadID.String,
		Kind:           warehouse.EventKind(r.kind.String),
		Generation:     int(r.generation.Int64),
		At:             fromNanos(r.at),
		ErrorClass:     r.errorClass.String,
		Reason:         r.reason.String,
		Attempts:       int(r.attempts.Int64),
		FirstFailureAt: fromNanos(r.firstFailureAt),
		LastFailureAt:  fromNanos(r.lastFailureAt),
		ReceivedAt:     fromNanos(r.receivedAt),
		CorrelationID:  r.correlationID.String,
		Actor:          r.actor.String,
	}
	if len(r.payload) > 0 {
		e.Payload = r.payload
	}
	if r.tables.Valid {
		if err := json.Unmarshal([]byte(r.tables.String), &e.Tables); err != nil {
			return e, fmt.Errorf("event %q: tables: %w", e.ID, err)
		}
		if len(e.Tables) == 0 {
			e.Tables = nil
		}
	}
	if r.attributes.Valid {
		if err := json.Unmarshal([]byte(r.attributes.String), &e.Attributes); err != nil {
			return e, fmt.Errorf("event %q: attributes: %w", e.ID, err)
		}
		if len(e.Attributes) == 0 {
			e.Attributes = nil
		}
	}
	return e, nil
}

// entriesSQL builds the query behind Entries and its arguments. The
// window ranks each payload's events latest first, as Event.Before does,
// and finds its first appearance (the order's key); it reads only columns
// of the payload index (kind_rank stands for kind: 0 is replayed, 1
// poisoned), so it never touches the rows themselves. The latest poisoning
// is a lookup in that index per entry; without a filter on it, only for the
// page of entries returned. The rows of the entries returned are read by
// rowid last. With another shape, the query counts the entries f selects
// instead, or groups them (FailureGroups), ignoring After and Limit.
func entriesSQL(f warehouse.EventFilter, shape querying) (string, []any) {
	count := shape != queryEntries
	var args []any
	var b strings.Builder
	b.WriteString(`WITH ranked AS (
	SELECT rowid AS rid, payload_id, kind_rank, at,
		ROW_NUMBER() OVER (PARTITION BY payload_id ORDER BY generation DESC, kind_rank DESC, at DESC) AS pos,
		SUM(kind_rank = 0) OVER (PARTITION BY payload_id) AS replays,
		MIN(at) OVER (PARTITION BY payload_id) AS first_at
	FROM ` + eventsTable)
	if len(f.PayloadIDs) > 0 {
		b.WriteString(" WHERE payload_id IN (" + placeholders(len(f.PayloadIDs)) + ")")
		for _, id := range f.PayloadIDs {
			args = append(args, id)
		}
	}
	b.WriteString(`
), latest AS (
	SELECT rid, payload_id, at, replays, first_at FROM ranked WHERE pos = 1`)
	states := f.States
	if len(states) == 0 {
		states = []warehouse.EventKind{warehouse.EventPoisoned}
	}
	b.WriteString(" AND kind_rank IN (" + placeholders(len(states)) + ")")
	for _, s := range states {
		args = append(args, s.Rank())
	}
	if !f.Since.IsZero() {
		b.WriteString(" AND at >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if !count && !f.After.IsZero() {
		b.WriteString(" AND (first_at < ? OR (first_at = ? AND payload_id > ?))")
		n := f.After.FirstAt.UnixNano()
		args = append(args, n, n, f.After.PayloadID)
	}
	limit := f.Limit
	if limit <= 0 || count {
		limit = -1 // SQLite: no limit
	}
	filtersPoisoned := f.Class != "" || f.Reason != "" || f.Table != "" || f.Backend != "" || f.Keyed || f.Search != ""
	if shape == queryCount && !filtersPoisoned {
		// Nothing to look up in the rows themselves.
		return b.String() + "\n) SELECT COUNT(*) FROM latest", args
	}
	b.WriteString(`
), page AS (
	SELECT * FROM latest`)
	if !filtersPoisoned {
		b.WriteString(" ORDER BY first_at DESC, payload_id LIMIT ?")
		args = append(args, limit)
	}
	if len(states) == 1 && states[0] == warehouse.EventPoisoned {
		// The latest event is poisoned: it is the latest poisoning.
		b.WriteString(`
), found AS (
	SELECT page.*, page.rid AS poisoned_rid FROM page
)
SELECT `)
	} else {
		b.WriteString(`
), found AS (
	SELECT page.*, (SELECT p.rowid FROM ` + eventsTable + ` p WHERE p.payload_id = page.payload_id AND p.kind_rank = 1
		ORDER BY p.generation DESC, p.kind_rank DESC, p.at DESC LIMIT 1) AS poisoned_rid
	FROM page
)
SELECT `)
	}
	switch shape {
	case queryCount:
		b.WriteString("COUNT(*)")
	case queryFailures:
		b.WriteString("p.error_class, p.tables, p.reason, COALESCE(p.last_failure_at, l.at), 1, found.payload_id")
	default:
		columns := eventColumnList
		if f.Brief {
			columns = briefColumnList
		}
		b.WriteString(columns("l") + `, found.replays, found.first_at, ` + columns("p"))
	}
	b.WriteString(`
FROM found JOIN ` + eventsTable + ` l ON l.rowid = found.rid
LEFT JOIN ` + eventsTable + ` p ON p.rowid = found.poisoned_rid
WHERE 1`)
	if f.Class != "" {
		b.WriteString(" AND p.error_class = ?")
		args = append(args, f.Class)
	}
	if f.Reason != "" {
		// LIKE folds ASCII case; the pattern's own wildcards are escaped.
		b.WriteString(` AND p.reason LIKE ? ESCAPE '\'`)
		args = append(args, "%"+likeEscaper.Replace(f.Reason)+"%")
	}
	if f.Table != "" {
		b.WriteString(" AND EXISTS (SELECT 1 FROM json_each(p.tables) WHERE json_each.value = ?)")
		args = append(args, f.Table)
	}
	if f.Backend != "" {
		b.WriteString(" AND json_extract(p.attributes, '$.backend') = ?")
		args = append(args, f.Backend)
	}
	if f.Keyed {
		b.WriteString(" AND COALESCE(json_extract(p.attributes, '$.ordering_key'), '') <> ''")
	}
	if f.Search != "" {
		// substr, not LIKE: a prefix whose case matters, taken as text.
		b.WriteString(" AND (substr(found.payload_id, 1, ?) = ? OR substr(p.correlation_id, 1, ?) = ?)")
		n := len([]rune(f.Search))
		args = append(args, n, f.Search, n, f.Search)
	}
	switch shape {
	case queryCount:
		return b.String(), args
	case queryFailures:
		// One group per entry: SQLite sorts strings to group them far
		// slower than the caller adds them up.
		return b.String(), args
	}
	b.WriteString(" ORDER BY found.first_at DESC, found.payload_id LIMIT ?")
	args = append(args, limit)
	return b.String(), args
}

// querying is what entriesSQL's query returns.
type querying int

const (
	queryEntries querying = iota
	queryCount
	queryFailures
)

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// Entries returns the entries f selects, in one query on a read connection.
func (w *Warehouse) Entries(ctx context.Context, f warehouse.EventFilter) ([]warehouse.Entry, error) {
	query, args := entriesSQL(f, queryEntries)
	rows, err := w.readDB.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read event entries: %w", err)
	}
	defer rows.Close()
	entries := []warehouse.Entry{}
	for rows.Next() {
		var latest, poisoned eventRow
		var replays int
		var firstAt sql.NullInt64
		dest := append(latest.dest(), &replays, &firstAt)
		dest = append(dest, poisoned.dest()...)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read event entries: %w", err)
		}
		e := warehouse.Entry{Replays: replays, FirstAt: fromNanos(firstAt)}
		if e.Latest, err = latest.event(); err != nil {
			return nil, fmt.Errorf("read event entries: %w", err)
		}
		e.State = e.Latest.Kind
		if poisoned.id.Valid {
			if e.Poisoned, err = poisoned.event(); err != nil {
				return nil, fmt.Errorf("read event entries: %w", err)
			}
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read event entries: %w", err)
	}
	return entries, nil
}

// CountSelected counts the entries f selects, in one query on a read
// connection.
func (w *Warehouse) CountSelected(ctx context.Context, f warehouse.EventFilter) (int, error) {
	query, args := entriesSQL(f, queryCount)
	var n int
	if err := w.readDB.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count event entries: %w", err)
	}
	return n, nil
}

// FailureGroups groups the entries f selects, in one query on a read
// connection.
func (w *Warehouse) FailureGroups(ctx context.Context, f warehouse.EventFilter) ([]warehouse.FailureGroup, error) {
	query, args := entriesSQL(f, queryFailures)
	rows, err := w.readDB.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read failures: %w", err)
	}
	defer rows.Close()
	out := []warehouse.FailureGroup{}
	tables := map[string][]string{}
	for rows.Next() {
		var class, tablesJSON, reason sql.NullString
		var at sql.NullInt64
		var n int
		var example string
		if err := rows.Scan(&class, &tablesJSON, &reason, &at, &n, &example); err != nil {
			return nil, fmt.Errorf("read failures: %w", err)
		}
		ts, ok := tables[tablesJSON.String]
		if !ok && tablesJSON.Valid {
			if err := json.Unmarshal([]byte(tablesJSON.String), &ts); err != nil {
				return nil, fmt.Errorf("read failures: tables: %w", err)
			}
			if len(ts) == 0 {
				ts = nil
			}
			tables[tablesJSON.String] = ts
		}
		out = append(out, warehouse.FailureGroup{ErrorClass: class.String, Tables: ts, Reason: reason.String, At: fromNanos(at), Count: n, Example: example})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read failures: %w", err)
	}
	return out, nil
}

var historySQL = "SELECT " + eventColumnList(eventsTable) + " FROM " + eventsTable +
	" WHERE payload_id = ? ORDER BY generation, kind_rank, at"

// History returns the payload's events, oldest first.
func (w *Warehouse) History(ctx context.Context, payloadID string) ([]warehouse.Event, error) {
	rows, err := w.readDB.QueryContext(ctx, historySQL, payloadID)
	if err != nil {
		return nil, fmt.Errorf("read history of %q: %w", payloadID, err)
	}
	defer rows.Close()
	events := []warehouse.Event{}
	for rows.Next() {
		var r eventRow
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, fmt.Errorf("read history of %q: %w", payloadID, err)
		}
		e, err := r.event()
		if err != nil {
			return nil, fmt.Errorf("read history of %q: %w", payloadID, err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read history of %q: %w", payloadID, err)
	}
	return events, nil
}

// stateSQL reads the ledger row and the events of one payload in one
// statement: the first column tells the ledger's row (1) from events (0).
var stateSQL = "SELECT 1, applied_at, rows_affected" + strings.Repeat(", NULL", len(eventColumns)) +
	" FROM " + quoteIdent(warehouse.LedgerTable) + " WHERE payload_id = ?" +
	" UNION ALL SELECT 0, NULL, NULL, " + eventColumnList(eventsTable) + " FROM " + eventsTable + " WHERE payload_id = ?"

// State reads the payload's ledger row and events in one query on a read
// connection.
func (w *Warehouse) State(ctx context.Context, payloadID string) (warehouse.PayloadState, error) {
	state := warehouse.PayloadState{RowsAffected: -1}
	rows, err := w.readDB.QueryContext(ctx, stateSQL, payloadID, payloadID)
	if err != nil {
		return state, fmt.Errorf("read state of %q: %w", payloadID, err)
	}
	defer rows.Close()
	var events []warehouse.Event
	for rows.Next() {
		var ledger bool
		var appliedAt sql.NullString
		var rowsAffected sql.NullInt64
		var r eventRow
		if err := rows.Scan(append([]any{&ledger, &appliedAt, &rowsAffected}, r.dest()...)...); err != nil {
			return state, fmt.Errorf("read state of %q: %w", payloadID, err)
		}
		if ledger {
			state.Applied = true
			if state.AppliedAt, err = time.Parse(time.RFC3339Nano, appliedAt.String); err != nil {
				return state, fmt.Errorf("read state of %q: applied_at: %w", payloadID, err)
			}
			if rowsAffected.Valid {
				state.RowsAffected = rowsAffected.Int64
			}
			continue
		}
		e, err := r.event()
		if err != nil {
			return state, fmt.Errorf("read state of %q: %w", payloadID, err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return state, fmt.Errorf("read state of %q: %w", payloadID, err)
	}
	state.Entry = warehouse.EntryOf(events)
	return state, nil
}

var countEntriesSQL = `SELECT kind_rank, COUNT(*), MIN(at) FROM (
	SELECT kind_rank, at, ROW_NUMBER() OVER (PARTITION BY payload_id ORDER BY generation DESC, kind_rank DESC, at DESC) AS pos
	FROM ` + eventsTable + `) WHERE pos = 1 GROUP BY kind_rank`

// CountEntries counts payloads by state.
func (w *Warehouse) CountEntries(ctx context.Context) (map[warehouse.EventKind]warehouse.StateCount, error) {
	rows, err := w.readDB.QueryContext(ctx, countEntriesSQL)
	if err != nil {
		return nil, fmt.Errorf("count event entries: %w", err)
	}
	defer rows.Close()
	return scanCounts(rows)
}

func scanCounts(rows *sql.Rows) (map[warehouse.EventKind]warehouse.StateCount, error) {
	counts := map[warehouse.EventKind]warehouse.StateCount{}
	for _, k := range warehouse.EventKinds {
		counts[k] = warehouse.StateCount{}
	}
	for rows.Next() {
		var rank, n int
		var oldest int64
		if err := rows.Scan(&rank, &n, &oldest); err != nil {
			return nil, fmt.Errorf("count event entries: %w", err)
		}
		for _, k := range warehouse.EventKinds {
			if k.Rank() == rank {
				counts[k] = warehouse.StateCount{Entries: n, Oldest: time.Unix(0, oldest).UTC()}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count event entries: %w", err)
	}
	return counts, nil
}

var (
	acksTable     = quoteIdent(warehouse.AcksTable)
	createAcksSQL = "CREATE TABLE IF NOT EXISTS " + acksTable + ` (
	cause TEXT NOT NULL,
	acknowledged INTEGER NOT NULL,
	at INTEGER NOT NULL,
	actor TEXT NOT NULL)`
	// The latest row of each cause; rowid breaks a tie of clocks.
	causeAcksSQL = `SELECT cause, acknowledged, at, actor FROM (
	SELECT *, ROW_NUMBER() OVER (PARTITION BY cause ORDER BY at DESC, rowid DESC) AS pos FROM ` + acksTable + `) WHERE pos = 1`
)

// AcknowledgeCause appends ack on the writer connection.
func (w *Warehouse) AcknowledgeCause(ctx context.Context, ack warehouse.CauseAck) error {
	if ack.Cause == "" {
		return messages.Permanent(errors.New("acknowledge: no cause"))
	}
	if ack.At.IsZero() {
		ack.At = time.Now()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return messages.Transient(ErrClosed)
	}
	if err := w.ensureConn(ctx); err != nil {
		return w.groupError(ctx, "connect", err)
	}
	if _, err := w.execFixed(ctx, "INSERT INTO "+acksTable+" (cause, acknowledged, at, actor) VALUES (?, ?, ?, ?)",
		ack.Cause, ack.Acknowledged, ack.At.UnixNano(), ack.Actor); err != nil {
		return w.groupError(ctx, "acknowledge", err)
	}
	return nil
}

// CauseAcks reads each cause's latest ack on a read connection.
func (w *Warehouse) CauseAcks(ctx context.Context) (map[string]warehouse.CauseAck, error) {
	rows, err := w.readDB.QueryContext(ctx, causeAcksSQL)
	if err != nil {
		return nil, fmt.Errorf("read acks: %w", err)
	}
	defer rows.Close()
	acks := map[string]warehouse.CauseAck{}
	for rows.Next() {
		var a warehouse.CauseAck
		var at int64
		if err := rows.Scan(&a.Cause, &a.Acknowledged, &at, &a.Actor); err != nil {
			return nil, fmt.Errorf("read acks: %w", err)
		}
		a.At = time.Unix(0, at).UTC()
		acks[a.Cause] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read acks: %w", err)
	}
	return acks, nil
}
