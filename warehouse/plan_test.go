package warehouse_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// table is an existing table of the tests' backend, by lower-cased column
// name.
type table map[string]warehouse.ColumnSchema

func (t table) Column(name string) (warehouse.ColumnSchema, bool) {
	c, ok := t[strings.ToLower(name)]
	return c, ok
}

type backend struct {
	tables map[string]table
	// errs fail the lookup of a table.
	errs  map[string]error
	reads []string
}

func (b *backend) lookup(_ context.Context, name string) (table, bool, error) {
	b.reads = append(b.reads, name)
	if err := b.errs[name]; err != nil {
		return nil, false, err
	}
	t, ok := b.tables[name]
	return t, ok, nil
}

var (
	intType    = messages.ColumnType{Base: messages.TypeInt64}
	stringType = messages.ColumnType{Base: messages.TypeString}
)

func icol(name string, v any) messages.Column { return warehousetest.Col(name, intType, v) }
func scol(name string, v any) messages.Column { return warehousetest.Col(name, stringType, v) }

func baseRules() warehouse.Rules[warehouse.ColumnSchema, table] {
	return warehouse.Rules[warehouse.ColumnSchema, table]{
		NewColumn: func(c messages.Column) warehouse.ColumnSchema {
			return warehouse.ColumnSchema{Name: c.Name, Type: warehouse.StoredType(c.Type)}
		},
	}
}

// existing holds table "t" with an INT64 column "A".
func existing() *backend {
	return &backend{tables: map[string]table{"t": {"a": {Name: "A", Type: intType}}}}
}

func check(t *testing.T, plan *warehouse.Plan[warehouse.ColumnSchema, table], activities ...messages.Activity) warehouse.Checked[warehouse.ColumnSchema, table] {
	t.Helper()
	res, err := plan.Check(context.Background(), activities)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return res
}

func expectProblem(t *testing.T, res warehouse.Checked[warehouse.ColumnSchema, table], target error, text string) {
	t.Helper()
	if res.Problem == nil {
		t.Fatalf("no problem, want %q", text)
	}
	if target != nil && !errors.Is(res.Problem, target) {
		t.Errorf("problem %q is not %v", res.Problem, target)
	}
	if res.Problem.Error() != text {
		t.Errorf("problem %q, want %q", res.Problem, text)
	}
	if res.Activities != nil {
		t.Errorf("a payload with a problem has resolved activities %v", res.Activities)
	}
}

func expectNoProblem(t *testing.T, res warehouse.Checked[warehouse.ColumnSchema, table]) {
	t.Helper()
	if res.Problem != nil {
		t.Fatalf("problem %v, want none", res.Problem)
	}
}

func TestPlan_rejects_what_no_table_can_take(t *testing.T) {
	for _, tc := range []struct {
		name     string
		activity messages.Activity
		want     string
	}{
		{"empty table name", warehousetest.Insert("", icol("a", int64(1))),
			`activities[0]: insert on table "": empty table name`},
		{"reserved table name", warehousetest.Insert("_GateKeeper_mine", icol("a", int64(1))),
			`activities[0]: insert on table "_GateKeeper_mine": table names starting with "_gatekeeper" are reserved for gatekeeper`},
		{"no columns", warehousetest.Delete("t"),
			`activities[0]: delete on table "t": no columns`},
		{"unknown operation", messages.Activity{Op: "upsert", Table: "t", Columns: []messages.Column{icol("a", int64(1))}},
			`activities[0]: upsert on table "t": unknown operation`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := warehouse.NewPlan(baseRules(), existing().lookup)
			expectProblem(t, check(t, plan, tc.activity), nil, tc.want)
		})
	}
}

func TestPlan_deletes_need_their_table_and_columns(t *testing.T) {
	b := existing()
	plan := warehouse.NewPlan(baseRules(), b.lookup)

	expectProblem(t, check(t, plan, warehousetest.Delete("missing", icol("a", int64(1)))),
		warehouse.ErrTableNotFound, `activities[0]: delete on table "missing": table not found`)
	expectProblem(t, check(t, plan, warehousetest.Delete("t", icol("b", int64(1)))),
		warehouse.ErrColumnNotFound, `activities[0]: delete on table "t": column "b": column not found`)
	expectProblem(t, check(t, plan, warehousetest.Delete("t", scol("a", "x"))),
		warehouse.ErrTypeConflict, `activities[0]: delete on table "t": column "A" is INT64, the payload gives STRING: column type conflict`)
	expectProblem(t, check(t, plan, warehousetest.Insert("t", scol("a", "x"))),
		warehouse.ErrTypeConflict, `activities[0]: insert on table "t": column "A" is INT64, the payload gives STRING: column type conflict`)

	res := check(t, plan, warehousetest.Delete("t", icol("a", int64(1))))
	expectNoProblem(t, res)
	if got := res.Activities[0].Columns[0]; got.Col.Name != "A" || got.Key != "a" || got.Value != int64(1) {
		t.Errorf("resolved column %+v, want the stored column A with the payload's value", got)
	}
}

func TestPlan_delete_may_use_what_earlier_activities_create(t *testing.T) {
	plan := warehouse.NewPlan(baseRules(), existing().lookup)
	res := check(t, plan,
		warehousetest.Insert("new", scol("s", "x")),
		warehousetest.Delete("new", scol("S", "x")),
		warehousetest.Insert("t", scol("b", "y")),
		warehousetest.Delete("t", icol("a", nil), scol("b", "y")),
	)
	expectNoProblem(t, res)
	if len(res.Activities) != 4 {
		t.Fatalf("%d resolved activities, want 4", len(res.Activities))
	}
	// The type of a later use is checked against what the insert created.
	res = check(t, plan, warehousetest.Insert("new", scol("s", "x")), warehousetest.Delete("new", icol("s", int64(1))))
	expectProblem(t, res, warehouse.ErrTypeConflict,
		`activities[1]: delete on table "new": column "s" is STRING, the payload gives INT64: column type conflict`)
}

func TestPlan_payloads_see_only_what_accepted_payloads_create(t *testing.T) {
	b := existing()
	plan := warehouse.NewPlan(baseRules(), b.lookup)

	rejected := check(t, plan, warehousetest.Insert("t", scol("lost", "x")), warehousetest.Delete("missing", icol("a", int64(1))))
	expectProblem(t, rejected, warehouse.ErrTableNotFound, `activities[1]: delete on table "missing": table not found`)
	plan.Accept(rejected)
	checkedOnly := check(t, plan, warehousetest.Insert("fresh", icol("x", int64(1))))
	expectNoProblem(t, checkedOnly)

	expectProblem(t, check(t, plan, warehousetest.Delete("t", scol("lost", "x"))),
		warehouse.ErrColumnNotFound, `activities[0]: delete on table "t": column "lost": column not found`)
	expectProblem(t, check(t, plan, warehousetest.Delete("fresh", icol("x", int64(1)))),
		warehouse.ErrTableNotFound, `activities[0]: delete on table "fresh": table not found`)
	if len(plan.Tables()) != 0 {
		t.Fatalf("tables %v planned without an accepted payload", plan.Tables())
	}

	accepted := check(t, plan, warehousetest.Insert("fresh", icol("x", int64(1))), warehousetest.Insert("t", scol("b", "y"), scol("c", "z")))
	expectNoProblem(t, accepted)
	plan.Accept(accepted)
	expectNoProblem(t, check(t, plan, warehousetest.Delete("fresh", icol("X", int64(1))), warehousetest.Delete("t", scol("b", "y"), scol("C", "z"))))

	tables := plan.Tables()
	if len(tables) != 2 {
		t.Fatalf("%d tables planned, want fresh and t", len(tables))
	}
	fresh, widened := tables[0], tables[1]
	if fresh.Name != "fresh" || fresh.Exists || len(fresh.Added) != 1 || fresh.Added[0].Name != "x" {
		t.Errorf("fresh planned as %+v, want a new table with column x", fresh)
	}
	if widened.Name != "t" || !widened.Exists || len(widened.Added) != 2 || widened.Added[0].Name != "b" || widened.Added[1].Name != "c" {
		t.Errorf("t planned as %+v, want the existing table with columns b and c added", widened)
	}
	if _, ok := widened.Existing.Column("a"); !ok {
		t.Errorf("t's plan lost the table as read")
	}
}

func TestPlan_reads_each_table_once_per_payload(t *testing.T) {
	b := existing()
	plan := warehouse.NewPlan(baseRules(), b.lookup)
	res := check(t, plan,
		warehousetest.Delete("t", icol("a", int64(1))),
		warehousetest.Insert("u", icol("a", int64(1))),
		warehousetest.Insert("t", icol("a", int64(1))),
	)
	expectNoProblem(t, res)
	if !slices.Equal(b.reads, []string{"t", "u"}) || !slices.Equal(res.Consulted, []string{"t", "u"}) {
		t.Errorf("read %v and consulted %v, want t and u once each", b.reads, res.Consulted)
	}
}

func TestPlan_table_names_fold_case_only_when_told(t *testing.T) {
	activities := []messages.Activity{warehousetest.Insert("Mixed", icol("a", int64(1))), warehousetest.Delete("mixed", icol("a", int64(1)))}

	plan := warehouse.NewPlan(baseRules(), existing().lookup)
	expectProblem(t, check(t, plan, activities...), warehouse.ErrTableNotFound,
		`activities[1]: delete on table "mixed": table not found`)

	rules := baseRules()
	rules.FoldTableCase = true
	plan = warehouse.NewPlan(rules, existing().lookup)
	res := check(t, plan, activities...)
	expectNoProblem(t, res)
	if !slices.Equal(res.Consulted, []string{"Mixed"}) {
		t.Errorf("consulted %v, want the first spelling once", res.Consulted)
	}
	plan.Accept(res)
	if got := plan.Tables(); len(got) != 1 || got[0].Name != "Mixed" {
		t.Errorf("tables %+v, want one named as first spelled", got)
	}
}

func TestPlan_lookup_errors(t *testing.T) {
	unusable := errors.New("table has a column nobody can write")
	broken := errors.New("metadata unavailable")
	b := existing()
	b.errs = map[string]error{"foreign": &warehouse.UnusableTableError{Err: unusable}, "down": broken}
	plan := warehouse.NewPlan(baseRules(), b.lookup)

	expectProblem(t, check(t, plan, warehousetest.Insert("foreign", icol("a", int64(1)))), unusable,
		`activities[0]: insert on table "foreign": table has a column nobody can write`)
	if _, err := plan.Check(context.Background(), []messages.Activity{warehousetest.Insert("down", icol("a", int64(1)))}); !errors.Is(err, broken) {
		t.Fatalf("Check on an unreadable table: %v, want the read's error", err)
	}
}

func TestPlan_adapter_rules(t *testing.T) {
	b := existing()
	b.tables["t"]["frozen"] = warehouse.ColumnSchema{Name: "frozen", Type: stringType}
	var valuesChecked []string
	var inserts []string
	rules := baseRules()
	rules.Table = func(name string) error {
		if strings.HasPrefix(name, "x_") {
			return errors.New("x_ tables are the backend's")
		}
		return nil
	}
	rules.Column = func(col warehouse.ColumnSchema, _ messages.Column) error {
		if col.Name == "frozen" {
			return errors.New("frozen is read-only")
		}
		return nil
	}
	rules.Value = func(_ warehouse.ColumnSchema, c messages.Column) error {
		valuesChecked = append(valuesChecked, c.Name)
		if c.Value == "bad" {
			return errors.New("bad value")
		}
		return nil
	}
	rules.Insert = func(existing table, ok bool, columns []warehouse.ResolvedColumn[warehouse.ColumnSchema]) error {
		seen := "new"
		if _, hasA := existing.Column("a"); ok && hasA {
			seen = "read"
		}
		inserts = append(inserts, seen+":"+columns[0].Key)
		return nil
	}
	plan := warehouse.NewPlan(rules, b.lookup)

	expectProblem(t, check(t, plan, warehousetest.Insert("x_t", icol("a", int64(1)))), nil,
		`activities[0]: insert on table "x_t": x_ tables are the backend's`)
	// The adapter's column rule comes before the types are compared.
	expectProblem(t, check(t, plan, warehousetest.Delete("t", icol("frozen", int64(1)))), nil,
		`activities[0]: delete on table "t": frozen is read-only`)
	expectProblem(t, check(t, plan, warehousetest.Insert("t", scol("s", "bad"))), nil,
		`activities[0]: insert on table "t": column "s": bad value`)

	valuesChecked = nil
	expectNoProblem(t, check(t, plan, warehousetest.Insert("t", icol("a", nil), scol("s", "ok")), warehousetest.Insert("new", icol("n", int64(1)))))
	if !slices.Equal(valuesChecked, []string{"s", "n"}) {
		t.Errorf("values checked %v, want s and n (NULLs are not checked)", valuesChecked)
	}
	if !slices.Equal(inserts, []string{"read:a", "new:n"}) {
		t.Errorf("insert rule saw %v, want t as read and new as created", inserts)
	}
}

func TestIsReserved(t *testing.T) {
	for name, want := range map[string]bool{
		warehouse.LedgerTable: true, "_GATEKEEPER": true, "_gatekeeperx": true,
		"_gatekeepe": false, "gatekeeper": false, "": false, "t_gatekeeper": false,
	} {
		if got := warehouse.IsReserved(name); got != want {
			t.Errorf("IsReserved(%q) = %v, want %v", name, got, want)
		}
	}
}
