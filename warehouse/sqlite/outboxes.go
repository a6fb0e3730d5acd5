package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

var _ warehouse.OutboxRegistry = (*Warehouse)(nil)

var (
	outboxesTable = quoteIdent(warehouse.OutboxesTable)

	// Created on first write rather than at Open, so that a warehouse no
	// outbox ever used holds no such table.
	createOutboxesSQL = "CREATE TABLE IF NOT EXISTS " + outboxesTable + ` (
	host TEXT NOT NULL,
	path TEXT NOT NULL,
	identity TEXT NOT NULL,
	pending INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (host, path))`
	upsertOutboxSQL = "INSERT INTO " + outboxesTable + ` (host, path, identity, pending, updated_at) VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (host, path) DO UPDATE SET identity = excluded.identity, pending = excluded.pending, updated_at = excluded.updated_at`
)

// OutboxRecord reads the record of the outbox at host and path.
func (w *Warehouse) OutboxRecord(ctx context.Context, host, path string) (warehouse.OutboxRecord, bool, error) {
	rec := warehouse.OutboxRecord{Host: host, Path: path}
	var updated int64
	err := w.readDB.QueryRowContext(ctx, "SELECT identity, pending, updated_at FROM "+outboxesTable+" WHERE host = ? AND path = ?",
		host, path).Scan(&rec.Identity, &rec.Pending, &updated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return rec, false, nil
	case err != nil && strings.Contains(err.Error(), "no such table"):
		return rec, false, nil
	case err != nil:
		return rec, false, messages.Transient(fmt.Errorf("sqlite read outbox record: %w", err))
	}
	rec.UpdatedAt = time.Unix(0, updated)
	return rec, true, nil
}

// RecordOutbox writes rec on the writer connection, in a transaction of
// its own.
func (w *Warehouse) RecordOutbox(ctx context.Context, rec warehouse.OutboxRecord) error {
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = time.Now()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return messages.Transient(ErrClosed)
	}
	if err := w.ensureConn(ctx); err != nil {
		return w.groupError(ctx, "connect", err)
	}
	for _, q := range []struct {
		query string
		args  []any
	}{
		{createOutboxesSQL, nil},
		{upsertOutboxSQL, []any{rec.Host, rec.Path, rec.Identity, rec.Pending, rec.UpdatedAt.UnixNano()}},
	} {
		if _, err := w.conn.ExecContext(ctx, q.query, q.args...); err != nil {
			return w.groupError(ctx, "record outbox", err)
		}
	}
	return nil
}
