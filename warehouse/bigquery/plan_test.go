package bigquery

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gatekeeper/gatekeeper/messages"
)

// ---- building resolved activities without a schema check ----

var (
	intCol    = columnInfo{name: "a", typ: messages.ColumnType{Base: messages.TypeInt64}, writable: true}
	strCol    = columnInfo{name: "b", typ: messages.ColumnType{Base: messages.TypeString}, writable: true}
	otherCol  = columnInfo{name: "c", typ: messages.ColumnType{Base: messages.TypeInt64}, writable: true}
	jsonCol   = columnInfo{name: "j", typ: messages.ColumnType{Base: messages.TypeJSON}, writable: true}
	numCol    = columnInfo{name: "n", typ: messages.ColumnType{Base: messages.TypeNumeric, Precision: 10, Scale: 2}, writable: true}
	testQual  = "`proj`.`ds`."
	testTable = "t"
)

type cv struct {
	col   columnInfo
	value any
}

func rcols(vals ...cv) []resolvedColumn {
	out := make([]resolvedColumn, len(vals))
	for i, v := range vals {
		out[i] = resolvedColumn{Col: v.col, Key: strings.ToLower(v.col.name), Value: v.value}
	}
	return out
}

func ins(table string, vals ...cv) resolvedActivity {
	return resolvedActivity{Op: messages.OpInsert, Table: table, Columns: rcols(vals...)}
}

func dl(table string, vals ...cv) resolvedActivity {
	return resolvedActivity{Op: messages.OpDelete, Table: table, Columns: rcols(vals...)}
}

func a(v any) cv { return cv{intCol, v} }
func b(v any) cv { return cv{strCol, v} }
func c(v any) cv { return cv{otherCol, v} }

func planOf(t *testing.T, payloads ...[]resolvedActivity) *jobPlan {
	t.Helper()
	jp := newJobPlan(testQual, 0)
	for i, p := range payloads {
		if err := jp.add(fmt.Sprintf("id-%d", i), "", p); err != nil {
			t.Fatal(err)
		}
	}
	return jp
}

func shape(jp *jobPlan, table string) string {
	tp := jp.byTable[table]
	if tp == nil {
		return ""
	}
	var parts []string
	for _, bt := range tp.batches {
		kind := "D"
		if bt.insert {
			kind = "I"
		}
		parts = append(parts, fmt.Sprintf("%s%d", kind, len(bt.ops)))
	}
	return strings.Join(parts, " ")
}

// ---- ordering rules ----

func TestPlanBatchesTheExampleShapeIntoOneDeleteAndOneInsert(t *testing.T) {
	// The README's payload: delete by (a, c, e), insert (a, b, c). The
	// inserted row has no e, so it can never match a delete naming e.
	eCol := columnInfo{name: "e", typ: messages.ColumnType{Base: messages.TypeString}, writable: true}
	var payloads [][]resolvedActivity
	for i := range 50 {
		payloads = append(payloads, []resolvedActivity{
			dl(testTable, a(int64(3)), b("2019-04-28 10:24:30.183414"), cv{eCol, "something"}),
			ins(testTable, a(int64(i)), b("Backup and Restore"), c(int64(7))),
		})
	}
	jp := planOf(t, payloads...)
	if got := shape(jp, testTable); got != "D50 I50" {
		t.Fatalf("batches %q, want one delete batch and one insert batch", got)
	}
	if got := jp.dmlStatements()[testTable]; got != 2 {
		t.Fatalf("%d DML statements, want 2", got)
	}
}

func TestPlanKeepsAnInsertBeforeADeleteItMayMatch(t *testing.T) {
	jp := planOf(t,
		[]resolvedActivity{ins(testTable, a(int64(1)))},
		[]resolvedActivity{dl(testTable, a(int64(1)))},
		[]resolvedActivity{ins(testTable, a(int64(2)))},
	)
	// The delete must see the first row; the second insert may join the
	// first batch (it cannot match a = 1).
	if got := shape(jp, testTable); got != "I2 D1" {
		t.Fatalf("batches %q, want %q", got, "I2 D1")
	}
}

func TestPlanKeepsADeleteBeforeAnInsertItMayMatch(t *testing.T) {
	jp := planOf(t,
		[]resolvedActivity{dl(testTable, a(int64(3))), ins(testTable, a(int64(3)))},
		[]resolvedActivity{dl(testTable, a(int64(4))), ins(testTable, a(int64(4)))},
	)
	// Payload 1's delete cannot match payload 0's insert (3 != 4), so it
	// joins the first delete batch; each insert stays after its delete.
	if got := shape(jp, testTable); got != "D2 I2" {
		t.Fatalf("batches %q, want %q", got, "D2 I2")
	}
	jp = planOf(t,
		[]resolvedActivity{dl(testTable, a(int64(3))), ins(testTable, a(int64(3)))},
		[]resolvedActivity{dl(testTable, a(int64(3))), ins(testTable, a(int64(3)))},
	)
	if got := shape(jp, testTable); got != "D1 I1 D1 I1" {
		t.Fatalf("batches %q, want %q", got, "D1 I1 D1 I1")
	}
}

func TestPlanTreatsAMissingColumnAsNull(t *testing.T) {
	// The insert lacks c, so c IS NULL matches it and c = 5 does not.
	jp := planOf(t,
		[]resolvedActivity{ins(testTable, a(int64(1)))},
		[]resolvedActivity{dl(testTable, c(nil))},
	)
	if got := shape(jp, testTable); got != "I1 D1" {
		t.Fatalf("IS NULL delete: batches %q, want %q", got, "I1 D1")
	}
	jp = planOf(t,
		[]resolvedActivity{dl(testTable, a(int64(9)))},
		[]resolvedActivity{ins(testTable, a(int64(1)))},
		[]resolvedActivity{dl(testTable, c(int64(5)))},
	)
	if got := shape(jp, testTable); got != "D2 I1" {
		t.Fatalf("= 5 delete: batches %q, want %q", got, "D2 I1")
	}
}

func TestPlanKeepsOverlappingDeletesInOrder(t *testing.T) {
	// d2 (b = x) may match rows d3 (a = 1) matches; moving d3 before d2
	// would count those rows to the wrong payload.
	jp := planOf(t,
		[]resolvedActivity{dl(testTable, a(int64(0)))},
		[]resolvedActivity{ins(testTable, a(int64(1)), b("x"))},
		[]resolvedActivity{dl(testTable, b("x"))},
		[]resolvedActivity{ins(testTable, a(int64(2)), b("y"))},
		[]resolvedActivity{dl(testTable, a(int64(1)))},
	)
	if got := shape(jp, testTable); got != "D1 I2 D2" {
		t.Fatalf("batches %q, want %q", got, "D1 I2 D2")
	}
}

func TestPlanIsConservativeAboutValuesItCannotCompare(t *testing.T) {
	for _, tc := range []struct {
		name       string
		insert     cv
		del        cv
		mayReorder bool
	}{
		{"different ints", a(int64(1)), a(int64(2)), true},
		{"equal ints", a(int64(1)), a(int64(1)), false},
		{"different JSON texts may be equal JSON", cv{jsonCol, `{"a":1.0}`}, cv{jsonCol, `{"a":1}`}, false},
		{"decimals within the scale", cv{numCol, "1.5"}, cv{numCol, "1.25"}, true},
		{"decimals beyond the scale may round equal", cv{numCol, "1.254"}, cv{numCol, "1.25"}, false},
		{"collated strings", cv{columnInfo{name: "s", typ: messages.ColumnType{Base: messages.TypeString}, writable: true, collated: true}, "A"},
			cv{columnInfo{name: "s", typ: messages.ColumnType{Base: messages.TypeString}, writable: true, collated: true}, "a"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jp := planOf(t,
				[]resolvedActivity{dl(testTable, a(int64(99)))},
				[]resolvedActivity{ins(testTable, tc.insert)},
				[]resolvedActivity{dl(testTable, tc.del)},
			)
			want := "D1 I1 D1"
			if tc.mayReorder {
				want = "D2 I1"
			}
			if got := shape(jp, testTable); got != want {
				t.Fatalf("batches %q, want %q", got, want)
			}
		})
	}
}

// ---- the planner against a reference: running activities one by one ----

type memRow map[string]any

func matches(row memRow, cols []opColumn) bool {
	for _, c := range cols {
		v := row[c.key]
		if c.value == nil {
			if v != nil {
				return false
			}
			continue
		}
		if v == nil || v != c.value {
			return false
		}
	}
	return true
}

func rowOf(cols []opColumn) memRow {
	r := memRow{}
	for _, c := range cols {
		r[c.key] = c.value
	}
	return r
}

func rowKey(r memRow) string {
	return fmt.Sprintf("a=%v b=%v c=%v", r["a"], r["b"], r["c"])
}

// runSequential applies every op in group order, as SQLite does.
func runSequential(ops []*op) (rows []string, counts map[int]int) {
	var table []memRow
	counts = map[int]int{}
	for _, o := range ops {
		if o.insert {
			table = append(table, rowOf(o.cols))
			counts[o.payload]++
			continue
		}
		kept := table[:0]
		for _, r := range table {
			if matches(r, o.cols) {
				counts[o.payload]++
				continue
			}
			kept = append(kept, r)
		}
		table = kept
	}
	for _, r := range table {
		rows = append(rows, rowKey(r))
	}
	slices.Sort(rows)
	return rows, counts
}

// runPlan applies the plan's batches as the script does: an insert batch
// adds its rows, a delete batch removes every row matching any predicate
// and counts it under the first predicate that matches.
func runPlan(tp *tablePlan) (rows []string, counts map[int]int) {
	var table []memRow
	counts = map[int]int{}
	for _, bt := range tp.batches {
		if bt.insert {
			for _, o := range bt.ops {
				table = append(table, rowOf(o.cols))
				counts[o.payload]++
			}
			continue
		}
		kept := table[:0]
		for _, r := range table {
			removed := false
			for _, o := range bt.ops {
				if matches(r, o.cols) {
					counts[o.payload]++
					removed = true
					break
				}
			}
			if !removed {
				kept = append(kept, r)
			}
		}
		table = kept
	}
	for _, r := range table {
		rows = append(rows, rowKey(r))
	}
	slices.Sort(rows)
	return rows, counts
}

func TestPlanMatchesSequentialExecution(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ints := []any{nil, int64(0), int64(1), int64(2)}
	strs := []any{nil, "x", "y"}
	randomColumns := func() []cv {
		var cols []cv
		for len(cols) == 0 {
			if rng.IntN(2) == 0 {
				cols = append(cols, a(ints[rng.IntN(len(ints))]))
			}
			if rng.IntN(2) == 0 {
				cols = append(cols, b(strs[rng.IntN(len(strs))]))
			}
			if rng.IntN(3) == 0 {
				cols = append(cols, c(ints[rng.IntN(len(ints))]))
			}
		}
		return cols
	}
	var batchesSaved, opsSeen int
	for iteration := range 3000 {
		var payloads [][]resolvedActivity
		for range 1 + rng.IntN(25) {
			var acts []resolvedActivity
			for range 1 + rng.IntN(3) {
				if rng.IntN(2) == 0 {
					acts = append(acts, ins(testTable, randomColumns()...))
				} else {
					acts = append(acts, dl(testTable, randomColumns()...))
				}
			}
			payloads = append(payloads, acts)
		}
		jp := planOf(t, payloads...)
		tp := jp.byTable[testTable]
		var inOrder []*op
		for p, acts := range payloads {
			for _, act := range acts {
				o := &op{payload: p, insert: act.Op == messages.OpInsert}
				for _, rc := range act.Columns {
					o.cols = append(o.cols, opColumn{col: rc.Col, key: rc.Key, value: rc.Value})
				}
				inOrder = append(inOrder, o)
			}
		}
		wantRows, wantCounts := runSequential(inOrder)
		gotRows, gotCounts := runPlan(tp)
		if !slices.Equal(gotRows, wantRows) || fmt.Sprint(gotCounts) != fmt.Sprint(wantCounts) {
			t.Fatalf("iteration %d: plan %s\n rows   %v\n want   %v\n counts %v\n want   %v",
				iteration, shape(jp, testTable), gotRows, wantRows, gotCounts, wantCounts)
		}
		opsSeen += len(inOrder)
		batchesSaved += len(inOrder) - len(tp.batches)
	}
	if batchesSaved == 0 {
		t.Fatal("the planner never batched anything")
	}
	t.Logf("3000 random groups: %d activities in %d batches", opsSeen, opsSeen-batchesSaved)
}

// ---- rendering ----

func TestRenderBindsEveryValueAndWritesNoneIntoTheScript(t *testing.T) {
	awkward := []string{"it's", "'; DROP TABLE t; --", "`) OR 1=1 --", "line\nbreak", "@p0", "héllo ✓"}
	var payloads [][]resolvedActivity
	for i, s := range awkward {
		payloads = append(payloads, []resolvedActivity{
			ins(testTable, a(int64(1000+i)), b(s), c(nil)),
			dl(testTable, b(s), c(nil)),
		})
	}
	jp := planOf(t, payloads...)
	script := jp.render(deletedTableName("job"))
	for _, s := range awkward[:4] {
		if strings.Contains(script, s) {
			t.Errorf("script contains the value %q:\n%s", s, script)
		}
	}
	if strings.Contains(script, "1000") {
		t.Errorf("script contains an INT64 value:\n%s", script)
	}
	// One parameter per payload id and per non-NULL value.
	if want := len(awkward) * (1 + 2 + 1); len(jp.params) != want {
		t.Errorf("%d parameters, want %d", len(jp.params), want)
	}
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`@(p\d+)`).FindAllStringSubmatch(script, -1) {
		used[m[1]] = true
	}
	for _, p := range jp.params {
		if !used[p.Name] {
			t.Errorf("parameter %s is never used", p.Name)
		}
		delete(used, p.Name)
	}
	if len(used) > 0 {
		t.Errorf("script names undeclared parameters %v", used)
	}
	for _, want := range []string{
		"CAST(NULL AS INT64)", // a NULL in an insert is typed
		"`c` IS NULL",         // and in a delete matches IS NULL
		"CAST(@p1 AS INT64)",  // values are cast to the column's type
		"BEGIN TRANSACTION;",  //
		"COMMIT TRANSACTION;", //
		ledgerConflictMarker,  // the guard against concurrent writers
		"SELECT k, n FROM " + deletedTableName("job"),
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
}

func TestRenderComparesJSONByItsText(t *testing.T) {
	jp := planOf(t, []resolvedActivity{dl(testTable, cv{jsonCol, `{"a":1}`})})
	script := jp.render(deletedTableName("job"))
	want := "IF(`j` IS NULL, FALSE, TO_JSON_STRING(`j`) = TO_JSON_STRING(PARSE_JSON(@p1)))"
	if !strings.Contains(script, want) {
		t.Fatalf("script lacks %q:\n%s", want, script)
	}
}

func TestRenderGroupsInsertsByColumnSetWhateverTheOrder(t *testing.T) {
	jp := planOf(t,
		[]resolvedActivity{ins(testTable, a(int64(1)), b("x"))},
		[]resolvedActivity{ins(testTable, b("y"), a(int64(2)))},
		[]resolvedActivity{ins(testTable, a(int64(3)))},
	)
	script := jp.render(deletedTableName("job"))
	if got := strings.Count(script, "INSERT INTO `proj`.`ds`.`t`"); got != 2 {
		t.Fatalf("%d INSERT statements on t, want 2 (one per column set):\n%s", got, script)
	}
	// The second row's values follow the first row's column order.
	if !strings.Contains(script, "(CAST(@p5 AS INT64), @p4)") {
		t.Fatalf("second row not reordered to the header:\n%s", script)
	}
}

func TestParamSizeCountsEscapes(t *testing.T) {
	plain := paramSize("p1", "abc")
	if got := paramSize("p1", `a"<`); got != plain-3+1+2+6 {
		t.Fatalf("paramSize with escapes = %d, plain %d", got, plain)
	}
}

func TestStringArraysStayWithinTheEmulatorsArgumentLimit(t *testing.T) {
	var names []string
	for i := range 250 {
		names = append(names, fmt.Sprint("p", i))
	}
	var b strings.Builder
	writeStringArray(&b, names)
	got := b.String()
	if !strings.HasPrefix(got, "ARRAY_CONCAT(ARRAY<STRING>[@p0, ") || strings.Count(got, "ARRAY<STRING>[") != 3 || strings.Count(got, "@p") != 250 {
		t.Fatalf("array of 250: %s", got)
	}
	b.Reset()
	writeStringArray(&b, names[:2])
	if b.String() != "ARRAY<STRING>[@p0, @p1]" {
		t.Fatalf("array of 2: %s", b.String())
	}
}

func TestLongChainsAreNestedWithinTheEmulatorsArgumentLimit(t *testing.T) {
	render := func(n int) string {
		var b strings.Builder
		writeChained(&b, n, " OR ", func(i int) { fmt.Fprintf(&b, "x%d", i) })
		return b.String()
	}
	if got := render(3); got != "x0 OR x1 OR x2" {
		t.Fatalf("3 terms: %s", got)
	}
	for _, n := range []int{100, 101, 250, 10_001} {
		got := render(n)
		if strings.Count(got, "x") != n {
			t.Fatalf("%d terms rendered as %d", n, strings.Count(got, "x"))
		}
		// No flat run of more than arrayChunk terms at any depth.
		depth, runs := 0, map[int]int{}
		for _, tok := range strings.Fields(strings.NewReplacer("(", " ( ", ")", " ) ").Replace(got)) {
			switch {
			case tok == "(":
				depth++
				runs[depth] = 0
			case tok == ")":
				depth--
			case tok == "OR":
			default:
				runs[depth]++
			}
			for d, r := range runs {
				if r > arrayChunk {
					t.Fatalf("%d terms: %d in one flat chain at depth %d", n, r, d)
				}
			}
		}
		if depth != 0 {
			t.Fatalf("%d terms: unbalanced parentheses", n)
		}
	}
}
