package messages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/qri-io/jsonschema"
)

// TestFastPathFollowsSchema fails when schema.json changes without the fast
// path following: the fast path records the SHA-256 of the schema.json it
// was proven against, and turns itself off for any other.
func TestFastPathFollowsSchema(t *testing.T) {
	sum := sha256.Sum256(SchemaJSON())
	if got := hex.EncodeToString(sum[:]); got != fastPathSchemaSHA256 {
		t.Fatalf(`schema.json changed (SHA-256 %s); the fast path (messages/fastschema.go) was proven against %s.
Until they match, every payload takes the slower qri path. To bring the fast path along:
  1. make sure compileFastSchema still accepts schema.json (TestFastSchemaCompiles says why not) and that the
     decoder (fastdecode.go) and the semantic rules (fastpath.go) still read what the schema now allows;
  2. run the differential test with a million documents:
       GATEKEEPER_DIFF_DOCS=1000000 go test -run 'TestFastPathAgrees|TestDifferentialGenerator' -count=1 ./messages/
     and extend docGen (fastpath_gen_test.go) to the new edges first;
  3. set fastPathSchemaSHA256 to %s.`, got, fastPathSchemaSHA256, got)
	}
}

// TestFastSchemaCompiles: the fast path knows every keyword in schema.json
// (compileFastSchema refuses any other, naming it) and can follow the
// schema everywhere.
func TestFastSchemaCompiles(t *testing.T) {
	if _, err := compileFastSchema(SchemaJSON()); err != nil {
		t.Fatalf("the fast path cannot follow schema.json: %v", err)
	}
}

// TestFastSchemaReadsTheBounds checks what compileFastSchema derived from
// schema.json against what the schema says, read independently here: the
// fast path's bounds, property sets and enums come from schema.json and
// nowhere else.
func TestFastSchemaReadsTheBounds(t *testing.T) {
	s, err := compileFastSchema(SchemaJSON())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(SchemaJSON(), &doc); err != nil {
		t.Fatal(err)
	}
	defs := doc["$defs"].(map[string]any)
	num := func(obj any, key string) int { return int(obj.(map[string]any)[key].(float64)) }
	props := func(obj any) map[string]any { return obj.(map[string]any)["properties"].(map[string]any) }
	set := func(list any) []string {
		var out []string
		for _, v := range list.([]any) {
			out = append(out, v.(string))
		}
		slices.Sort(out)
		return out
	}
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the fast path has %v, schema.json says %v", what, got, want)
		}
	}
	sorted := func(fs fieldSet) []string { n := fs.names(); slices.Sort(n); return n }
	allowed := func(obj any) []string {
		p := obj.(map[string]any)["propertyNames"].(map[string]any)["pattern"].(string)
		names := strings.Split(strings.TrimSuffix(strings.TrimPrefix(p, "^("), ")$"), "|")
		slices.Sort(names)
		return names
	}

	root := s.root
	check("root required", sorted(root.required), set(doc["required"]))
	check("root propertyNames", sorted(root.allowed), allowed(doc))
	acts := root.properties[fieldActivities]
	check("activities minItems", acts.minItems, num(props(doc)["activities"], "minItems"))
	check("activities maxItems", acts.maxItems, num(props(doc)["activities"], "maxItems"))
	key := root.properties[fieldOrderingKey]
	check("ordering_key minLength", key.minLength, num(props(doc)["ordering_key"], "minLength"))
	check("ordering_key maxLength", key.maxLength, num(props(doc)["ordering_key"], "maxLength"))
	check("ordering_key maxLength", key.maxLength, MaxOrderingKeyLen)

	activity := acts.items
	check("activity required", sorted(activity.required), set(defs["activity"].(map[string]any)["required"]))
	check("operation enum", activity.properties[fieldOperation].enum, []string{"insert", "delete"})
	if len(activity.oneOf) != 2 {
		t.Fatalf("activity oneOf has %d branches, want insert and delete", len(activity.oneOf))
	}
	for i, name := range []string{"insert", "delete"} {
		branch := activity.oneOf[i]
		def := defs[name]
		check(name+" required", sorted(branch.required), set(def.(map[string]any)["required"]))
		check(name+" propertyNames", sorted(branch.allowed), allowed(def))
		check(name+" const", branch.properties[fieldOperation].constant, name)
		check(name+" table minLength", branch.properties[fieldTable].minLength, num(defs["table"], "minLength"))
	}
	row := activity.oneOf[1].properties[fieldValueToDelete]
	check("row required", sorted(row.required), set(defs["row"].(map[string]any)["required"]))
	check("row propertyNames", sorted(row.allowed), allowed(defs["row"]))
	for f, def := range map[field]string{fieldColNames: "colNames", fieldColTypes: "colTypes", fieldColValues: "colValues"} {
		for _, n := range []*schemaNode{activity.oneOf[0].properties[f], row.properties[f]} {
			check(def+" minItems", n.minItems, num(defs[def], "minItems"))
			check(def+" maxItems", n.maxItems, num(defs[def], "maxItems"))
		}
	}
}

// editSchema returns schema.json changed by edit, which works on the
// decoded document.
func editSchema(t *testing.T, edit func(doc, defs map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(SchemaJSON(), &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc, doc["$defs"].(map[string]any))
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func obj(v any) map[string]any { return v.(map[string]any) }

// TestFastSchemaRefusesWhatItCannotFollow: a schema.json the fast path
// cannot decide alone makes compileFastSchema fail, with a reason, rather
// than evaluate it wrongly.
func TestFastSchemaRefusesWhatItCannotFollow(t *testing.T) {
	for _, c := range []struct {
		name, reason string
		edit         func(doc, defs map[string]any)
	}{
		{"an unknown keyword", `keyword "additionalProperties" is not one the fast path knows`, func(doc, defs map[string]any) {
			obj(defs["row"])["additionalProperties"] = false
		}},
		{"a pattern on a string", `keyword "pattern"`, func(doc, defs map[string]any) {
			obj(defs["table"])["pattern"] = "^[a-z]+$"
		}},
		{"a numeric keyword", `keyword "maximum"`, func(doc, defs map[string]any) {
			obj(defs["colValues"])["maximum"] = 3
		}},
		{"a property the decoder does not decode", `property "comment" is not one the fast path decodes`, func(doc, defs map[string]any) {
			obj(defs["insert"])["propertyNames"] = map[string]any{"pattern": "^(operation|table|col_names|col_types|col_values|comment)$"}
		}},
		{"a property allowed where the decoder does not read it", `allows [table] in value_to_delete`, func(doc, defs map[string]any) {
			obj(defs["row"])["propertyNames"] = map[string]any{"pattern": "^(col_names|col_types|col_values|table)$"}
		}},
		{"an object without propertyNames", "needs propertyNames", func(doc, defs map[string]any) {
			delete(obj(defs["row"]), "propertyNames")
		}},
		{"a regular expression for propertyNames", "is not of the form", func(doc, defs map[string]any) {
			obj(defs["row"])["propertyNames"] = map[string]any{"pattern": "^col_"}
		}},
		{"propertyNames alternatives that are patterns", "is not a plain name", func(doc, defs map[string]any) {
			obj(defs["row"])["propertyNames"] = map[string]any{"pattern": "^(col_names|col_types|col_.*)$"}
		}},
		{"a string without its type", `must be declared type "string"`, func(doc, defs map[string]any) {
			delete(obj(defs["table"]), "type")
		}},
		{"another type where the decoder reads a string", "type integer is not one of", func(doc, defs map[string]any) {
			obj(defs["table"])["type"] = "integer"
		}},
		{"a type the decoder cannot read there", `must be declared type "array"`, func(doc, defs map[string]any) {
			obj(defs["colNames"])["type"] = "string"
		}},
		{"a list of types", "is not one of object, array, string", func(doc, defs map[string]any) {
			obj(defs["table"])["type"] = []any{"string", "null"}
		}},
		{"items on col_values", "does not validate their items", func(doc, defs map[string]any) {
			obj(defs["colValues"])["items"] = map[string]any{"type": "string"}
		}},
		{"tuple items", "tuple validation", func(doc, defs map[string]any) {
			obj(defs["colNames"])["items"] = []any{map[string]any{"type": "string"}}
		}},
		{"$ref beside other keywords", "$ref beside", func(doc, defs map[string]any) {
			obj(obj(obj(defs["insert"])["properties"])["table"])["minLength"] = 2
		}},
		{"enum on an array", "enum or const on a string array", func(doc, defs map[string]any) {
			obj(defs["colNames"])["enum"] = []any{"a"}
		}},
		{"a non-string const", "is not a string", func(doc, defs map[string]any) {
			obj(obj(obj(defs["insert"])["properties"])["operation"])["const"] = 1
		}},
		{"a recursive $ref", "refers to itself", func(doc, defs map[string]any) {
			obj(defs["row"])["properties"].(map[string]any)["value_to_delete"] = map[string]any{"$ref": "#/$defs/row"}
			obj(defs["row"])["propertyNames"] = map[string]any{"pattern": "^(col_names|col_types|col_values|value_to_delete)$"}
		}},
		{"a $ref outside $defs", "is not of the form #/$defs/name", func(doc, defs map[string]any) {
			obj(obj(defs["insert"])["properties"])["table"] = map[string]any{"$ref": "#/properties/ordering_key"}
		}},
		{"a boolean schema", "boolean schemas are not supported", func(doc, defs map[string]any) {
			obj(obj(defs["insert"])["properties"])["table"] = true
		}},
		{"a branch that lets any property through", "needs propertyNames", func(doc, defs map[string]any) {
			obj(defs["activity"])["oneOf"] = append(obj(defs["activity"])["oneOf"].([]any), map[string]any{"type": "object"})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := compileFastSchema(editSchema(t, c.edit))
			if err == nil || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("compileFastSchema = %v, want an error saying %q", err, c.reason)
			}
		})
	}
}

// TestFastSchemaFollowsEdits changes schema.json in ways the fast path can
// follow and checks, on generated documents, that the compiled schema then
// decides as qri-io/jsonschema does on the changed schema: the bounds,
// property sets and enums are read, not copied.
func TestFastSchemaFollowsEdits(t *testing.T) {
	t.Parallel() // CPU-bound and pure: it runs beside the other slow ones
	docs := 1500
	if raceEnabled || testing.Short() {
		docs = 300
	}
	for _, c := range []struct {
		name string
		edit func(doc, defs map[string]any)
	}{
		{"unchanged", func(doc, defs map[string]any) {}},
		{"activities bounds", func(doc, defs map[string]any) {
			a := obj(obj(doc["properties"])["activities"])
			a["minItems"], a["maxItems"] = 2, 3
		}},
		{"ordering_key bounds", func(doc, defs map[string]any) {
			k := obj(obj(doc["properties"])["ordering_key"])
			k["minLength"], k["maxLength"] = 3, 6
		}},
		{"ordering_key required", func(doc, defs map[string]any) {
			doc["required"] = []any{"activities", "ordering_key"}
		}},
		{"a table length bound and a column enum", func(doc, defs map[string]any) {
			obj(defs["table"])["maxLength"] = 5
			obj(obj(defs["colNames"])["items"])["enum"] = []any{"c0", "c1", "id", "x"}
		}},
		{"column bounds", func(doc, defs map[string]any) {
			obj(defs["colNames"])["maxItems"] = 3
			obj(defs["colValues"])["minItems"] = 2
			obj(obj(defs["colTypes"])["items"])["minLength"] = 4
			obj(obj(defs["colTypes"])["items"])["maxLength"] = 7
		}},
		{"inserts only", func(doc, defs map[string]any) {
			op := obj(obj(obj(defs["activity"])["properties"])["operation"])
			op["enum"] = []any{"insert"}
		}},
		{"an insert without col_values", func(doc, defs map[string]any) {
			obj(defs["insert"])["required"] = []any{"operation", "table", "col_names", "col_types"}
		}},
		{"a delete row without col_values", func(doc, defs map[string]any) {
			obj(defs["row"])["propertyNames"] = map[string]any{"pattern": "^(col_names|col_types)$"}
			obj(defs["row"])["required"] = []any{"col_names", "col_types"}
		}},
		{"two branches for an insert", func(doc, defs map[string]any) {
			// An insert then matches both: oneOf wants exactly one.
			a := obj(defs["activity"])
			a["oneOf"] = append(a["oneOf"].([]any), map[string]any{"$ref": "#/$defs/insert"})
		}},
		{"a oneOf on a string", func(doc, defs map[string]any) {
			obj(defs["table"])["oneOf"] = []any{map[string]any{"maxLength": 2}, map[string]any{"minLength": 6}}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := editSchema(t, c.edit)
			fast, err := compileFastSchema(raw)
			if err != nil {
				t.Fatalf("compileFastSchema: %v", err)
			}
			qri, err := compileSchema(raw)
			if err != nil {
				t.Fatal(err)
			}
			accepted := 0
			for i := range uint64(docs) {
				body, _ := generateDoc(99, i)
				valid, ok := schemaVerdicts(fast, qri, body)
				if !ok {
					continue
				}
				if valid.fast != valid.qri {
					t.Fatalf("document %d: the fast path says valid=%v, qri says %v\n%.2000s", i, valid.fast, valid.qri, body)
				}
				if valid.qri {
					accepted++
				}
			}
			if accepted == 0 && c.name != "two branches for an insert" {
				t.Fatalf("no document matched the schema: the comparison proves nothing")
			}
		})
	}
}

type verdicts struct{ fast, qri bool }

// schemaVerdicts decides body's validity against the schema alone, in both
// forms. ok is false for a body refused before the schema (not JSON, a key
// twice, a lone surrogate outside a value, too many activities), which the
// schema does not decide.
func schemaVerdicts(fast *fastSchema, qri *jsonschema.Schema, body []byte) (v verdicts, ok bool) {
	if !utf8.Valid(body) {
		return verdicts{}, false
	}
	doc, se := decodeForSchema(body)
	if se != nil {
		return verdicts{}, false
	}
	if root, isObject := doc.(map[string]any); isObject {
		if acts, _ := root["activities"].([]any); len(acts) > MaxActivities {
			return verdicts{}, false
		}
	}
	v.qri = len(*qri.Validate(context.Background(), doc).Errs) == 0
	d := new(fastDecoder)
	d.reset(body)
	v.fast = d.decode() && fast.valid(d)
	return v, true
}
