package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/gatekeeper/gatekeeper/warehouse"
)

// Tables lists user tables, sorted, without gatekeeper's own.
func (w *Warehouse) Tables(ctx context.Context) ([]string, error) {
	rows, err := w.readDB.QueryContext(ctx,
		`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	tables := []string{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		if warehouse.IsReserved(name) {
			continue
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return tables, nil
}

// Schema returns the table's columns in table order.
func (w *Warehouse) Schema(ctx context.Context, table string) ([]warehouse.ColumnSchema, error) {
	ti, err := w.readTable(ctx, table)
	if err != nil {
		return nil, err
	}
	return ti.columns, nil
}

func (w *Warehouse) readTable(ctx context.Context, table string) (*tableInfo, error) {
	if table == "" || warehouse.IsReserved(table) || isSQLiteName(table) {
		return nil, fmt.Errorf("table %q: %w", table, warehouse.ErrTableNotFound)
	}
	ti, err := loadTable(ctx, w.readDB, table)
	if err != nil {
		return nil, err
	}
	if ti == nil {
		return nil, fmt.Errorf("table %q: %w", table, warehouse.ErrTableNotFound)
	}
	return ti, nil
}

// Rows returns up to limit rows (all when limit <= 0), ordered by every
// column, with values normalised as in messages.Column.Value.
func (w *Warehouse) Rows(ctx context.Context, table string, limit int) ([]map[string]any, error) {
	ti, err := w.readTable(ctx, table)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ti.columns))
	for i, c := range ti.columns {
		names[i] = quoteIdent(c.Name)
	}
	list := strings.Join(names, ", ")
	query := "SELECT " + list + " FROM " + quoteIdent(ti.name) + " ORDER BY " + list + " LIMIT ?"
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := w.readDB.QueryContext(ctx, query, limit)
	if err != nil {
		return nil, fmt.Errorf("read rows of %q: %w", table, err)
	}
	defer rows.Close()
	result := []map[string]any{}
	raw := make([]any, len(ti.columns))
	dest := make([]any, len(ti.columns))
	for i := range raw {
		dest[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read rows of %q: %w", table, err)
		}
		row, err := warehouse.NormaliseRow(ti.columns, raw, normaliseValue)
		if err != nil {
			return nil, fmt.Errorf("read rows of %q: %w", table, err)
		}
		result = append(result, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rows of %q: %w", table, err)
	}
	return result, nil
}

// Applied reports whether the ledger holds payloadID.
func (w *Warehouse) Applied(ctx context.Context, payloadID string) (bool, error) {
	var applied bool
	if err := w.readDB.QueryRowContext(ctx, ledgerLookupSQL, payloadID).Scan(&applied); err != nil {
		return false, fmt.Errorf("look up payload %q in the ledger: %w", payloadID, err)
	}
	return applied, nil
}
