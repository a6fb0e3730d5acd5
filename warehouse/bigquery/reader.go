package bigquery

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"cloud.google.com/go/bigquery"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// The Reader methods read BigQuery directly, never the schema cache: they
// are for tools and tests, which want what is there now.

// Tables lists the dataset's tables, sorted, without gatekeeper's own.
func (w *Warehouse) Tables(ctx context.Context) ([]string, error) {
	if !w.enter() {
		return nil, messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	names, err := w.backend.tableNames(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	tables := []string{}
	for _, n := range names {
		if !warehouse.IsReserved(n) {
			tables = append(tables, n)
		}
	}
	slices.Sort(tables)
	return tables, nil
}

// Schema returns the table's columns in table order.
func (w *Warehouse) Schema(ctx context.Context, table string) ([]warehouse.ColumnSchema, error) {
	info, exit, err := w.enterTable(ctx, table)
	if err != nil {
		return nil, err
	}
	defer exit()
	columns := make([]warehouse.ColumnSchema, len(info.columns))
	for i, c := range info.columns {
		columns[i] = warehouse.ColumnSchema{Name: c.name, Type: c.typ}
	}
	return columns, nil
}

// enterTable starts a Reader call on a user table: unless it fails, the
// call is in progress, and Close waits for it, until exit.
func (w *Warehouse) enterTable(ctx context.Context, table string) (info *tableInfo, exit func(), err error) {
	if !w.enter() {
		return nil, nil, messages.Transient(ErrClosed)
	}
	info, err = w.readTable(ctx, table)
	if err != nil {
		w.closeMu.RUnlock()
		return nil, nil, err
	}
	return info, w.closeMu.RUnlock, nil
}

// readTable reads a user table whose every column gatekeeper can represent.
func (w *Warehouse) readTable(ctx context.Context, table string) (*tableInfo, error) {
	if !messages.ValidIdentifier(table, messages.MaxTableNameLen) || warehouse.IsReserved(table) {
		return nil, fmt.Errorf("table %q: %w", table, warehouse.ErrTableNotFound)
	}
	info, err := w.backend.table(ctx, table)
	if err != nil {
		return nil, fmt.Errorf("read table %q: %w", table, err)
	}
	if info == nil {
		return nil, fmt.Errorf("table %q: %w", table, warehouse.ErrTableNotFound)
	}
	for _, c := range info.columns {
		if !c.writable {
			return nil, fmt.Errorf("table %q: column %q is %s, which gatekeeper cannot represent", table, c.name, c.rawType)
		}
	}
	return info, nil
}

// Rows returns up to limit rows (all when limit <= 0), ordered by every
// column ascending (NULLs first, JSON by its text), with values normalised
// as in messages.Column.Value.
func (w *Warehouse) Rows(ctx context.Context, table string, limit int) ([]map[string]any, error) {
	info, exit, err := w.enterTable(ctx, table)
	if err != nil {
		return nil, err
	}
	defer exit()
	rows, err := w.backend.query(ctx, rowsSQL(w.qualifier, info, limit), nil)
	if err != nil {
		return nil, fmt.Errorf("read rows of %q: %w", table, err)
	}
	result := make([]map[string]any, 0, len(rows))
	for _, raw := range rows {
		row, err := warehouse.NormaliseRow(info.columns, raw, normaliseValue)
		if err != nil {
			return nil, fmt.Errorf("read rows of %q: %w", table, err)
		}
		result = append(result, row)
	}
	return result, nil
}

func rowsSQL(qualifier string, info *tableInfo, limit int) string {
	var list, order []string
	for _, c := range info.columns {
		name := quoteIdent(c.name)
		list = append(list, name)
		if c.typ.Base == messages.TypeJSON {
			// JSON cannot be ordered; its text can. The IF keeps
			// TO_JSON_STRING away from NULLs, which crash the emulator.
			name = "IF(" + name + " IS NULL, NULL, TO_JSON_STRING(" + name + "))"
		}
		order = append(order, name)
	}
	sql := "SELECT " + strings.Join(list, ", ") + " FROM " + qualifier + quoteIdent(info.name) + " ORDER BY " + strings.Join(order, ", ")
	if limit > 0 {
		sql += " LIMIT " + strconv.Itoa(limit)
	}
	return sql
}

// Applied reports whether the ledger holds payloadID.
func (w *Warehouse) Applied(ctx context.Context, payloadID string) (bool, error) {
	if !w.enter() {
		return false, messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	sql := "SELECT COUNT(*) FROM " + w.qualifier + quoteIdent(warehouse.LedgerTable) + " WHERE payload_id = @id"
	rows, err := w.backend.query(ctx, sql, []bigquery.QueryParameter{{Name: "id", Value: payloadID}})
	if err != nil {
		return false, fmt.Errorf("look up payload %q in the ledger: %w", payloadID, err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return false, fmt.Errorf("look up payload %q in the ledger: unexpected result %v", payloadID, rows)
	}
	n, ok := rows[0][0].(int64)
	if !ok {
		return false, fmt.Errorf("look up payload %q in the ledger: count is a %T", payloadID, rows[0][0])
	}
	return n > 0, nil
}
