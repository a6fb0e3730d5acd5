package warehouse

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gatekeeper/gatekeeper/messages"
)

// ReservedPrefix starts the names of gatekeeper's own tables: the ledger,
// and whatever an adapter keeps beside it. No payload may name such a table,
// and Reader.Tables does not list them.
const ReservedPrefix = "_gatekeeper"

// IsReserved reports whether table belongs to gatekeeper. Backends differ in
// whether table names are case-sensitive; folding case refuses the names
// that collide with a reserved one in either.
func IsReserved(table string) bool {
	return len(table) >= len(ReservedPrefix) && strings.EqualFold(table[:len(ReservedPrefix)], ReservedPrefix)
}

// StoredType is the type a column created for a payload column of type t
// reads back as: a STRING keeps no length, because the gate enforces it and
// neither backend needs it.
func StoredType(t messages.ColumnType) messages.ColumnType {
	t.MaxLength = 0
	return t
}

// Schema returns c itself, which makes ColumnSchema a Column for adapters
// that keep nothing more of a column.
func (c ColumnSchema) Schema() ColumnSchema { return c }

// Column is a table column as an adapter keeps it.
type Column interface {
	// Schema is the column's stored spelling and type.
	Schema() ColumnSchema
}

// Table is an existing table as an adapter read it.
type Table[C Column] interface {
	// Column returns the column of that name, matched case-insensitively:
	// both backends fold the case of column names.
	Column(name string) (C, bool)
}

// Lookup reads an existing table; ok is false when there is none. An error
// is a failure to read, and fails the check, unless it is an
// *UnusableTableError: then no payload can use the table, and that is the
// payload's problem.
type Lookup[C Column, T Table[C]] func(ctx context.Context, table string) (t T, ok bool, err error)

// UnusableTableError is a Lookup's answer for a table that exists but that
// no payload may write (in SQLite, one with a column gatekeeper did not
// create).
type UnusableTableError struct{ Err error }

func (e *UnusableTableError) Error() string { return e.Err.Error() }
func (e *UnusableTableError) Unwrap() error { return e.Err }

// Checker is implemented by adapters that can say whether a payload would
// apply, against the current schema, without writing anything: the same
// plan Apply checks a payload with before its DDL runs. A non-nil problem
// is the payload's fault (Apply would reject it); a non-nil err is the
// warehouse's (the check could not be made).
type Checker interface {
	Check(ctx context.Context, activities []messages.Activity) (problem, err error)
}

// Rules are an adapter's part of planning: what its backend refuses beyond
// the rules every warehouse shares. Only NewColumn is required.
type Rules[C Column, T Table[C]] struct {
	// FoldTableCase makes table names that differ only in case one table,
	// as in SQLite. BigQuery's table names are case-sensitive.
	FoldTableCase bool
	// Table checks a table name that is neither empty nor reserved.
	Table func(name string) error
	// NewColumn is the column an insert adds for payload column c.
	NewColumn func(c messages.Column) C
	// Column checks payload column c against the column col it names,
	// existing or added by the group, before their types are compared.
	Column func(col C, c messages.Column) error
	// Value checks that c's value, never nil here and of the Go type of
	// its column (CheckValue), can be written to col.
	Value func(col C, c messages.Column) error
	// Insert checks an insert whose columns passed every other rule.
	// existing is the table as read; ok is false when the group creates it.
	Insert func(existing T, ok bool, columns []ResolvedColumn[C]) error
}

// Plan decides, payload by payload and before any DDL runs, whether the
// payloads of a group can apply in order: every delete names a table and
// columns that exist by then, counting what earlier activities of the
// payload and earlier accepted payloads create, and no column's type
// conflicts with the payload's. It follows the tables and columns accepted
// payloads create, so the DDL they need can run before their rows are
// written.
//
// A payload's problems are found without writing anything, so a rejected
// payload leaves no schema behind for the payloads after it.
type Plan[C Column, T Table[C]] struct {
	rules  Rules[C, T]
	lookup Lookup[C, T]
	tables map[string]*PlannedTable[C, T]
	// order lists the keys of tables in the order they were planned.
	order []string
}

// PlannedTable is a table the accepted payloads create or add columns to.
type PlannedTable[C Column, T Table[C]] struct {
	// Name is the spelling of the first activity that named the table.
	Name string
	// Existing is the table as read; Exists is false when the group
	// creates it.
	Existing T
	Exists   bool
	// Added are the columns the group adds (all of them for a table it
	// creates), in the order of their first appearance.
	Added    []C
	addedKey map[string]int
}

// ResolvedActivity is an activity checked against the schema it will meet.
type ResolvedActivity[C Column] struct {
	Op      messages.Operation
	Table   string
	Columns []ResolvedColumn[C]
}

// ResolvedColumn is a payload column with the table column it names.
type ResolvedColumn[C Column] struct {
	Col C
	// Key is the column's name lower-cased, for matching names as both
	// backends do.
	Key   string
	Value any
}

// Checked is the outcome of checking one payload.
type Checked[C Column, T Table[C]] struct {
	// Problem is why the payload cannot apply; nil when it can. It is the
	// payload's fault, not the backend's.
	Problem error
	// Activities are the payload's activities, resolved; nil with a
	// Problem.
	Activities []ResolvedActivity[C]
	// Consulted are the tables the check read, spelled as the payload
	// first did, for reading them again before a rejection is made final.
	Consulted []string
	// views is what the payload creates, per table, for Accept.
	views []*payloadView[C, T]
}

// payloadView is one table as one payload sees it while it is checked: the
// group's plan plus what the payload's own earlier activities create.
type payloadView[C Column, T Table[C]] struct {
	key      string
	name     string
	existing T
	read     bool // existing holds a table
	exists   bool // the table exists when the activity runs
	group    *PlannedTable[C, T]
	added    []C
	addedKey map[string]int
}

func (v *payloadView[C, T]) column(name string) (C, bool) {
	if v.read {
		if c, ok := v.existing.Column(name); ok {
			return c, true
		}
	}
	key := strings.ToLower(name)
	if v.group != nil {
		if i, ok := v.group.addedKey[key]; ok {
			return v.group.Added[i], true
		}
	}
	if i, ok := v.addedKey[key]; ok {
		return v.added[i], true
	}
	var none C
	return none, false
}

func (v *payloadView[C, T]) add(key string, c C) {
	if v.addedKey == nil {
		v.addedKey = map[string]int{}
	}
	v.addedKey[key] = len(v.added)
	v.added = append(v.added, c)
}

// NewPlan returns an empty plan reading existing tables through lookup.
func NewPlan[C Column, T Table[C]](rules Rules[C, T], lookup Lookup[C, T]) *Plan[C, T] {
	return &Plan[C, T]{rules: rules, lookup: lookup}
}

// Tables returns the tables the accepted payloads create or add columns
// to, in the order they were first planned.
func (p *Plan[C, T]) Tables() []*PlannedTable[C, T] {
	tables := make([]*PlannedTable[C, T], len(p.order))
	for i, key := range p.order {
		tables[i] = p.tables[key]
	}
	return tables
}

func (p *Plan[C, T]) tableKey(table string) string {
	if p.rules.FoldTableCase {
		return strings.ToLower(table)
	}
	return table
}

// Check checks a payload's activities against the tables as they will be
// after the payloads accepted so far. Nothing of the payload enters the
// plan until Accept. err is a failure to read a table.
func (p *Plan[C, T]) Check(ctx context.Context, activities []messages.Activity) (Checked[C, T], error) {
	var res Checked[C, T]
	view := func(table string) (*payloadView[C, T], error) {
		key := p.tableKey(table)
		for _, v := range res.views {
			if v.key == key {
				return v, nil
			}
		}
		v := &payloadView[C, T]{key: key, name: table}
		res.Consulted = append(res.Consulted, table)
		if pt, ok := p.tables[key]; ok {
			v.group, v.existing, v.read, v.exists = pt, pt.Existing, pt.Exists, true
		} else {
			existing, ok, err := p.lookup(ctx, table)
			if err != nil {
				return nil, err
			}
			v.existing, v.read, v.exists = existing, ok, ok
		}
		res.views = append(res.views, v)
		return v, nil
	}

	for i, a := range activities {
		problem := func(err error) (Checked[C, T], error) {
			res.Problem = fmt.Errorf("activities[%d]: %s on table %q: %w", i, a.Op, a.Table, err)
			res.Activities, res.views = nil, nil
			return res, nil
		}
		if err := p.checkTableName(a.Table); err != nil {
			return problem(err)
		}
		if len(a.Columns) == 0 {
			return problem(errors.New("no columns"))
		}
		v, err := view(a.Table)
		if err != nil {
			if errors.As(err, new(*UnusableTableError)) {
				return problem(err)
			}
			return Checked[C, T]{}, err
		}
		resolved := ResolvedActivity[C]{Op: a.Op, Table: a.Table, Columns: make([]ResolvedColumn[C], 0, len(a.Columns))}
		switch a.Op {
		case messages.OpInsert:
			v.exists = true
			for _, c := range a.Columns {
				key := strings.ToLower(c.Name)
				col, found := v.column(c.Name)
				if !found {
					col = p.rules.NewColumn(c)
					v.add(key, col)
				}
				if err := p.checkColumn(col, c); err != nil {
					return problem(err)
				}
				resolved.Columns = append(resolved.Columns, ResolvedColumn[C]{Col: col, Key: key, Value: c.Value})
			}
			if p.rules.Insert != nil {
				if err := p.rules.Insert(v.existing, v.read, resolved.Columns); err != nil {
					return problem(err)
				}
			}
		case messages.OpDelete:
			if !v.exists {
				return problem(ErrTableNotFound)
			}
			for _, c := range a.Columns {
				col, found := v.column(c.Name)
				if !found {
					return problem(fmt.Errorf("column %q: %w", c.Name, ErrColumnNotFound))
				}
				if err := p.checkColumn(col, c); err != nil {
					return problem(err)
				}
				resolved.Columns = append(resolved.Columns, ResolvedColumn[C]{Col: col, Key: strings.ToLower(c.Name), Value: c.Value})
			}
		default:
			return problem(errors.New("unknown operation"))
		}
		res.Activities = append(res.Activities, resolved)
	}
	return res, nil
}

func (p *Plan[C, T]) checkTableName(table string) error {
	switch {
	case table == "":
		return errors.New("empty table name")
	case IsReserved(table):
		return fmt.Errorf("table names starting with %q are reserved for gatekeeper", ReservedPrefix)
	case p.rules.Table != nil:
		return p.rules.Table(table)
	}
	return nil
}

// checkColumn checks payload column c against the table column col it
// names.
func (p *Plan[C, T]) checkColumn(col C, c messages.Column) error {
	if p.rules.Column != nil {
		if err := p.rules.Column(col, c); err != nil {
			return err
		}
	}
	stored := col.Schema()
	if !stored.Type.Compatible(c.Type) {
		return fmt.Errorf("column %q is %s, the payload gives %s: %w", stored.Name, stored.Type, c.Type, ErrTypeConflict)
	}
	if c.Value == nil {
		return nil
	}
	err := CheckValue(stored.Type, c.Value)
	if err == nil && p.rules.Value != nil {
		err = p.rules.Value(col, c)
	}
	if err != nil {
		return fmt.Errorf("column %q: %w", c.Name, err)
	}
	return nil
}

// Accept makes what a checked payload without a Problem creates visible to
// the payloads after it, and part of Tables.
func (p *Plan[C, T]) Accept(res Checked[C, T]) {
	for _, v := range res.views {
		if len(v.added) == 0 {
			continue
		}
		pt, ok := p.tables[v.key]
		if !ok {
			pt = &PlannedTable[C, T]{Name: v.name, Existing: v.existing, Exists: v.read, addedKey: map[string]int{}}
			if p.tables == nil {
				p.tables = map[string]*PlannedTable[C, T]{}
			}
			p.tables[v.key] = pt
			p.order = append(p.order, v.key)
		}
		for _, c := range v.added {
			pt.addedKey[strings.ToLower(c.Schema().Name)] = len(pt.Added)
			pt.Added = append(pt.Added, c)
		}
	}
}
