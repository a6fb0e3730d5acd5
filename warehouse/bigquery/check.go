package bigquery

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// errRequiredColumn marks an insert that leaves a REQUIRED column NULL.
var errRequiredColumn = errors.New("column is REQUIRED")

// The group's payloads are checked with warehouse.Plan over the tables'
// metadata; these are its instances for BigQuery's columns and tables.
type (
	schemaPlan       = warehouse.Plan[columnInfo, *tableInfo]
	resolvedActivity = warehouse.ResolvedActivity[columnInfo]
	resolvedColumn   = warehouse.ResolvedColumn[columnInfo]
)

// planRules are what BigQuery refuses beyond the shared rules: names that
// are no identifier, columns of types gatekeeper cannot write, values of the
// wrong Go type, and inserts that leave a REQUIRED column NULL. Table names
// are case-sensitive.
var planRules = warehouse.Rules[columnInfo, *tableInfo]{
	Table: func(table string) error {
		if !messages.ValidIdentifier(table, messages.MaxTableNameLen) {
			return errors.New("invalid table name")
		}
		return nil
	},
	NewColumn: func(c messages.Column) columnInfo {
		return columnInfo{name: c.Name, typ: warehouse.StoredType(c.Type), rawType: string(c.Type.Base), writable: true}
	},
	Column: func(col columnInfo, _ messages.Column) error {
		if !col.writable {
			return fmt.Errorf("column %q is %s, which gatekeeper cannot write: %w", col.name, col.rawType, warehouse.ErrTypeConflict)
		}
		return nil
	},
	Value: func(col columnInfo, c messages.Column) error {
		_, err := bindValue(col.typ, c.Value)
		return err
	},
	Insert: checkRequired,
}

// checkRequired refuses an insert that leaves a REQUIRED column of the
// table NULL, by giving it NULL or by not naming it.
func checkRequired(existing *tableInfo, ok bool, columns []resolvedColumn) error {
	for _, c := range columns {
		if c.Value == nil && c.Col.required {
			return fmt.Errorf("column %q: %w and cannot be NULL", c.Col.name, errRequiredColumn)
		}
	}
	if !ok {
		return nil
	}
	for _, col := range existing.columns {
		if !col.required {
			continue
		}
		named := false
		for _, c := range columns {
			if strings.EqualFold(c.Col.name, col.name) {
				named = true
				break
			}
		}
		if !named {
			return fmt.Errorf("column %q: %w and the insert does not give it", col.name, errRequiredColumn)
		}
	}
	return nil
}

// isSchemaProblem reports whether a rejection depends on the tables'
// schema, and so must be confirmed on a fresh read.
func isSchemaProblem(problem error) bool {
	return errors.Is(problem, warehouse.ErrTableNotFound) ||
		errors.Is(problem, warehouse.ErrColumnNotFound) ||
		errors.Is(problem, warehouse.ErrTypeConflict) ||
		errors.Is(problem, errRequiredColumn)
}
