package bigquery

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// reservedPrefix is the table-name prefix the gate keeps for gatekeeper's
// own tables.
const reservedPrefix = "_gatekeeper"

// errRequiredColumn marks an insert that leaves a REQUIRED column NULL.
var errRequiredColumn = errors.New("column is REQUIRED")

// resolvedActivity is an activity checked against the schema it will meet:
// its columns carry the table's stored spelling and type.
type resolvedActivity struct {
	op      messages.Operation
	table   string
	columns []resolvedColumn
}

type resolvedColumn struct {
	col   columnInfo
	key   string // lower-cased name, for case-insensitive matching
	value any
}

// schemaPlan follows, payload by payload, the tables and columns the
// accepted payloads of a group create, so that a later payload (or a later
// activity of the same payload) may use them, and so the DDL they need can
// run, batched per table, before the job.
type schemaPlan struct {
	tables map[string]*plannedTable
	// order lists the tables of tables in the order they were planned.
	order []string
}

type plannedTable struct {
	name string
	// existing is the table as read; nil when the group creates it.
	existing *tableInfo
	// added are the columns the group adds (all of them for a table it
	// creates), in the order of their first appearance.
	added    []columnInfo
	addedKey map[string]int
}

func newSchemaPlan() *schemaPlan { return &schemaPlan{tables: map[string]*plannedTable{}} }

// payloadView is one payload's view while it is being checked: the group's
// plan plus what the payload's own earlier activities create. It is merged
// into the plan only if the payload is accepted, so a rejected payload
// leaves no schema behind for the payloads after it.
type payloadView struct {
	existing *tableInfo
	group    *plannedTable
	exists   bool
	added    []columnInfo
	addedKey map[string]int
}

func (v *payloadView) column(name string) (columnInfo, bool) {
	if v.existing != nil {
		if c, ok := v.existing.column(name); ok {
			return c, true
		}
	}
	key := strings.ToLower(name)
	if v.group != nil {
		if i, ok := v.group.addedKey[key]; ok {
			return v.group.added[i], true
		}
	}
	if i, ok := v.addedKey[key]; ok {
		return v.added[i], true
	}
	return columnInfo{}, false
}

func (v *payloadView) add(c columnInfo) {
	if v.addedKey == nil {
		v.addedKey = map[string]int{}
	}
	v.addedKey[strings.ToLower(c.name)] = len(v.added)
	v.added = append(v.added, c)
}

// lookupFunc reads a table's schema; nil means it does not exist.
type lookupFunc func(ctx context.Context, table string) (*tableInfo, error)

// checkResult is the outcome of checking one payload.
type checkResult struct {
	activities []resolvedActivity
	// problem is why the payload cannot apply; nil when it can.
	problem error
	// consulted are the tables the check looked at, for re-reading them
	// before a rejection is made final.
	consulted []string
	// views and order are what the payload creates, per table, for accept.
	views map[string]*payloadView
	order []string
}

// check decides, before any DDL runs, whether a payload's activities can
// apply after the payloads accepted so far: every delete names a table and
// columns that exist by then, and no column type conflicts. It follows the
// tables and columns the payload's earlier activities create. Nothing of
// the payload enters the plan until accept. err is a failure to read
// metadata.
func (s *schemaPlan) check(ctx context.Context, activities []messages.Activity, lookup lookupFunc) (checkResult, error) {
	var res checkResult
	views := map[string]*payloadView{}
	view := func(table string) (*payloadView, error) {
		if v, ok := views[table]; ok {
			return v, nil
		}
		v := &payloadView{}
		res.consulted = append(res.consulted, table)
		if pt, ok := s.tables[table]; ok {
			v.group, v.existing, v.exists = pt, pt.existing, true
		} else {
			info, err := lookup(ctx, table)
			if err != nil {
				return nil, err
			}
			v.existing, v.exists = info, info != nil
		}
		views[table] = v
		return v, nil
	}
	var order []string

	for i, a := range activities {
		where := fmt.Sprintf("activities[%d]: %s on table %q", i, a.Op, a.Table)
		problem := func(format string, args ...any) (checkResult, error) {
			res.problem = fmt.Errorf("%s: %w", where, fmt.Errorf(format, args...))
			res.activities = nil
			return res, nil
		}
		if a.Table == "" || !messages.ValidIdentifier(a.Table, messages.MaxTableNameLen) {
			return problem("invalid table name")
		}
		if strings.HasPrefix(strings.ToLower(a.Table), reservedPrefix) {
			return problem("table names starting with %q are reserved for gatekeeper", reservedPrefix)
		}
		if len(a.Columns) == 0 {
			return problem("no columns")
		}
		v, err := view(a.Table)
		if err != nil {
			return checkResult{}, err
		}
		if !contains(order, a.Table) {
			order = append(order, a.Table)
		}
		resolved := resolvedActivity{op: a.Op, table: a.Table, columns: make([]resolvedColumn, 0, len(a.Columns))}

		switch a.Op {
		case messages.OpInsert:
			v.exists = true
			named := map[string]bool{}
			for _, c := range a.Columns {
				col, found := v.column(c.Name)
				if !found {
					col = columnInfo{name: c.Name, typ: storedType(c.Type), rawType: string(c.Type.Base), writable: true}
					v.add(col)
				}
				if msg := conflict(col, c); msg != "" {
					return problem("%s: %w", msg, warehouse.ErrTypeConflict)
				}
				if c.Value == nil && col.required {
					return problem("column %q: %w and cannot be NULL", col.name, errRequiredColumn)
				}
				if c.Value != nil {
					if _, err := bindValue(col.typ, c.Value); err != nil {
						return problem("column %q: %w", c.Name, err)
					}
				}
				named[strings.ToLower(c.Name)] = true
				resolved.columns = append(resolved.columns, resolvedColumn{col: col, key: strings.ToLower(col.name), value: c.Value})
			}
			if v.existing != nil {
				for _, col := range v.existing.columns {
					if col.required && !named[strings.ToLower(col.name)] {
						return problem("column %q: %w and the insert does not give it", col.name, errRequiredColumn)
					}
				}
			}
		case messages.OpDelete:
			if !v.exists {
				return problem("%w", warehouse.ErrTableNotFound)
			}
			for _, c := range a.Columns {
				col, found := v.column(c.Name)
				if !found {
					return problem("column %q: %w", c.Name, warehouse.ErrColumnNotFound)
				}
				if msg := conflict(col, c); msg != "" {
					return problem("%s: %w", msg, warehouse.ErrTypeConflict)
				}
				if c.Value != nil {
					if _, err := bindValue(col.typ, c.Value); err != nil {
						return problem("column %q: %w", c.Name, err)
					}
				}
				resolved.columns = append(resolved.columns, resolvedColumn{col: col, key: strings.ToLower(col.name), value: c.Value})
			}
		default:
			return problem("unknown operation")
		}
		res.activities = append(res.activities, resolved)
	}

	res.views, res.order = views, order
	return res, nil
}

// accept makes what a checked payload creates visible to the payloads
// after it, and part of the DDL to run.
func (s *schemaPlan) accept(res checkResult) {
	for _, table := range res.order {
		v := res.views[table]
		if len(v.added) == 0 {
			continue
		}
		pt, ok := s.tables[table]
		if !ok {
			pt = &plannedTable{name: table, existing: v.existing, addedKey: map[string]int{}}
			s.tables[table] = pt
			s.order = append(s.order, table)
		}
		for _, c := range v.added {
			pt.addedKey[strings.ToLower(c.name)] = len(pt.added)
			pt.added = append(pt.added, c)
		}
	}
}

// conflict says why column c of a payload cannot go into table column col,
// or returns "".
func conflict(col columnInfo, c messages.Column) string {
	if !col.writable {
		return fmt.Sprintf("column %q is %s, which gatekeeper cannot write", col.name, col.rawType)
	}
	if !col.typ.Compatible(c.Type) {
		return fmt.Sprintf("column %q is %s, the payload gives %s", col.name, col.typ, c.Type)
	}
	return ""
}

// storedType is the type a column reads back as: a STRING keeps no length.
func storedType(t messages.ColumnType) messages.ColumnType {
	t.MaxLength = 0
	return t
}

// isSchemaProblem reports whether a rejection depends on the tables'
// schema, and so must be confirmed on a fresh read.
func isSchemaProblem(problem error) bool {
	return errors.Is(problem, warehouse.ErrTableNotFound) ||
		errors.Is(problem, warehouse.ErrColumnNotFound) ||
		errors.Is(problem, warehouse.ErrTypeConflict) ||
		errors.Is(problem, errRequiredColumn)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
