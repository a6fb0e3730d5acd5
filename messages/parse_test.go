package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// examplePayload is the payload from the contract: a delete and an insert.
const examplePayload = `{"activities":[
  {"operation":"delete","table":"table1","value_to_delete":{"col_names":["a","c","e"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[3,"2019-04-28 10:24:30.183414","something"]}},
  {"operation":"insert","table":"table1","col_names":["a","b","c"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[1,"Backup and Restore","2018-03-27 11:58:28.988414"]}
]}`

// insertJSON and deleteJSON build one activity; the arguments are JSON text.
func insertJSON(table, names, types, values string) string {
	return fmt.Sprintf(`{"operation":"insert","table":%s,"col_names":%s,"col_types":%s,"col_values":%s}`, table, names, types, values)
}

func deleteJSON(table, names, types, values string) string {
	return fmt.Sprintf(`{"operation":"delete","table":%s,"value_to_delete":{"col_names":%s,"col_types":%s,"col_values":%s}}`, table, names, types, values)
}

func payloadJSON(activities ...string) string {
	return `{"activities":[` + strings.Join(activities, ",") + `]}`
}

// mustInvalid parses body and returns its problems, failing unless Parse
// returned a *ValidationError.
func mustInvalid(t *testing.T, body string) []Problem {
	t.Helper()
	p, err := Parse([]byte(body))
	if err == nil {
		t.Fatalf("Parse accepted %.200s as %+v; want a ValidationError", body, p)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse(%.200s) error = %T %v; want *ValidationError", body, err, err)
	}
	if ClassOf(err) != ClassInvalid {
		t.Fatalf("ClassOf(%v) = %q, want %q", err, ClassOf(err), ClassInvalid)
	}
	if len(ve.Problems) == 0 {
		t.Fatalf("ValidationError without problems for %.200s", body)
	}
	return ve.Problems
}

func mustValid(t *testing.T, body string) Payload {
	t.Helper()
	p, err := Parse([]byte(body))
	if err != nil {
		t.Fatalf("Parse(%.300s): %v", body, err)
	}
	return p
}

// hasProblem reports whether problems hold one at path whose message
// contains fragment.
func hasProblem(problems []Problem, path, fragment string) bool {
	for _, p := range problems {
		if p.Path == path && strings.Contains(p.Message, fragment) {
			return true
		}
	}
	return false
}

// The replaced Flask service's functional tests, ported.
func TestReplacedServiceFunctional(t *testing.T) {
	t.Run("invalid operation name", func(t *testing.T) {
		problems := mustInvalid(t, payloadJSON(`{"operation":"update","table":"table1","col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}`))
		if !hasProblem(problems, "/activities/0/operation", `unknown operation "update"`) {
			t.Fatalf("problems = %+v", problems)
		}
		if len(problems) != 1 {
			t.Fatalf("want only the operation problem (oneOf noise dropped), got %+v", problems)
		}
	})
	t.Run("col_names containing numbers", func(t *testing.T) {
		problems := mustInvalid(t, payloadJSON(insertJSON(`"table1"`, `[1,"b"]`, `["INTEGER","TEXT"]`, `[1,"x"]`)))
		if !hasProblem(problems, "/activities/0/col_names/0", "must be a string, got an integer") || len(problems) != 1 {
			t.Fatalf("problems = %+v", problems)
		}
	})
	t.Run("missing table", func(t *testing.T) {
		problems := mustInvalid(t, payloadJSON(`{"operation":"insert","col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}`))
		if !hasProblem(problems, "/activities/0", `missing required property "table"`) || len(problems) != 1 {
			t.Fatalf("problems = %+v", problems)
		}
	})
	t.Run("missing table in a delete", func(t *testing.T) {
		problems := mustInvalid(t, payloadJSON(`{"operation":"delete","value_to_delete":{"col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}}`))
		if !hasProblem(problems, "/activities/0", `missing required property "table"`) {
			t.Fatalf("problems = %+v", problems)
		}
	})
	t.Run("only a delete", func(t *testing.T) {
		p := mustValid(t, payloadJSON(deleteJSON(`"table1"`, `["a","c"]`, `["INTEGER","TEXT"]`, `[3,"something"]`)))
		want := Payload{Activities: []Activity{{Op: OpDelete, Table: "table1", Columns: []Column{
			{Name: "a", Type: ColumnType{Base: TypeInt64}, Value: int64(3)},
			{Name: "c", Type: ColumnType{Base: TypeString}, Value: "something"},
		}}}}
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("got %+v\nwant %+v", p, want)
		}
	})
	t.Run("only an insert", func(t *testing.T) {
		p := mustValid(t, payloadJSON(insertJSON(`"table1"`, `["a","b"]`, `["INTEGER","TEXT"]`, `[1,"Backup and Restore"]`)))
		want := Payload{Activities: []Activity{{Op: OpInsert, Table: "table1", Columns: []Column{
			{Name: "a", Type: ColumnType{Base: TypeInt64}, Value: int64(1)},
			{Name: "b", Type: ColumnType{Base: TypeString}, Value: "Backup and Restore"},
		}}}}
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("got %+v\nwant %+v", p, want)
		}
	})
	t.Run("a delete and an insert", func(t *testing.T) {
		p := mustValid(t, examplePayload)
		str, i64 := ColumnType{Base: TypeString}, ColumnType{Base: TypeInt64}
		want := Payload{Activities: []Activity{
			{Op: OpDelete, Table: "table1", Columns: []Column{
				{Name: "a", Type: i64, Value: int64(3)},
				{Name: "c", Type: str, Value: "2019-04-28 10:24:30.183414"},
				{Name: "e", Type: str, Value: "something"},
			}},
			{Op: OpInsert, Table: "table1", Columns: []Column{
				{Name: "a", Type: i64, Value: int64(1)},
				{Name: "b", Type: str, Value: "Backup and Restore"},
				{Name: "c", Type: str, Value: "2018-03-27 11:58:28.988414"},
			}},
		}}
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("got %+v\nwant %+v", p, want)
		}
		if got := p.Tables(); !reflect.DeepEqual(got, []string{"table1"}) {
			t.Fatalf("Tables() = %v", got)
		}
	})
}

func TestSchemaRules(t *testing.T) {
	valid := insertJSON(`"t"`, `["a"]`, `["INTEGER"]`, `[1]`)
	tests := []struct {
		name     string
		body     string
		path     string
		fragment string
	}{
		{"not an object", `[]`, "", "must be an object, got an array"},
		{"null document", `null`, "", "must be an object"},
		{"no activities", `{}`, "", `missing required property "activities"`},
		{"empty activities", `{"activities":[]}`, "/activities", "must not be empty"},
		{"activities not an array", `{"activities":{}}`, "/activities", "must be an array"},
		{"too many activities", payloadJSON(slicesRepeat(valid, MaxActivities+1)...), "/activities", "has 1001 items; at most 1000 allowed"},
		{"unknown top-level property", `{"activities":[` + valid + `],"Activities":[]}`, "/Activities", "unknown property"},
		{"case-variant key in an activity", payloadJSON(`{"operation":"insert","table":"t","Table":"u","col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}`), "/activities/0/Table", "unknown property; allowed here: col_names, col_types, col_values, operation, table"},
		{"operation as a row property", payloadJSON(`{"operation":"delete","table":"t","value_to_delete":{"operation":"operation","col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}}`), "/activities/0/value_to_delete/operation", "unknown property; allowed here: col_names, col_types, col_values"},
		{"activity not an object", payloadJSON(`"insert"`), "/activities/0", "must be an object, got a string"},
		{"missing operation", payloadJSON(`{"table":"t"}`), "/activities/0", `missing required property "operation"`},
		{"operation not a string", payloadJSON(`{"operation":1}`), "/activities/0/operation", "must be a string"},
		{"empty table", payloadJSON(insertJSON(`""`, `["a"]`, `["INTEGER"]`, `[1]`)), "/activities/0/table", "must not be empty"},
		{"table not a string", payloadJSON(insertJSON(`["t"]`, `["a"]`, `["INTEGER"]`, `[1]`)), "/activities/0/table", "must be a string, got an array"},
		{"empty col_names", payloadJSON(insertJSON(`"t"`, `[]`, `["INTEGER"]`, `[1]`)), "/activities/0/col_names", "must not be empty"},
		{"empty col_types", payloadJSON(insertJSON(`"t"`, `["a"]`, `[]`, `[1]`)), "/activities/0/col_types", "must not be empty"},
		{"empty col_values", payloadJSON(insertJSON(`"t"`, `["a"]`, `["INTEGER"]`, `[]`)), "/activities/0/col_values", "must not be empty"},
		{"col_types of numbers", payloadJSON(insertJSON(`"t"`, `["a"]`, `[5]`, `[1]`)), "/activities/0/col_types/0", "must be a string"},
		{"col_values not an array", payloadJSON(insertJSON(`"t"`, `["a"]`, `["INTEGER"]`, `1`)), "/activities/0/col_values", "must be an array"},
		{"insert without col_values", payloadJSON(`{"operation":"insert","table":"t","col_names":["a"],"col_types":["INTEGER"]}`), "/activities/0", `missing required property "col_values"`},
		{"delete without value_to_delete", payloadJSON(`{"operation":"delete","table":"t"}`), "/activities/0", `missing required property "value_to_delete"`},
		{"delete with columns at the top level", payloadJSON(`{"operation":"delete","table":"t","col_names":["a"],"col_types":["INTEGER"],"col_values":[1],"value_to_delete":{"col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}}`), "/activities/0/col_names", "unknown property"},
		{"insert with value_to_delete", payloadJSON(`{"operation":"insert","table":"t","col_names":["a"],"col_types":["INTEGER"],"col_values":[1],"value_to_delete":{}}`), "/activities/0/value_to_delete", "unknown property"},
		{"value_to_delete missing col_types", payloadJSON(`{"operation":"delete","table":"t","value_to_delete":{"col_names":["a"],"col_values":[1]}}`), "/activities/0/value_to_delete", `missing required property "col_types"`},
		{"value_to_delete empty col_names", payloadJSON(deleteJSON(`"t"`, `[]`, `["INTEGER"]`, `[1]`)), "/activities/0/value_to_delete/col_names", "must not be empty"},
		{"second activity wrong", payloadJSON(valid, insertJSON(`"t"`, `["a",2]`, `["INTEGER","INTEGER"]`, `[1,2]`)), "/activities/1/col_names/1", "must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := mustInvalid(t, tt.body)
			if !hasProblem(problems, tt.path, tt.fragment) {
				t.Fatalf("want a problem at %q mentioning %q, got %+v", tt.path, tt.fragment, problems)
			}
			for _, p := range problems {
				if strings.Contains(p.Message, "OneOf") {
					t.Fatalf("qri's oneOf message leaked to the client: %+v", problems)
				}
			}
		})
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// Each semantic rule, once failing and once passing.
func TestSemanticRules(t *testing.T) {
	tests := []struct {
		name     string
		bad      string
		path     string
		fragment string
		good     string
	}{
		{
			name:     "lengths differ: types",
			bad:      payloadJSON(insertJSON(`"t"`, `["a","b"]`, `["INTEGER"]`, `[1,2]`)),
			path:     "/activities/0/col_types",
			fragment: "col_types has 1 entries but col_names has 2",
			good:     payloadJSON(insertJSON(`"t"`, `["a","b"]`, `["INTEGER","INTEGER"]`, `[1,2]`)),
		},
		{
			name:     "lengths differ: values in a delete",
			bad:      payloadJSON(deleteJSON(`"t"`, `["a"]`, `["INTEGER"]`, `[1,2]`)),
			path:     "/activities/0/value_to_delete/col_values",
			fragment: "col_values has 2 entries but col_names has 1",
			good:     payloadJSON(deleteJSON(`"t"`, `["a"]`, `["INTEGER"]`, `[1]`)),
		},
		{
			name:     "table name with SQL",
			bad:      payloadJSON(insertJSON(`"a; DROP TABLE x"`, `["a"]`, `["INTEGER"]`, `[1]`)),
			path:     "/activities/0/table",
			fragment: "not a valid identifier",
			good:     payloadJSON(insertJSON(`"a_DROP_TABLE_x"`, `["a"]`, `["INTEGER"]`, `[1]`)),
		},
		{
			name:     "table name with a backtick",
			bad:      payloadJSON(insertJSON("\"a`b\"", `["a"]`, `["INTEGER"]`, `[1]`)),
			path:     "/activities/0/table",
			fragment: "not a valid identifier",
			good:     payloadJSON(insertJSON(`"ab"`, `["a"]`, `["INTEGER"]`, `[1]`)),
		},
		{
			name:     "table name with a dot (dataset.table)",
			bad:      payloadJSON(deleteJSON(`"a.b"`, `["a"]`, `["INTEGER"]`, `[1]`)),
			path:     "/activities/0/table",
			fragment: "not a valid identifier",
			good:     payloadJSON(deleteJSON(`"a_b"`, `["a"]`, `["INTEGER"]`, `[1]`)),
		},
		{
			name:     "table name too long",
			bad:      payloadJSON(insertJSON(`"`+strings.Repeat("t", MaxTableNameLen+1)+`"`, `["a"]`, `["INTEGER"]`, `[1]`)),
			path:     "/activities/0/table",
			fragment: "at most 1024",
			good:     payloadJSON(insertJSON(`"`+strings.Repeat("t", MaxTableNameLen)+`"`, `["a"]`, `["INTEGER"]`, `[1]`)),
		},
		{
			name:     "ledger table",
			bad:      payloadJSON(insertJSON(`"_gatekeeper_ledger"`, `["a"]`, `["INTEGER"]`, `[1]`)),
			path:     "/activities/0/table",
			fragment: "reserved",
			good:     payloadJSON(insertJSON(`"gatekeeper_ledger"`, `["a"]`, `["INTEGER"]`, `[1]`)),
		},
		{
			name:     "column name with a space",
			bad:      payloadJSON(insertJSON(`"t"`, `["a b"]`, `["INTEGER"]`, `[1]`)),
			path:     "/activities/0/col_names/0",
			fragment: "not a valid identifier",
			good:     payloadJSON(insertJSON(`"t"`, `["a_b"]`, `["INTEGER"]`, `[1]`)),
		},
		{
			name:     "empty column name",
			bad:      payloadJSON(insertJSON(`"t"`, `["a",""]`, `["INTEGER","INTEGER"]`, `[1,2]`)),
			path:     "/activities/0/col_names/1",
			fragment: "must not be empty",
			good:     payloadJSON(insertJSON(`"t"`, `["a","b"]`, `["INTEGER","INTEGER"]`, `[1,2]`)),
		},
		{
			name:     "column name too long",
			bad:      payloadJSON(insertJSON(`"t"`, `["`+strings.Repeat("c", MaxColumnNameLen+1)+`"]`, `["INTEGER"]`, `[1]`)),
			path:     "/activities/0/col_names/0",
			fragment: "at most 300",
			good:     payloadJSON(insertJSON(`"t"`, `["`+strings.Repeat("c", MaxColumnNameLen)+`"]`, `["INTEGER"]`, `[1]`)),
		},
		{
			name:     "BigQuery-reserved column prefix",
			bad:      payloadJSON(deleteJSON(`"t"`, `["_partitiontime"]`, `["TIMESTAMP"]`, `[null]`)),
			path:     "/activities/0/value_to_delete/col_names/0",
			fragment: "BigQuery refuses",
			good:     payloadJSON(deleteJSON(`"t"`, `["partitiontime"]`, `["TIMESTAMP"]`, `[null]`)),
		},
		{
			name:     "gatekeeper-reserved column prefix",
			bad:      payloadJSON(insertJSON(`"t"`, `["_GATEKEEPER_id"]`, `["TEXT"]`, `["x"]`)),
			path:     "/activities/0/col_names/0",
			fragment: "reserved",
			good:     payloadJSON(insertJSON(`"t"`, `["gatekeeper_id"]`, `["TEXT"]`, `["x"]`)),
		},
		{
			name:     "duplicate column, other case",
			bad:      payloadJSON(insertJSON(`"t"`, `["id","name","ID"]`, `["INTEGER","TEXT","INTEGER"]`, `[1,"x",2]`)),
			path:     "/activities/0/col_names/2",
			fragment: `repeats col_names/0 "id"`,
			good:     payloadJSON(insertJSON(`"t"`, `["id","name","id2"]`, `["INTEGER","TEXT","INTEGER"]`, `[1,"x",2]`)),
		},
		{
			name:     "duplicate column among many (map path)",
			bad:      payloadJSON(insertJSON(`"t"`, manyNames(40, "C5"), repeatJSON(`"INTEGER"`, 41), repeatJSON(`1`, 41))),
			path:     "/activities/0/col_names/40",
			fragment: `repeats col_names/5 "c5"`,
			good:     payloadJSON(insertJSON(`"t"`, manyNames(40, "c40"), repeatJSON(`"INTEGER"`, 41), repeatJSON(`1`, 41))),
		},
		{
			name:     "unknown column type",
			bad:      payloadJSON(insertJSON(`"t"`, `["a"]`, `["MONEY"]`, `[1]`)),
			path:     "/activities/0/col_types/0",
			fragment: `unknown column type "MONEY"`,
			good:     payloadJSON(insertJSON(`"t"`, `["a"]`, `["DECIMAL(19,4)"]`, `[1]`)),
		},
		{
			name:     "value does not fit its type",
			bad:      payloadJSON(deleteJSON(`"t"`, `["a","b"]`, `["INTEGER","INTEGER"]`, `[1,1.5]`)),
			path:     "/activities/0/value_to_delete/col_values/1",
			fragment: "not an integer",
			good:     payloadJSON(deleteJSON(`"t"`, `["a","b"]`, `["INTEGER","INTEGER"]`, `[1,null]`)),
		},
		{
			name:     "too many tables",
			bad:      payloadJSON(manyTables(MaxTables + 1)...),
			path:     "/activities",
			fragment: "101 distinct tables; at most 100",
			good:     payloadJSON(manyTables(MaxTables)...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := mustInvalid(t, tt.bad)
			if !hasProblem(problems, tt.path, tt.fragment) {
				t.Fatalf("want a problem at %q mentioning %q, got %+v", tt.path, tt.fragment, problems)
			}
			mustValid(t, tt.good)
		})
	}
}

func manyNames(n int, last string) string {
	names := make([]string, 0, n+1)
	for i := range n {
		names = append(names, fmt.Sprintf(`"c%d"`, i))
	}
	names = append(names, `"`+last+`"`)
	return "[" + strings.Join(names, ",") + "]"
}

func repeatJSON(v string, n int) string {
	return "[" + strings.Join(slicesRepeat(v, n), ",") + "]"
}

func manyTables(n int) []string {
	activities := make([]string, n)
	for i := range activities {
		activities[i] = insertJSON(fmt.Sprintf(`"t%d"`, i), `["a"]`, `["INTEGER"]`, `[1]`)
	}
	return activities
}

func TestValidationErrorListsEveryProblem(t *testing.T) {
	// Three independent problems in three places: a table name, a type, a
	// value in another activity.
	body := payloadJSON(
		insertJSON(`"bad table"`, `["a"]`, `["INTEGER"]`, `[1]`),
		deleteJSON(`"t"`, `["a","b"]`, `["INTEGER","MONEY"]`, `[1,2]`),
		insertJSON(`"t"`, `["a"]`, `["BOOL"]`, `["yes"]`),
	)
	problems := mustInvalid(t, body)
	want := []string{"/activities/0/table", "/activities/1/value_to_delete/col_types/1", "/activities/2/col_values/0"}
	if len(problems) != len(want) {
		t.Fatalf("got %d problems %+v, want %d", len(problems), problems, len(want))
	}
	for i, p := range problems {
		if p.Path != want[i] {
			t.Errorf("problem %d at %q, want %q", i, p.Path, want[i])
		}
	}

	// The same holds for schema problems, across activities.
	body = payloadJSON(
		insertJSON(`""`, `["a"]`, `["INTEGER"]`, `[1]`),
		`{"operation":"delete","table":"t"}`,
		`{"operation":"merge"}`,
	)
	problems = mustInvalid(t, body)
	want = []string{"/activities/0/table", "/activities/1", "/activities/2/operation"}
	if len(problems) != len(want) {
		t.Fatalf("got %d problems %+v, want %d", len(problems), problems, len(want))
	}
	for i, p := range problems {
		if p.Path != want[i] {
			t.Errorf("problem %d at %q, want %q", i, p.Path, want[i])
		}
	}
}

func TestProblemsAreSortedByDocumentPosition(t *testing.T) {
	activities := make([]string, 12)
	for i := range activities {
		activities[i] = insertJSON(`"t"`, `["a"]`, `["INTEGER"]`, `["x"]`)
	}
	problems := mustInvalid(t, payloadJSON(activities...))
	for i, p := range problems {
		if want := fmt.Sprintf("/activities/%d/col_values/0", i); p.Path != want {
			t.Fatalf("problem %d at %q, want %q (numeric, not lexical, order)", i, p.Path, want)
		}
	}
}

func TestValidationErrorIsBounded(t *testing.T) {
	values := repeatJSON(`"x"`, 5000)
	types := repeatJSON(`"INTEGER"`, 5000)
	names := make([]string, 5000)
	for i := range names {
		names[i] = fmt.Sprintf(`"c%d"`, i)
	}
	problems := mustInvalid(t, payloadJSON(insertJSON(`"t"`, "["+strings.Join(names, ",")+"]", types, values)))
	if len(problems) != maxProblems+1 {
		t.Fatalf("got %d problems, want %d plus a summary", len(problems), maxProblems)
	}
	if last := problems[len(problems)-1]; !strings.Contains(last.Message, "4000 more problems") {
		t.Fatalf("last problem = %+v, want a count of the ones left out", last)
	}
}

func TestParseIsDeterministic(t *testing.T) {
	body := []byte(`{"x":1,"activities":[{"operation":"insert","table":"","col_names":["a b",1],"col_types":[],"col_values":[],"y":1,"z":2},{"operation":"delete","table":"t","value_to_delete":{"col_names":"a","q":1,"r":2}}],"w":3}`)
	_, first := Parse(body)
	if first == nil {
		t.Fatal("want an error")
	}
	for range 50 {
		_, err := Parse(body)
		if err.Error() != first.Error() {
			t.Fatalf("Parse gave two different errors for one body:\n%v\n%v", first, err)
		}
	}
}

func TestHostileInputs(t *testing.T) {
	t.Parallel() // CPU-bound and pure: it runs beside the other slow ones
	t.Run("invalid UTF-8", func(t *testing.T) {
		body := []byte(payloadJSON(insertJSON("\"t\"", `["a"]`, `["TEXT"]`, "[\"caf\xe9\"]")))
		_, err := Parse(body)
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "UTF-8") {
			t.Fatalf("err = %v, want a *SyntaxError about UTF-8", err)
		}
		if ClassOf(err) != ClassInvalid {
			t.Fatalf("class %q", ClassOf(err))
		}
	})
	t.Run("not JSON", func(t *testing.T) {
		for _, body := range []string{"", "{", `{"activities":[]}x`, "nul", `{"a":1}{"a":2}`, "\xef\xbb\xbf{}"} {
			_, err := Parse([]byte(body))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("Parse(%q) err = %v, want *SyntaxError", body, err)
			}
		}
	})
	t.Run("deep nesting", func(t *testing.T) {
		for _, depth := range []int{100_000, 10_001} {
			body := strings.Repeat("[", depth) + strings.Repeat("]", depth)
			_, err := Parse([]byte(body))
			if ClassOf(err) != ClassInvalid {
				t.Fatalf("depth %d: err = %v, want a 400-class error", depth, err)
			}
			inValue := payloadJSON(insertJSON(`"t"`, `["j"]`, `["JSON"]`, "["+body+"]"))
			if _, err := Parse([]byte(inValue)); ClassOf(err) != ClassInvalid {
				t.Fatalf("depth %d inside a JSON value: err = %v, want a 400-class error", depth, err)
			}
		}
	})
	t.Run("deep nesting within limits is a JSON value", func(t *testing.T) {
		const depth = 9000
		value := strings.Repeat("[", depth) + strings.Repeat("]", depth)
		p := mustValid(t, payloadJSON(insertJSON(`"t"`, `["j"]`, `["JSON"]`, "["+value+"]")))
		if got := p.Activities[0].Columns[0].Value; got != value {
			t.Fatalf("JSON value changed")
		}
	})
	t.Run("SQL in identifiers", func(t *testing.T) {
		for _, name := range []string{"a; DROP TABLE x", "a`b", "a.b", "a--", "a/*", "a'b", `a\"b`, "a)b"} {
			q := fmt.Sprintf("%q", name)
			problems := mustInvalid(t, payloadJSON(insertJSON(q, "["+q+"]", `["TEXT"]`, `["x"]`)))
			if !hasProblem(problems, "/activities/0/table", "not a valid identifier") ||
				!hasProblem(problems, "/activities/0/col_names/0", "not a valid identifier") {
				t.Errorf("%s: problems = %+v", name, problems)
			}
		}
	})
	t.Run("10 MB body", func(t *testing.T) {
		// One huge string value: the gate must accept or reject it in time
		// proportional to its size, without echoing it back.
		big := strings.Repeat("x", 10<<20)
		start := time.Now()
		problems := mustInvalid(t, payloadJSON(insertJSON(`"t"`, `["a"]`, `["VARCHAR(10)"]`, `["`+big+`"]`)))
		if len(problems) != 1 || len(problems[0].Message) > 200 {
			t.Fatalf("problems = %.300v", problems)
		}
		p := mustValid(t, payloadJSON(insertJSON(`"t"`, `["a"]`, `["TEXT"]`, `["`+big+`"]`)))
		if len(p.Activities[0].Columns[0].Value.(string)) != len(big) {
			t.Fatal("value truncated")
		}
		t.Logf("10 MB string: %v", time.Since(start))
	})
	t.Run("a 1 MiB list of activities is refused without validating each", func(t *testing.T) {
		body := `{"activities":[` + strings.Repeat(`{},`, 350_000) + `{}]}`
		start := time.Now()
		problems := mustInvalid(t, body)
		if len(problems) != 1 || !hasProblem(problems, "/activities", "has 350001 items; at most 1000 allowed") {
			t.Fatalf("problems = %.300v", problems)
		}
		t.Logf("%d bytes: %v", len(body), time.Since(start))
	})
	t.Run("an object with 100,000 properties is refused without validating each", func(t *testing.T) {
		var b strings.Builder
		for i := range 100_000 {
			fmt.Fprintf(&b, `,"k%d":1`, i)
		}
		for _, tt := range []struct{ body, path, allowed string }{
			{`{"activities":[{"operation":"insert"` + b.String() + `}]}`, "/activities/0", "col_names, col_types, col_values, operation, table"},
			{`{"activities":[{"operation":"merge"` + b.String() + `}]}`, "/activities/0", "col_names, col_types, col_values, operation, table, value_to_delete"},
			{`{"activities":[{"operation":"delete","value_to_delete":{"a":1` + b.String() + `}}]}`, "/activities/0/value_to_delete", "col_names, col_types, col_values"},
			{`{"activities":[]` + b.String() + `}`, "", "activities"},
		} {
			start := time.Now()
			problems := mustInvalid(t, tt.body)
			if len(problems) != 1 || !hasProblem(problems, tt.path, "properties; allowed here: "+tt.allowed) {
				t.Fatalf("problems = %.300v", problems)
			}
			t.Logf("%d bytes: %v", len(tt.body), time.Since(start))
		}
	})
	t.Run("many values stay linear", func(t *testing.T) {
		// Many small values cost the schema validator the most per byte.
		measure := func(n int) time.Duration {
			values := repeatJSON(`1`, n)
			body := payloadJSON(insertJSON(`"t"`, `["a"]`, `["INTEGER"]`, values))
			start := time.Now()
			mustInvalid(t, body)
			return time.Since(start)
		}
		measure(1000) // warm
		small, large := measure(100_000), measure(1_000_000)
		t.Logf("100k values: %v; 1M values (~2 MB): %v", small, large)
		if large > 30*small {
			t.Fatalf("10x the input took %v vs %v: not linear", large, small)
		}
	})
}

func TestCanonical(t *testing.T) {
	p := mustValid(t, examplePayload)
	want := `{"activities":[{"operation":"delete","table":"table1","value_to_delete":{"col_names":["a","c","e"],"col_types":["INT64","STRING","STRING"],"col_values":[3,"2019-04-28 10:24:30.183414","something"]}},` +
		`{"operation":"insert","table":"table1","col_names":["a","b","c"],"col_types":["INT64","STRING","STRING"],"col_values":[1,"Backup and Restore","2018-03-27 11:58:28.988414"]}]}`
	if got := string(p.Canonical()); got != want {
		t.Fatalf("Canonical() =\n%s\nwant\n%s", got, want)
	}

	// Values are rendered from the typed value, not copied from the wire.
	p = mustValid(t, payloadJSON(insertJSON(`"t"`, `["i","n","ts","s","j","b"]`,
		`["INTEGER","DECIMAL(5,2)","TIMESTAMP","VARCHAR(3)","JSON","BLOB"]`,
		`[1.0, 1.50, "2024-01-01 12:00:00+02:00", "a<b", {"k": "<v>"}, "AA=="]`)))
	want = `{"activities":[{"operation":"insert","table":"t","col_names":["i","n","ts","s","j","b"],` +
		`"col_types":["INT64","NUMERIC(5,2)","TIMESTAMP","STRING(3)","JSON","BYTES"],` +
		`"col_values":[1,"1.5","2024-01-01T10:00:00Z","a<b",{"k":"<v>"},"AA=="]}]}`
	if got := string(p.Canonical()); got != want {
		t.Fatalf("Canonical() =\n%s\nwant\n%s", got, want)
	}
	if !bytes.Equal(p.Canonical(), p.Canonical()) {
		t.Fatal("Canonical is not deterministic")
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	bodies := []string{
		examplePayload,
		payloadJSON(insertJSON(`"t"`,
			`["i","f","n","bn","b","s","v","d","dt","tm","ts","j","by","nul"]`,
			`["BIGINT","DOUBLE","NUMERIC","DECIMAL(40,10)","BOOLEAN","LONGTEXT","CHAR(4)","DATE","DATETIME","TIME","TIMESTAMP","JSON","BYTES","JSON"]`,
			`[-9223372036854775808, -0.0, "-0.000000001", "123456789012345678901234567890.0123456789", false, "\u2028<&>\"\\", "ñaña",
			  "2000-02-29", "1999-12-31T23:59:59.999999", "12:00:00.10", "1970-01-01T00:00:00.000001-00:01",
			  [{"a":"\u003c"}, 1e400, "\ud800"], "", null]`)),
		payloadJSON(deleteJSON(`"t"`, `["f"]`, `["FLOAT"]`, `[1e-320]`), deleteJSON(`"u"`, `["f"]`, `["FLOAT"]`, `[123456789e300]`)),
	}
	for _, body := range bodies {
		p := mustValid(t, body)
		canonical := p.Canonical()
		again, err := Parse(canonical)
		if err != nil {
			t.Fatalf("Parse(Canonical(p)) = %v\ncanonical: %s", err, canonical)
		}
		if !reflect.DeepEqual(again, p) {
			t.Fatalf("Parse(Canonical(p)) != p\n got %+v\nwant %+v", again, p)
		}
		if !bytes.Equal(again.Canonical(), canonical) {
			t.Fatalf("Canonical is not a fixed point:\n%s\n%s", canonical, again.Canonical())
		}
	}
}

func TestWireShape(t *testing.T) {
	p := mustValid(t, examplePayload)
	w := p.Wire()
	if len(w.Activities) != 2 {
		t.Fatalf("got %d activities", len(w.Activities))
	}
	del, ins := w.Activities[0], w.Activities[1]
	if del.Operation != OpDelete || del.ValueToDelete == nil || del.ColNames != nil {
		t.Fatalf("delete rendered as %+v", del)
	}
	if ins.Operation != OpInsert || ins.ValueToDelete != nil || len(ins.ColValues) != 3 || string(ins.ColValues[0]) != "1" {
		t.Fatalf("insert rendered as %+v", ins)
	}
}

func TestTables(t *testing.T) {
	p := mustValid(t, payloadJSON(
		insertJSON(`"zeta"`, `["a"]`, `["INTEGER"]`, `[1]`),
		deleteJSON(`"alpha"`, `["a"]`, `["INTEGER"]`, `[1]`),
		insertJSON(`"zeta"`, `["a"]`, `["INTEGER"]`, `[2]`),
		insertJSON(`"Alpha"`, `["a"]`, `["INTEGER"]`, `[2]`),
	))
	if got, want := p.Tables(), []string{"Alpha", "alpha", "zeta"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Tables() = %v, want %v", got, want)
	}
}

func TestSchemaJSONIsACopy(t *testing.T) {
	a := SchemaJSON()
	a[0] = 'x'
	if b := SchemaJSON(); b[0] != '{' {
		t.Fatal("SchemaJSON exposes the embedded schema")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(examplePayload))
	f.Add([]byte(payloadJSON(insertJSON(`"t"`, `["a","b","c","d"]`, `["DECIMAL(10,2)","TIMESTAMP","JSON","BLOB"]`, `["1.50","2024-01-01 10:00:00+01","{\"a\":1}","AA=="]`))))
	f.Add([]byte(payloadJSON(deleteJSON(`"t"`, `["a","b","c"]`, `["DATETIME","TIME","FLOAT"]`, `["2024-01-01T10:00:00.5","10:00:00",1e10]`))))
	f.Add([]byte(`{"activities":[{"operation":"upsert"}]}`))
	f.Add([]byte(`[[[[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := Parse(body)
		if err != nil {
			if ClassOf(err) != ClassInvalid {
				t.Fatalf("Parse error %v is class %q, want invalid", err, ClassOf(err))
			}
			return
		}
		canonical := p.Canonical()
		again, err := Parse(canonical)
		if err != nil {
			t.Fatalf("Parse(Canonical(p)) = %v\ncanonical: %s", err, canonical)
		}
		if !reflect.DeepEqual(again, p) {
			t.Fatalf("Parse(Canonical(p)) != p\n got %+v\nwant %+v", again, p)
		}
		if !bytes.Equal(again.Canonical(), canonical) {
			t.Fatalf("Canonical not a fixed point:\n%s\n%s", canonical, again.Canonical())
		}
	})
}

// FuzzParseValue aims the fuzzer at the value rules, which FuzzParse rarely
// reaches through random bytes: one column of a fuzzed type holding a fuzzed
// JSON value, in an insert and a delete.
func FuzzParseValue(f *testing.F) {
	for _, seed := range [][2]string{
		{"INTEGER", "1e3"}, {"FLOAT", "-0.0"}, {"DECIMAL(10,2)", `"-0012.50"`}, {"BIGNUMERIC", "1e-38"},
		{"NUMERIC", `"+.5e1"`}, {"TIMESTAMP", `"2024-01-01 10:00:00.5-08:30"`}, {"DATETIME", `"2024-02-29T10:11:12.000100"`},
		{"TIME", `"23:59:59.5"`}, {"DATE", `"2000-02-29"`}, {"JSON", `{"a":[1,"\u003c",null]}`}, {"BLOB", `"AA=="`},
		{"VARCHAR(3)", `"ñañ"`}, {"TEXT", `"\ud800"`}, {"BOOL", "true"}, {"JSON", "null"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, colType, value string) {
		typ, err := json.Marshal(colType)
		if err != nil {
			return
		}
		body := payloadJSON(
			insertJSON(`"t"`, `["c"]`, "["+string(typ)+"]", "["+value+"]"),
			deleteJSON(`"t"`, `["c"]`, "["+string(typ)+"]", "["+value+"]"),
		)
		p, err := Parse([]byte(body))
		if err != nil {
			if ClassOf(err) != ClassInvalid {
				t.Fatalf("Parse error %v is class %q, want invalid", err, ClassOf(err))
			}
			return
		}
		canonical := p.Canonical()
		again, err := Parse(canonical)
		if err != nil {
			t.Fatalf("Parse(Canonical(p)) = %v\ncanonical: %s", err, canonical)
		}
		if !reflect.DeepEqual(again, p) {
			t.Fatalf("Parse(Canonical(p)) != p\n got %#v\nwant %#v", again, p)
		}
		if !bytes.Equal(again.Canonical(), canonical) {
			t.Fatalf("Canonical not a fixed point:\n%s\n%s", canonical, again.Canonical())
		}
	})
}

// TestDuplicateKeysAndLoneSurrogates: JSON that parsers read differently
// (a key twice) or that encoding/json would change (a lone surrogate
// escape, read as U+FFFD) is refused, located by JSON Pointer.
func TestDuplicateKeysAndLoneSurrogates(t *testing.T) {
	valid := insertJSON(`"t"`, `["a"]`, `["TEXT"]`, `["x"]`)
	drop := `{"operation":"drop","table":"t","col_names":["a"],"col_types":["TEXT"],"col_values":["x"]}`
	for _, c := range []struct {
		name, body, path, message string
	}{
		{"a duplicated top-level key smuggles an invalid copy", `{"activities":[` + drop + `],"activities":[` + valid + `]}`,
			"/activities", `object key "activities" appears twice`},
		{"a duplicated key in an activity", payloadJSON(`{"operation":"insert","table":"t","table":"u","col_names":["a"],"col_types":["TEXT"],"col_values":["x"]}`),
			"/activities/0/table", `object key "table" appears twice`},
		{"a duplicate spelled with an escape", payloadJSON(`{"operation":"insert","table":"t","t\u0061ble":"u","col_names":["a"],"col_types":["TEXT"],"col_values":["x"]}`),
			"/activities/0/table", `object key "table" appears twice`},
		{"a duplicated key in value_to_delete", payloadJSON(`{"operation":"delete","table":"t","value_to_delete":{"col_names":["a"],"col_names":["b"],"col_types":["TEXT"],"col_values":["x"]}}`),
			"/activities/0/value_to_delete/col_names", "appears twice"},
		{"a duplicated key inside a JSON value", payloadJSON(valid, insertJSON(`"t"`, `["j"]`, `["JSON"]`, `[{"a":[{"b/c~":1,"b/c~":2}]}]`)),
			"/activities/1/col_values/0/a/0/b~1c~0", "appears twice"},
		{"a lone high surrogate in a TEXT value", payloadJSON(insertJSON(`"t"`, `["a"]`, `["TEXT"]`, `["x\ud800"]`)),
			"/activities/0/col_values/0", `lone UTF-16 surrogate escape \ud800`},
		{"a high surrogate before a non-surrogate", payloadJSON(insertJSON(`"t"`, `["a","b"]`, `["TEXT","TEXT"]`, `["ok","\uD83D\u0041"]`)),
			"/activities/0/col_values/1", `lone UTF-16 surrogate escape \uD83D`},
		{"a lone low surrogate", payloadJSON(insertJSON(`"t"`, `["a"]`, `["TEXT"]`, `["\ude00"]`)),
			"/activities/0/col_values/0", `\ude00`},
		{"two high surrogates", payloadJSON(insertJSON(`"t"`, `["a"]`, `["TEXT"]`, `["\ud83d\ud83d"]`)),
			"/activities/0/col_values/0", `\ud83d`},
		{"a lone surrogate in a delete's value", payloadJSON(deleteJSON(`"t"`, `["a"]`, `["TEXT"]`, `["\ud800"]`)),
			"/activities/0/value_to_delete/col_values/0", `\ud800`},
		{"a lone surrogate in an identifier", payloadJSON(insertJSON(`"t\ud800"`, `["a"]`, `["TEXT"]`, `["x"]`)),
			"/activities/0/table", `\ud800`},
		{"a lone surrogate in a key", `{"activities":[],"\ud800":1}`,
			"", `an object key holds a lone UTF-16 surrogate escape \ud800`},
		{"a lone surrogate in a key inside an activity", payloadJSON(`{"operation":"insert","\udfff":1}`),
			"/activities/0", `an object key holds`},
		{"a lone surrogate in a JSON value of a column that is not JSON", payloadJSON(insertJSON(`"t"`, `["a","j"]`, `["TEXT","TEXT"]`, `["x",{"k":"\ud800"}]`)),
			"/activities/0/col_values/1/k", `\ud800`},
		{"the first problem in document order wins", payloadJSON(insertJSON(`"t"`, `["a","j"]`, `["TEXT","TEXT"]`, `["\ud800",{"k":1,"k":2}]`)),
			"/activities/0/col_values/0", `\ud800`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.body))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%s) err = %v, want a *SyntaxError", c.body, err)
			}
			if se.Path != c.path || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("Parse(%s) = %v at %q; want %q at %q", c.body, err, se.Path, c.message, c.path)
			}
			if ClassOf(err) != ClassInvalid {
				t.Fatalf("class %q", ClassOf(err))
			}
		})
	}

	t.Run("a syntax error later in the body wins over a duplicate", func(t *testing.T) {
		_, err := Parse([]byte(`{"activities":[],"activities":[]`))
		var se *SyntaxError
		if !errors.As(err, &se) || se.Path != "" || !strings.Contains(err.Error(), "unexpected end of JSON input") {
			t.Fatalf("err = %v, want encoding/json's syntax error", err)
		}
	})
	t.Run("a valid surrogate pair is one code point", func(t *testing.T) {
		p := mustValid(t, payloadJSON(insertJSON(`"t"`, `["a","b"]`, `["TEXT","TEXT"]`, `["\ud83d\ude00","\uD83D\uDE00x"]`)))
		if got := p.Activities[0].Columns[0].Value; got != "😀" {
			t.Fatalf("value %q, want 😀", got)
		}
		if got := p.Activities[0].Columns[1].Value; got != "😀x" {
			t.Fatalf("value %q, want 😀x", got)
		}
	})
	t.Run("a JSON column keeps a lone surrogate as sent", func(t *testing.T) {
		// The value is kept as the text the sender sent, so nothing is
		// replaced; only a value decoded into a string would change.
		p := mustValid(t, payloadJSON(insertJSON(`"t"`, `["j"]`, `["JSON"]`, `[{"\ud800":"\udc00"}]`)))
		if got := p.Activities[0].Columns[0].Value; got != `{"\ud800":"\udc00"}` {
			t.Fatalf("value %q, want the escapes as sent", got)
		}
		p = mustValid(t, payloadJSON(deleteJSON(`"t"`, `["a","j"]`, `["TEXT","JSON"]`, `["x","\ud800"]`)))
		if got := p.Activities[0].Columns[1].Value; got != `"\ud800"` {
			t.Fatalf("value %q, want the escape as sent", got)
		}
	})
	t.Run("equal keys in different objects are not duplicates", func(t *testing.T) {
		mustValid(t, payloadJSON(valid, valid, insertJSON(`"t"`, `["j"]`, `["JSON"]`, `[{"a":{"a":1},"b":[{"a":1},{"a":2}]}]`)))
	})
}

// FuzzDecodeForSchema checks the gate's decoder against encoding/json: both
// agree on what is JSON, and on the tree, except for what the decoder
// refuses on purpose (with a path).
func FuzzDecodeForSchema(f *testing.F) {
	for _, seed := range []string{examplePayload, `{"a":1,"a":2}`, `["\ud800"]`, `"\ud83d\ude00"`, `[1e400,-1e400,1e-400,-0]`,
		`{"a":[true,false,null,"\u0000\"\\\/\b\f\n\r\t"]}`, " [ ] ", `[01]`, `[1.]`, `[.5]`, `{"a" 1}`, `"\x"`, "[\"\t\"]", `[-]`, `[1e+]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) {
			return
		}
		got, se := decodeForSchema(body)
		if se != nil && errors.Is(se, errDecoderDisagrees) {
			t.Fatalf("the decoder refused what encoding/json accepts")
		}
		if valid := json.Valid(body); valid != (se == nil || !errors.As(se, new(*json.SyntaxError))) {
			t.Fatalf("json.Valid = %v but decodeForSchema err = %v", valid, se)
		}
		if se != nil {
			return
		}
		var want any
		if err := json.Unmarshal(body, &want); err != nil {
			return // a number beyond float64, which the decoder clamps
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeForSchema = %#v, encoding/json = %#v", got, want)
		}
	})
}
