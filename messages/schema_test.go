package messages

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/qri-io/jsonschema"
)

func TestSchemaDocument(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(SchemaJSON(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["$schema"] != "https://json-schema.org/draft/2019-09/schema" {
		t.Errorf("$schema = %v, want draft 2019-09", doc["$schema"])
	}
	// qri-io/jsonschema ignores "definitions"; a $ref into it fails.
	if _, ok := doc["definitions"]; ok {
		t.Error(`schema uses "definitions"; qri-io/jsonschema resolves only "$defs"`)
	}
	defs := doc["$defs"].(map[string]any)
	for _, name := range []string{"colNames", "colTypes", "colValues"} {
		def := defs[name].(map[string]any)
		if def["minItems"] != 1.0 {
			t.Errorf("$defs/%s minItems = %v, want 1", name, def["minItems"])
		}
		if _, ok := def["minLength"]; ok {
			t.Errorf("$defs/%s has minLength, which arrays ignore", name)
		}
	}
	activities := doc["properties"].(map[string]any)["activities"].(map[string]any)
	if activities["minItems"] != 1.0 || activities["maxItems"] != float64(MaxActivities) {
		t.Errorf("activities minItems/maxItems = %v/%v, want 1/%d", activities["minItems"], activities["maxItems"], MaxActivities)
	}
	// propertyNames must list exactly the declared properties, or a valid
	// property would be refused or a stray one let through.
	objects := map[string]map[string]any{"root": doc, "insert": nil, "delete": nil, "row": nil}
	for name := range objects {
		if name != "root" {
			objects[name] = defs[name].(map[string]any)
		}
	}
	for name, obj := range objects {
		var declared, named []string
		for key := range obj["properties"].(map[string]any) {
			declared = append(declared, key)
		}
		pattern := obj["propertyNames"].(map[string]any)["pattern"].(string)
		alternatives, ok := strings.CutPrefix(pattern, "^(")
		alternatives, ok2 := strings.CutSuffix(alternatives, ")$")
		if !ok || !ok2 {
			t.Fatalf("%s: propertyNames pattern %q is not ^(a|b|c)$", name, pattern)
		}
		named = strings.Split(alternatives, "|")
		sort.Strings(declared)
		sort.Strings(named)
		if !reflect.DeepEqual(declared, named) {
			t.Errorf("%s: properties %v but propertyNames %v", name, declared, named)
		}
	}
}

// concurrencyDocs reach every schema path: valid payloads, schema failures
// in each branch (which run the branch schemas), unknown operations and
// stray properties.
var concurrencyDocs = []string{
	examplePayload,
	payloadJSON(insertJSON(`"t"`, `[1,"b"]`, `["INTEGER","TEXT"]`, `[1,"x"]`)),
	payloadJSON(`{"operation":"delete","table":"t","col_names":["a"],"value_to_delete":{"col_names":[],"col_types":"x","col_values":[1],"zz":1}}`),
	payloadJSON(`{"operation":"upsert"}`, `{"table":"t"}`, `7`),
	`{"activities":[],"extra":1}`,
	`[]`,
	payloadJSON(insertJSON(`"a; DROP TABLE x"`, `["a","A"]`, `["MONEY","INTEGER"]`, `[1,1.5]`)),
}

// TestValidateConcurrently validates from 32 goroutines at once against a
// freshly compiled (and warmed) gate, the situation in which
// qri-io/jsonschema's lazy $ref resolution writes shared state. Run it with
// -race: the race detector, not the comparison, is the main check.
func TestValidateConcurrently(t *testing.T) {
	reference, err := loadGate()
	if err != nil {
		t.Fatal(err)
	}
	docs := make([]any, len(concurrencyDocs))
	want := make([][]Problem, len(concurrencyDocs))
	for i, body := range concurrencyDocs {
		if err := json.Unmarshal([]byte(body), &docs[i]); err != nil {
			t.Fatal(err)
		}
		want[i] = sortProblems(reference.check(docs[i]))
	}
	// The reference gate ran these documents; decode afresh so no goroutine
	// shares a document either.
	fresh := func(i int) any {
		var doc any
		_ = json.Unmarshal([]byte(concurrencyDocs[i]), &doc)
		return doc
	}

	gate, err := compileGate()
	if err != nil {
		t.Fatal(err)
	}
	const goroutines = 32
	var start, done sync.WaitGroup
	start.Add(1)
	errs := make(chan error, goroutines)
	for w := range goroutines {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			for round := range 20 {
				i := (w + round) % len(concurrencyDocs)
				got := sortProblems(gate.check(fresh(i)))
				if !reflect.DeepEqual(got, want[i]) {
					errs <- fmt.Errorf("doc %d: got %+v, want %+v", i, got, want[i])
					return
				}
			}
		}()
	}
	start.Done()
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestParseConcurrently covers the package-level path: the first Parse calls
// race for sync.Once and then share the gate.
func TestParseConcurrently(t *testing.T) {
	const goroutines = 32
	var wg sync.WaitGroup
	for w := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(concurrencyDocs[w%len(concurrencyDocs)])
			for range 10 {
				p, err := Parse(body)
				if w%len(concurrencyDocs) == 0 && (err != nil || len(p.Activities) != 2) {
					t.Errorf("Parse(example) = %+v, %v", p, err)
					return
				}
				if w%len(concurrencyDocs) != 0 && ClassOf(err) != ClassInvalid {
					t.Errorf("Parse(%s) error %v, want invalid", body, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestWarmUpResolvesEveryRef guards the warm-up against schema edits. qri
// resolves each $ref on the first validation that reaches it, writing into
// the shared schema, and only the warm-up may do that (see loadGate). The
// test walks the compiled schemas by reflection and requires every $ref to
// be resolved; a $ref that the warm-up documents do not reach fails it.
func TestWarmUpResolvesEveryRef(t *testing.T) {
	g, err := compileGate()
	if err != nil {
		t.Fatal(err)
	}
	// schema.json has 12 $refs; a branch schema has its root $ref plus those
	// in the $defs it needs: insert 1+4, delete 1+2+3.
	for name, tt := range map[string]struct {
		schema *jsonschema.Schema
		refs   int
	}{"root": {g.root, 12}, "insert": {g.insert, 5}, "delete": {g.delete, 6}} {
		refs, unresolved := countRefs(tt.schema)
		if refs != tt.refs {
			t.Errorf("%s: found %d $refs, want %d", name, refs, tt.refs)
		}
		if unresolved != 0 {
			t.Errorf("%s: %d of %d $refs are unresolved after warm-up; add a warm-up document that reaches them", name, unresolved, refs)
		}
	}

	// The walk can tell: a schema nobody validated yet has only unresolved refs.
	cold, err := compileSchema(schemaJSON)
	if err != nil {
		t.Fatal(err)
	}
	if refs, unresolved := countRefs(cold); refs == 0 || unresolved != refs {
		t.Fatalf("cold schema: %d of %d $refs unresolved, want all", unresolved, refs)
	}
}

// countRefs finds every jsonschema.Ref reachable from schema and counts
// those whose target is still nil.
func countRefs(schema *jsonschema.Schema) (refs, unresolved int) {
	refType := reflect.TypeOf(jsonschema.Ref{})
	seen := map[uintptr]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() || seen[v.Pointer()] {
				return
			}
			seen[v.Pointer()] = true
			walk(v.Elem())
		case reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Map:
			iter := v.MapRange()
			for iter.Next() {
				walk(iter.Value())
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Struct:
			if v.Type() == refType {
				refs++
				if v.FieldByName("resolved").IsNil() {
					unresolved++
				}
			}
			for i := range v.NumField() {
				walk(v.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(schema))
	return refs, unresolved
}
