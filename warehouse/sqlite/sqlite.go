// Package sqlite is the embedded warehouse: a single SQLite file, written
// through modernc.org/sqlite (pure Go, no cgo). It is gatekeeper's default
// and the reference the conformance suite in warehouse/warehousetest is first
// proven against.
//
// Writes go through one connection, because SQLite has one writer anyway and
// a single connection lets prepared statements and the schema cache be
// reused without coordination. Reads (the warehouse.Reader methods) use a
// separate pool of read-only connections; in WAL mode they see the last
// committed state and never block the writer.
//
// Deletes name an arbitrary column set and SQLite has no index a delete
// could use, so without help each delete scans its whole table and the cost
// of a payload grows with the table. The adapter therefore creates an index
// on the column set of each delete the first time it sees it (at most eight
// per table; see Config.DisableDeleteIndexes), inside the payload's
// transaction. Every user gets these indexes, the benchmark included; they
// cost a little on each insert and make each delete a lookup.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// ErrClosed is returned, classified transient, by calls after Close.
var ErrClosed = errors.New("sqlite warehouse closed")

const (
	savepointName = "gatekeeper_payload"
	// deleteIndexPrefix starts with the prefix the gate reserves for
	// gatekeeper, so an index name can never collide with a user's table
	// (SQLite keeps tables and indexes in one namespace).
	deleteIndexPrefix        = "_gatekeeper_del_"
	maxDeleteIndexesPerTable = 8
)

var (
	// rows_affected and payload_hash are NULL in rows written before the
	// columns existed; payload_hash is also NULL for a payload that came
	// without one.
	createLedgerSQL = "CREATE TABLE IF NOT EXISTS " + quoteIdent(warehouse.LedgerTable) +
		" (payload_id TEXT NOT NULL PRIMARY KEY, applied_at TEXT NOT NULL, rows_affected INTEGER, payload_hash TEXT) WITHOUT ROWID"
	ledgerHasColumnSQL = "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?) WHERE name = ?)"
	// The ledger row is inserted last in the payload's savepoint, after its
	// activities, so it carries the rows they affected without a second
	// write of the row. A conflict means the payload is a duplicate: rolling
	// the savepoint back undoes its activities. A payload that fails before
	// (check or execute) is looked up in the ledger before it is rejected,
	// so a duplicate is always reported as one.
	ledgerInsertSQL = "INSERT INTO " + quoteIdent(warehouse.LedgerTable) +
		" (payload_id, applied_at, rows_affected, payload_hash) VALUES (?, ?, ?, ?) ON CONFLICT (payload_id) DO NOTHING"
	ledgerLookupSQL = "SELECT EXISTS (SELECT 1 FROM " + quoteIdent(warehouse.LedgerTable) + " WHERE payload_id = ?)"
	// ledgerHashSQL tells a payload in the ledger (a row, its hash possibly
	// NULL) from one that is not (no row).
	ledgerHashSQL = "SELECT COALESCE(payload_hash, '') FROM " + quoteIdent(warehouse.LedgerTable) + " WHERE payload_id = ?"
)

// ledgerColumns are the ledger's columns added after it was first
// released, with their types, in the order they were added.
var ledgerColumns = []struct{ name, typ string }{
	{"rows_affected", "INTEGER"},
	{"payload_hash", "TEXT"},
}

var _ warehouse.Store = (*Warehouse)(nil)

// Warehouse is the SQLite adapter. It implements warehouse.Warehouse,
// warehouse.Reader and warehouse.EventLog.
type Warehouse struct {
	cfg     Config
	logger  *slog.Logger
	writeDB *sql.DB
	readDB  *sql.DB
	// probeDB is one connection Ping takes the write lock on, briefly, to
	// prove the apply stage's path is open: WAL keeps reads working while
	// another process holds the database locked.
	probeDB *sql.DB

	// mu serializes Apply: everything below belongs to the one writer
	// connection.
	mu   sync.Mutex
	conn *sql.Conn
	// stmts holds prepared statements by table key ("" for the fixed ones),
	// then by SQL text, which names the statement's shape exactly.
	stmts map[string]map[string]*sql.Stmt
	// tables caches the schema of tables as the current transaction sees
	// them, by lower-cased name (SQLite names are case-insensitive).
	tables map[string]*tableInfo
	// schemaVersion is the committed PRAGMA schema_version the cache
	// matches; a different value at the start of a group means someone else
	// changed the schema.
	schemaVersion int64
	// ddlCount counts DDL statements run, so a rollback knows whether the
	// cache may have run ahead of the database.
	ddlCount int
	// lookup is lookupTable, made a func once rather than per payload.
	lookup warehouse.Lookup[warehouse.ColumnSchema, *tableInfo]
	// closed is atomic so Ping need not wait for an Apply holding mu.
	closed atomic.Bool
}

type tableInfo struct {
	name    string
	columns []warehouse.ColumnSchema
	byName  map[string]int
	indexes map[string]bool
}

// Column returns the column of that name, matched case-insensitively, as
// SQLite matches column names.
func (t *tableInfo) Column(name string) (warehouse.ColumnSchema, bool) {
	i, ok := t.byName[strings.ToLower(name)]
	if !ok {
		return warehouse.ColumnSchema{}, false
	}
	return t.columns[i], true
}

// Open opens (creating if needed) the database at cfg.Path. A nil logger
// discards logs.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Warehouse, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid sqlite warehouse config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	writeDB, err := sql.Open("sqlite", cfg.dsn(
		// WAL lets readers see the last commit while the writer works.
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous("+cfg.synchronous()+")",
		// Savepoints keep their undo journal in memory, not a temp file.
		"_pragma=temp_store(MEMORY)",
		// Up to 64 MiB of page cache: ids derived from an Idempotency-Key
		// (UUIDv5) are random and touch pages all over the ledger's index;
		// the others (UUIDv7) grow it at its end.
		"_pragma=cache_size(-65536)",
		// Checkpoint every ~40 MiB of WAL instead of ~4 MiB: the same hot
		// pages (ledger, table tails, delete indexes) are copied back once
		// per checkpoint, so fewer checkpoints copy and sync much less.
		"_pragma=wal_autocheckpoint(10000)",
	))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %q: %w", cfg.Path, err)
	}
	writeDB.SetMaxOpenConns(1)
	writeDB.SetMaxIdleConns(1)
	writeDB.SetConnMaxLifetime(0)
	writeDB.SetConnMaxIdleTime(0)

	w := &Warehouse{
		cfg:           cfg,
		logger:        logger,
		writeDB:       writeDB,
		stmts:         map[string]map[string]*sql.Stmt{},
		tables:        map[string]*tableInfo{},
		schemaVersion: -1,
	}
	w.lookup = w.lookupTable
	if err := w.initWriter(ctx); err != nil {
		_ = writeDB.Close()
		return nil, fmt.Errorf("open sqlite %q: %w", cfg.Path, err)
	}

	readDB, err := sql.Open("sqlite", cfg.dsn("_pragma=query_only(1)"))
	if err != nil {
		_ = w.closeWriter()
		return nil, fmt.Errorf("open sqlite %q for reading: %w", cfg.Path, err)
	}
	readDB.SetMaxOpenConns(cfg.MaxReaders)
	readDB.SetMaxIdleConns(cfg.MaxReaders)
	if err := readDB.PingContext(ctx); err != nil {
		_ = readDB.Close()
		_ = w.closeWriter()
		return nil, fmt.Errorf("open sqlite %q for reading: %w", cfg.Path, err)
	}
	w.readDB = readDB
	probeDB, err := sql.Open("sqlite", cfg.probeDSN())
	if err != nil {
		_ = readDB.Close()
		_ = w.closeWriter()
		return nil, fmt.Errorf("open sqlite %q for probing: %w", cfg.Path, err)
	}
	probeDB.SetMaxOpenConns(1)
	w.probeDB = probeDB
	logger.Info("SQLite warehouse open", "path", cfg.Path, "synchronous", cfg.synchronous())
	return w, nil
}

func (w *Warehouse) initWriter(ctx context.Context) error {
	if err := w.ensureConn(ctx); err != nil {
		return err
	}
	var mode string
	if err := w.conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		// Some file systems (network mounts) cannot do WAL. It still works,
		// but readers and the writer then block each other.
		w.logger.Warn("SQLite is not in WAL mode; readers will block the writer", "journal_mode", mode)
	}
	if _, err := w.conn.ExecContext(ctx, createLedgerSQL); err != nil {
		return fmt.Errorf("create ledger: %w", err)
	}
	if err := w.migrateLedger(ctx); err != nil {
		return err
	}
	for _, query := range []string{createEventsSQL, createEventsIndexSQL, createAcksSQL} {
		if _, err := w.conn.ExecContext(ctx, query); err != nil {
			return fmt.Errorf("create events log: %w", err)
		}
	}
	return nil
}

// migrateLedger adds the ledgerColumns a ledger created before them lacks.
// Another process may add one at the same time; a failed ALTER is an error
// only if the column is still missing.
func (w *Warehouse) migrateLedger(ctx context.Context) error {
	for _, c := range ledgerColumns {
		has := func() (bool, error) {
			var ok bool
			err := w.conn.QueryRowContext(ctx, ledgerHasColumnSQL, warehouse.LedgerTable, c.name).Scan(&ok)
			return ok, err
		}
		ok, err := has()
		if err != nil {
			return fmt.Errorf("read ledger columns: %w", err)
		}
		if ok {
			continue
		}
		alter := "ALTER TABLE " + quoteIdent(warehouse.LedgerTable) + " ADD COLUMN " + c.name + " " + c.typ
		if _, alterErr := w.conn.ExecContext(ctx, alter); alterErr != nil {
			if ok, err := has(); err != nil || !ok {
				return fmt.Errorf("add %s to the ledger: %w", c.name, alterErr)
			}
			continue
		}
		w.logger.Info("SQLite ledger migrated: "+c.name+" added; older rows do not record it", "column", c.name)
	}
	return nil
}

// Apply applies group in one transaction, each payload inside its own
// savepoint; see warehouse.Warehouse for the contract.
func (w *Warehouse) Apply(ctx context.Context, group []warehouse.Payload) ([]warehouse.Outcome, error) {
	if len(group) == 0 {
		return []warehouse.Outcome{}, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return nil, messages.Transient(ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, messages.Transient(err)
	}
	if err := w.ensureConn(ctx); err != nil {
		return nil, w.groupError(ctx, "connect", err)
	}
	// BEGIN IMMEDIATE takes the write lock now, so a busy database fails
	// here, before any work, rather than at the first write.
	if _, err := w.execFixed(ctx, "BEGIN IMMEDIATE"); err != nil {
		err = w.groupError(ctx, "begin", err)
		// An interrupted BEGIN (the context ended) may have opened the
		// transaction all the same; the next group's BEGIN would fail.
		w.rollback(w.ddlCount)
		return nil, err
	}
	ddlAtBegin := w.ddlCount
	outcomes, err := w.applyGroup(ctx, group)
	if err != nil {
		w.rollback(ddlAtBegin)
		return nil, err
	}
	return outcomes, nil
}

func (w *Warehouse) applyGroup(ctx context.Context, group []warehouse.Payload) ([]warehouse.Outcome, error) {
	// The driver watches a cancellable context with a goroutine per
	// statement, which costs more than the short statements of a payload
	// take. Those run under quick, which is never cancelled; ctx is checked
	// between them and given only to statements that can run long.
	quick := context.WithoutCancel(ctx)
	version, err := w.readSchemaVersion(quick)
	if err != nil {
		return nil, w.groupError(ctx, "read schema version", err)
	}
	if version != w.schemaVersion {
		w.resetCache()
	}
	ddlAtBegin := w.ddlCount
	appliedAt := time.Now().UTC().Format(time.RFC3339Nano)
	outcomes := make([]warehouse.Outcome, len(group))
	for i, p := range group {
		if err := ctx.Err(); err != nil {
			return nil, messages.Transient(err)
		}
		outcome, err := w.applyPayload(ctx, quick, p, appliedAt)
		if err != nil {
			return nil, err
		}
		outcomes[i] = outcome
	}
	if w.ddlCount != ddlAtBegin {
		// Read inside the transaction, the version is the one this commit
		// creates; reading it after COMMIT could pick up another process's
		// change that the cache does not reflect.
		if version, err = w.readSchemaVersion(quick); err != nil {
			return nil, w.groupError(ctx, "read schema version", err)
		}
	}
	if _, err := w.execFixed(quick, "COMMIT"); err != nil {
		return nil, w.groupError(ctx, "commit", err)
	}
	w.schemaVersion = version
	return outcomes, nil
}

func (w *Warehouse) applyPayload(ctx, quick context.Context, p warehouse.Payload, appliedAt string) (warehouse.Outcome, error) {
	if _, err := w.execFixed(quick, "SAVEPOINT "+savepointName); err != nil {
		return warehouse.Outcome{}, w.groupError(ctx, "savepoint", err)
	}
	ddlBefore := w.ddlCount
	problem, err := w.check(quick, p.Activities)
	if err != nil {
		return warehouse.Outcome{}, w.groupError(ctx, "read schema", err)
	}
	if problem != nil {
		return w.reject(ctx, quick, p, problem, ddlBefore)
	}

	rows, err := w.execute(ctx, quick, p.Activities)
	if err != nil {
		if ctx.Err() != nil || !isPermanent(err) {
			return warehouse.Outcome{}, w.groupError(ctx, "apply payload "+p.ID, err)
		}
		return w.reject(ctx, quick, p, &warehouse.ReasonError{Reason: reason(err), Err: err}, ddlBefore)
	}
	var hash any // NULL: no hash known
	if p.Hash != "" {
		hash = p.Hash
	}
	res, err := w.execFixed(quick, ledgerInsertSQL, p.ID, appliedAt, rows, hash)
	if err != nil {
		return warehouse.Outcome{}, w.groupError(ctx, "record payload in ledger", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return warehouse.Outcome{}, w.groupError(ctx, "record payload in ledger", err)
	}
	if n == 0 {
		if err := w.undo(ctx, quick, ddlBefore); err != nil {
			return warehouse.Outcome{}, err
		}
		// Only a conflict pays for the hash lookup, so the applied path
		// costs what it did.
		return w.duplicateOrMismatch(ctx, quick, p)
	}
	if _, err := w.execFixed(quick, "RELEASE "+savepointName); err != nil {
		return warehouse.Outcome{}, w.groupError(ctx, "release savepoint", err)
	}
	return warehouse.Outcome{Status: warehouse.Applied, RowsAffected: rows}, nil
}

// reject undoes everything payload p wrote and reports it Rejected so the
// rest of the group goes on, or Duplicate when the ledger holds it: a
// payload applied before may no longer fit the tables.
func (w *Warehouse) reject(ctx, quick context.Context, p warehouse.Payload, problem error, ddlBefore int) (warehouse.Outcome, error) {
	if err := w.undo(ctx, quick, ddlBefore); err != nil {
		return warehouse.Outcome{}, err
	}
	stored, applied, err := w.ledgerHash(quick, p.ID)
	if err != nil {
		return warehouse.Outcome{}, w.groupError(ctx, "look up payload in ledger", err)
	}
	if applied {
		return warehouse.LedgerOutcome(p, stored, w.logger), nil
	}
	w.logger.Debug("Payload rejected", "payload_id", p.ID, "error", problem)
	return warehouse.Outcome{Status: warehouse.Rejected, Err: messages.Permanent(problem)}, nil
}

// duplicateOrMismatch reports p, whose id the ledger holds, Duplicate, or
// Rejected when the ledger recorded another payload under its id.
func (w *Warehouse) duplicateOrMismatch(ctx, quick context.Context, p warehouse.Payload) (warehouse.Outcome, error) {
	stored, _, err := w.ledgerHash(quick, p.ID)
	if err != nil {
		return warehouse.Outcome{}, w.groupError(ctx, "look up payload in ledger", err)
	}
	return warehouse.LedgerOutcome(p, stored, w.logger), nil
}

// ledgerHash reads the hash the ledger recorded for id ("" when none), and
// whether the ledger holds id at all.
func (w *Warehouse) ledgerHash(quick context.Context, id string) (hash string, applied bool, err error) {
	stmt, err := w.prepare(quick, "", ledgerHashSQL)
	if err != nil {
		return "", false, err
	}
	switch err := stmt.QueryRowContext(quick, id).Scan(&hash); {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, err
	}
	return hash, true, nil
}

// undo rolls the payload's savepoint back and releases it.
func (w *Warehouse) undo(ctx, quick context.Context, ddlBefore int) error {
	if _, err := w.execFixed(quick, "ROLLBACK TO "+savepointName); err != nil {
		// SQLite may have rolled back the whole transaction on its own.
		return w.groupError(ctx, "roll back payload", err)
	}
	if _, err := w.execFixed(quick, "RELEASE "+savepointName); err != nil {
		return w.groupError(ctx, "release savepoint", err)
	}
	if w.ddlCount != ddlBefore {
		// The payload's DDL is undone; the cache recorded it.
		w.resetCache()
	}
	return nil
}

// planRules are SQLite's part of warehouse.Plan: table names fold case, and
// SQLite keeps the "sqlite_" names for itself.
var planRules = warehouse.Rules[warehouse.ColumnSchema, *tableInfo]{
	FoldTableCase: true,
	Table: func(table string) error {
		if isSQLiteName(table) {
			return errors.New(`table names starting with "sqlite_" are reserved by SQLite`)
		}
		return nil
	},
	NewColumn: func(c messages.Column) warehouse.ColumnSchema {
		return warehouse.ColumnSchema{Name: c.Name, Type: warehouse.StoredType(c.Type)}
	},
}

func isSQLiteName(table string) bool {
	return len(table) >= len("sqlite_") && strings.EqualFold(table[:len("sqlite_")], "sqlite_")
}

// check finds, before any of the payload's DDL runs, every reason the
// payload cannot apply (see warehouse.Plan). The group's earlier payloads
// ran already, so each payload is checked on a plan of its own, against the
// tables as they left them. A non-nil problem is the payload's fault; a
// non-nil err is the database's.
func (w *Warehouse) check(ctx context.Context, activities []messages.Activity) (problem, err error) {
	res, err := warehouse.NewPlan(planRules, w.lookup).Check(ctx, activities)
	if err != nil {
		return nil, err
	}
	return res.Problem, nil
}

// Check is check on a read connection: the tables as committed, and
// nothing written (warehouse.Checker).
func (w *Warehouse) Check(ctx context.Context, activities []messages.Activity) (problem, err error) {
	res, err := warehouse.NewPlan(planRules, func(ctx context.Context, table string) (*tableInfo, bool, error) {
		ti, err := loadTable(ctx, w.readDB, table)
		if errors.Is(err, errForeignSchema) {
			return nil, false, &warehouse.UnusableTableError{Err: err}
		}
		return ti, ti != nil, err
	}).Check(ctx, activities)
	if err != nil {
		return nil, err
	}
	return res.Problem, nil
}

var _ warehouse.Checker = (*Warehouse)(nil)

// lookupTable is the plan's view of the tables: the cache, read through
// the writer connection, so it sees the transaction's own changes. A table
// with a column this adapter did not create is no payload's to write.
func (w *Warehouse) lookupTable(ctx context.Context, table string) (*tableInfo, bool, error) {
	ti, err := w.table(ctx, w.conn, table)
	if errors.Is(err, errForeignSchema) {
		return nil, false, &warehouse.UnusableTableError{Err: err}
	}
	return ti, ti != nil, err
}

// execute runs the payload's activities in order. check has passed, so an
// error is either the database's or a constraint SQLite enforces.
func (w *Warehouse) execute(ctx, quick context.Context, activities []messages.Activity) (int64, error) {
	var rows int64
	for i, a := range activities {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n, err := w.executeActivity(ctx, quick, a)
		if err != nil {
			return 0, fmt.Errorf("activities[%d]: %s on table %q: %w", i, a.Op, a.Table, err)
		}
		rows += n
	}
	return rows, nil
}

// executeActivity runs a under quick, except for what may take long enough
// to be worth interrupting: DDL (an index on a big table) and a delete that
// has no index and scans its table.
func (w *Warehouse) executeActivity(ctx, quick context.Context, a messages.Activity) (int64, error) {
	ti, err := w.table(quick, w.conn, a.Table)
	if err != nil {
		return 0, err
	}
	args := make([]any, 0, len(a.Columns))
	for _, c := range a.Columns {
		v, err := bindValue(c)
		if err != nil {
			return 0, fmt.Errorf("column %q: %w", c.Name, err)
		}
		if v != nil || a.Op == messages.OpInsert {
			args = append(args, v)
		}
	}

	var query string
	execCtx := quick
	switch a.Op {
	case messages.OpInsert:
		if ti == nil {
			if _, err = w.createTable(ctx, a.Table, a.Columns); err != nil {
				return 0, err
			}
		} else if err := w.addMissingColumns(ctx, ti, a.Columns); err != nil {
			return 0, err
		}
		query = insertSQL(a.Table, a.Columns)
	case messages.OpDelete:
		if ti == nil {
			return 0, warehouse.ErrTableNotFound
		}
		indexed, err := w.ensureDeleteIndex(ctx, ti, a.Columns)
		if err != nil {
			return 0, err
		}
		if !indexed {
			execCtx = ctx
		}
		query = deleteSQL(a.Table, a.Columns)
	default:
		return 0, fmt.Errorf("unknown operation %q", a.Op)
	}

	stmt, err := w.prepare(quick, strings.ToLower(a.Table), query)
	if err != nil {
		return 0, err
	}
	res, err := stmt.ExecContext(execCtx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func insertSQL(table string, columns []messages.Column) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(quoteIdent(table))
	b.WriteString(" (")
	for i, c := range columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c.Name))
	}
	b.WriteString(") VALUES (")
	for i := range columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('?')
	}
	b.WriteByte(')')
	return b.String()
}

// deleteSQL matches rows whose every named column equals its value. A nil
// value is written as IS NULL in the text rather than bound, so which
// columns are NULL is part of the statement's shape.
func deleteSQL(table string, columns []messages.Column) string {
	var b strings.Builder
	b.WriteString("DELETE FROM ")
	b.WriteString(quoteIdent(table))
	b.WriteString(" WHERE ")
	for i, c := range columns {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(quoteIdent(c.Name))
		if c.Value == nil {
			b.WriteString(" IS NULL")
		} else {
			b.WriteString(" = ?")
		}
	}
	return b.String()
}

func (w *Warehouse) createTable(ctx context.Context, table string, columns []messages.Column) (*tableInfo, error) {
	ti := &tableInfo{name: table, byName: map[string]int{}, indexes: map[string]bool{}}
	var b strings.Builder
	b.WriteString("CREATE TABLE ")
	b.WriteString(quoteIdent(table))
	b.WriteString(" (")
	for i, c := range columns {
		decl, err := declaredType(c.Type)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c.Name))
		b.WriteByte(' ')
		b.WriteString(decl)
		ti.byName[strings.ToLower(c.Name)] = len(ti.columns)
		ti.columns = append(ti.columns, warehouse.ColumnSchema{Name: c.Name, Type: warehouse.StoredType(c.Type)})
	}
	b.WriteByte(')')
	if err := w.ddl(ctx, table, b.String()); err != nil {
		return nil, err
	}
	w.tables[strings.ToLower(table)] = ti
	return ti, nil
}

func (w *Warehouse) addMissingColumns(ctx context.Context, ti *tableInfo, columns []messages.Column) error {
	for _, c := range columns {
		if _, ok := ti.Column(c.Name); ok {
			continue
		}
		decl, err := declaredType(c.Type)
		if err != nil {
			return err
		}
		if err := w.ddl(ctx, ti.name, "ALTER TABLE "+quoteIdent(ti.name)+" ADD COLUMN "+quoteIdent(c.Name)+" "+decl); err != nil {
			return err
		}
		ti.byName[strings.ToLower(c.Name)] = len(ti.columns)
		ti.columns = append(ti.columns, warehouse.ColumnSchema{Name: c.Name, Type: warehouse.StoredType(c.Type)})
	}
	return nil
}

// ensureDeleteIndex indexes the delete's column set, once per set and table,
// so the delete is a lookup instead of a scan, and reports whether the set
// is indexed. The name is derived from the set, so the same set in another
// order finds the same index.
func (w *Warehouse) ensureDeleteIndex(ctx context.Context, ti *tableInfo, columns []messages.Column) (bool, error) {
	if w.cfg.DisableDeleteIndexes {
		return false, nil
	}
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = strings.ToLower(c.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	h := fnv.New64a()
	h.Write([]byte(strings.ToLower(ti.name)))
	for _, n := range names {
		h.Write([]byte{0})
		h.Write([]byte(n))
	}
	index := deleteIndexPrefix + strconv.FormatUint(h.Sum64(), 36)
	if ti.indexes[index] {
		return true, nil
	}
	if len(ti.indexes) >= maxDeleteIndexesPerTable {
		return false, nil
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = quoteIdent(n)
	}
	query := "CREATE INDEX IF NOT EXISTS " + quoteIdent(index) + " ON " + quoteIdent(ti.name) +
		" (" + strings.Join(quoted, ", ") + ")"
	if err := w.ddl(ctx, ti.name, query); err != nil {
		return false, err
	}
	ti.indexes[index] = true
	return true, nil
}

// ddl runs a schema change and forgets the statements prepared for the
// table: SQLite would re-prepare them, but only after failing once on the
// changed schema.
func (w *Warehouse) ddl(ctx context.Context, table, query string) error {
	w.ddlCount++
	w.closeStatements(strings.ToLower(table))
	_, err := w.conn.ExecContext(ctx, query)
	return err
}

// table returns the cached schema of table, loading it through q on a
// miss; nil means the table does not exist. Only existing tables are cached:
// a missing one is created by the insert that looked it up.
func (w *Warehouse) table(ctx context.Context, q querier, table string) (*tableInfo, error) {
	key := strings.ToLower(table)
	if ti, ok := w.tables[key]; ok {
		return ti, nil
	}
	ti, err := loadTable(ctx, q, table)
	if err != nil || ti == nil {
		return nil, err
	}
	w.tables[key] = ti
	return ti, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// errForeignSchema marks a table with a column this adapter did not create.
var errForeignSchema = errors.New("table has a column gatekeeper did not create")

func loadTable(ctx context.Context, q querier, table string) (*tableInfo, error) {
	rows, err := q.QueryContext(ctx, "SELECT name, type FROM pragma_table_info(?) ORDER BY cid", table)
	if err != nil {
		return nil, fmt.Errorf("read columns of %q: %w", table, err)
	}
	ti := &tableInfo{byName: map[string]int{}, indexes: map[string]bool{}}
	for rows.Next() {
		var name, decl string
		if err := rows.Scan(&name, &decl); err != nil {
			rows.Close()
			return nil, err
		}
		t, err := parseDeclaredType(decl)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("column %q: %w: %w", name, errForeignSchema, err)
		}
		ti.byName[strings.ToLower(name)] = len(ti.columns)
		ti.columns = append(ti.columns, warehouse.ColumnSchema{Name: name, Type: t})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %q: %w", table, err)
	}
	if len(ti.columns) == 0 {
		return nil, nil
	}
	var stored string
	if err := queryRow(ctx, q, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = ? COLLATE NOCASE", table).Scan(&stored); err != nil {
		return nil, fmt.Errorf("read name of %q: %w", table, err)
	}
	ti.name = stored

	idx, err := q.QueryContext(ctx, "SELECT name FROM pragma_index_list(?)", table)
	if err != nil {
		return nil, fmt.Errorf("read indexes of %q: %w", table, err)
	}
	defer idx.Close()
	for idx.Next() {
		var name string
		if err := idx.Scan(&name); err != nil {
			return nil, err
		}
		if strings.HasPrefix(name, deleteIndexPrefix) {
			ti.indexes[name] = true
		}
	}
	if err := idx.Err(); err != nil {
		return nil, fmt.Errorf("read indexes of %q: %w", table, err)
	}
	return ti, nil
}

type rowScanner struct {
	rows *sql.Rows
	err  error
}

func (r rowScanner) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Close()
}

func queryRow(ctx context.Context, q querier, query string, args ...any) rowScanner {
	rows, err := q.QueryContext(ctx, query, args...)
	return rowScanner{rows: rows, err: err}
}

func (w *Warehouse) readSchemaVersion(ctx context.Context) (int64, error) {
	stmt, err := w.prepare(ctx, "", "PRAGMA schema_version")
	if err != nil {
		return 0, err
	}
	var v int64
	err = stmt.QueryRowContext(ctx).Scan(&v)
	return v, err
}

func (w *Warehouse) execFixed(ctx context.Context, query string, args ...any) (sql.Result, error) {
	stmt, err := w.prepare(ctx, "", query)
	if err != nil {
		return nil, err
	}
	return stmt.ExecContext(ctx, args...)
}

func (w *Warehouse) prepare(ctx context.Context, tableKey, query string) (*sql.Stmt, error) {
	byQuery := w.stmts[tableKey]
	if stmt, ok := byQuery[query]; ok {
		return stmt, nil
	}
	stmt, err := w.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if byQuery == nil {
		byQuery = map[string]*sql.Stmt{}
		w.stmts[tableKey] = byQuery
	}
	byQuery[query] = stmt
	return stmt, nil
}

func (w *Warehouse) closeStatements(tableKey string) {
	for _, stmt := range w.stmts[tableKey] {
		_ = stmt.Close()
	}
	delete(w.stmts, tableKey)
}

// resetCache forgets every cached table and the statements prepared for
// them, after the database's schema and the cache may have parted.
func (w *Warehouse) resetCache() {
	clear(w.tables)
	for key := range w.stmts {
		if key != "" {
			w.closeStatements(key)
		}
	}
	w.schemaVersion = -1
}

// rollback ends the open transaction after a group-level failure.
func (w *Warehouse) rollback(ddlAtBegin int) {
	if w.ddlCount != ddlAtBegin {
		w.resetCache()
	}
	if w.conn == nil {
		return
	}
	// The group's context may be what failed; the rollback must run anyway.
	_, err := w.conn.ExecContext(context.Background(), "ROLLBACK")
	if err == nil || noTransaction(err) {
		return
	}
	// A connection that cannot roll back might keep the transaction open;
	// start over on a fresh one.
	w.logger.Warn("SQLite rollback failed; reopening the writer connection", "error", err)
	w.dropConn()
}

// noTransaction reports whether ROLLBACK failed because no transaction was
// open: SQLite rolls a transaction back by itself after some errors (a full
// disk, an I/O error, an interrupt). ROLLBACK is well-formed, so
// SQLITE_ERROR, the code of "no transaction is active", can mean nothing
// else from it; busy, I/O and the like have codes of their own. Only
// meaningful for the error of a ROLLBACK.
func noTransaction(rollbackErr error) bool {
	var se *sqlite.Error
	return errors.As(rollbackErr, &se) && se.Code()&0xff == sqlite3.SQLITE_ERROR
}

// groupError classifies a failure that ends the whole group. The
// payload-level problems were taken out before, so what reaches it is the
// database's state: an outage when SQLite says the file itself is broken,
// full, read-only, out of reach or locked past the busy timeout (nothing a
// retry of these payloads fixes, and not their fault: the apply stage
// pauses), else transient. A deadline or cancellation stays transient. On
// a storage error the writer connection is dropped, so that a file an
// operator restored is opened afresh rather than read through a
// connection that cached the broken one.
func (w *Warehouse) groupError(ctx context.Context, op string, err error) error {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		w.dropConn()
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%w)", ctxErr, err)
	}
	classified := &warehouse.ReasonError{Reason: reason(err), Err: fmt.Errorf("sqlite %s: %w", op, err)}
	if ctx.Err() != nil || !isOutage(err) {
		return messages.Transient(classified)
	}
	if classified.Reason == warehouse.ReasonStorage {
		w.dropConn()
	}
	return messages.Outage(classified)
}

// isOutage reports whether a SQLite error is the database's own state, not
// a payload's: corrupt, not a database, an I/O error, a full disk, a file
// that cannot be opened, written (read-only) or accessed, or a lock that
// outlasted the busy timeout.
func isOutage(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH,
		sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

// reason names a SQLite error by its primary result code, for metrics.
func reason(err error) string {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		if errors.Is(err, context.DeadlineExceeded) {
			return warehouse.ReasonTimeout
		}
		return warehouse.ReasonOther
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return warehouse.ReasonBusy
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CANTOPEN:
		return warehouse.ReasonStorage
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
		return warehouse.ReasonPermission
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_RANGE, sqlite3.SQLITE_ERROR:
		return warehouse.ReasonInvalid
	case sqlite3.SQLITE_INTERRUPT:
		return warehouse.ReasonTimeout
	}
	return warehouse.ReasonOther
}

// isPermanent reports whether a failed statement is the payload's fault:
// a constraint, a type or size SQLite refuses, or an SQL error (the
// statements are built from the payload). Busy, locked, I/O, full, interrupt
// and the like are the database's state (see isOutage).
func isPermanent(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG,
		sqlite3.SQLITE_RANGE, sqlite3.SQLITE_ERROR:
		return true
	}
	return false
}

func (w *Warehouse) ensureConn(ctx context.Context) error {
	if w.conn != nil {
		return nil
	}
	conn, err := w.writeDB.Conn(ctx)
	if err != nil {
		return err
	}
	w.conn = conn
	return nil
}

// dropConn discards the writer connection and everything prepared on it.
func (w *Warehouse) dropConn() {
	if w.conn == nil {
		return
	}
	for key := range w.stmts {
		w.closeStatements(key)
	}
	clear(w.tables)
	w.schemaVersion = -1
	// Returning ErrBadConn from Raw makes database/sql close the driver
	// connection instead of pooling it with a transaction possibly open.
	_ = w.conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = w.conn.Close()
	w.conn = nil
}

// Ping checks the path the apply stage writes through: it takes the write
// lock, reads the schema, and releases the lock at once. A database another
// process holds locked fails within the probe's busy timeout
// (ProbeTimeout), though reads still work. Its errors are classified as
// Apply's are: a broken, full, read-only or locked database is an outage.
func (w *Warehouse) Ping(ctx context.Context) error {
	if w.closed.Load() {
		return messages.Transient(ErrClosed)
	}
	conn, err := w.probeDB.Conn(ctx)
	if err != nil {
		return pingError(ctx, "", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return pingError(ctx, "cannot take the write lock: ", err)
	}
	// Reading the schema reads page 1: a file that is no longer a
	// database says so here.
	var n int
	readErr := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n)
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
		// A connection left inside a transaction would hold the lock.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return pingError(ctx, "", errors.Join(readErr, err))
	}
	if readErr != nil {
		// A connection that read a broken file may cache what it read.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return pingError(ctx, "", readErr)
	}
	return nil
}

// pingError classifies a failed probe as groupError does a failed Apply.
func pingError(ctx context.Context, what string, err error) error {
	classified := &warehouse.ReasonError{Reason: reason(err), Err: fmt.Errorf("sqlite ping: %s%w", what, err)}
	if ctx.Err() != nil || !isOutage(err) {
		return messages.Transient(classified)
	}
	return messages.Outage(classified)
}

// Close waits for an Apply in progress and closes the database.
func (w *Warehouse) Close() error {
	w.mu.Lock()
	if w.closed.Swap(true) {
		w.mu.Unlock()
		return nil
	}
	err := w.closeWriter()
	w.mu.Unlock()
	return errors.Join(err, w.readDB.Close(), w.probeDB.Close())
}

// closeWriter closes the writer connection and pool. w.mu must be held, or
// w not yet shared.
func (w *Warehouse) closeWriter() error {
	for key := range w.stmts {
		w.closeStatements(key)
	}
	var errs []error
	if w.conn != nil {
		errs = append(errs, w.conn.Close())
		w.conn = nil
	}
	errs = append(errs, w.writeDB.Close())
	return errors.Join(errs...)
}
