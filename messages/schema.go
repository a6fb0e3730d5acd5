package messages

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/qri-io/jsonschema"
)

//go:embed schema.json
var schemaJSON []byte

// SchemaJSON returns the JSON Schema (draft 2019-09) that Parse checks a
// payload's shape against, for serving to API clients. The semantic rules
// Parse applies after it are documented on Parse.
func SchemaJSON() []byte { return bytes.Clone(schemaJSON) }

// gateSchemas are the compiled schemas. root is schema.json; insert and
// delete are the same document with its root replaced by a $ref to one
// activity branch, so an activity whose operation is known can be checked
// against its own branch: oneOf only reports that no branch matched.
type gateSchemas struct {
	root, insert, delete *jsonschema.Schema
	// allowed lists each object's properties, read from schema.json, to name
	// them when propertyNames rejects a stray one.
	allowed map[string][]string
}

var (
	gateOnce sync.Once
	gate     *gateSchemas
	gateErr  error
)

// loadGate compiles and warms the schemas once per process.
//
// Why the warm-up: qri-io/jsonschema resolves every $ref, and registers every
// subschema, lazily on the first validation that reaches it, writing into the
// shared schema (upstream issues #76 and #80: "concurrent map writes"). The
// warm-up documents reach every $ref of every schema, so after it validation
// only reads the compiled schemas and is safe from any number of goroutines.
// TestWarmUpResolvesEveryRef checks that no $ref is left for later, and
// TestValidateConcurrently checks the result under -race; without the
// warm-up the race detector reports the lazy resolution at once.
func loadGate() (*gateSchemas, error) {
	gateOnce.Do(func() { gate, gateErr = compileGate() })
	return gate, gateErr
}

func compileGate() (*gateSchemas, error) {
	g := &gateSchemas{}
	var err error
	if g.root, err = compileSchema(schemaJSON); err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(schemaJSON, &doc); err != nil {
		return nil, fmt.Errorf("messages: schema.json: %w", err)
	}
	defs, _ := doc["$defs"].(map[string]any)
	g.allowed = map[string][]string{"": propertyNames(doc)}
	for _, name := range []string{"insert", "delete", "row"} {
		def, ok := defs[name].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("messages: schema.json has no $defs/%s", name)
		}
		g.allowed[name] = propertyNames(def)
	}
	// An activity whose operation is unknown may hold either branch's.
	either := append(slices.Clone(g.allowed["insert"]), g.allowed["delete"]...)
	slices.Sort(either)
	g.allowed["activity"] = slices.Compact(either)
	if g.insert, err = compileBranch(defs, "insert"); err != nil {
		return nil, err
	}
	if g.delete, err = compileBranch(defs, "delete"); err != nil {
		return nil, err
	}
	if err := g.warmUp(); err != nil {
		return nil, err
	}
	return g, nil
}

func compileSchema(raw []byte) (*jsonschema.Schema, error) {
	s := &jsonschema.Schema{}
	if err := json.Unmarshal(raw, s); err != nil {
		return nil, fmt.Errorf("messages: compiling schema: %w", err)
	}
	return s, nil
}

// compileBranch compiles {"$defs": {...}, "$ref": "#/$defs/<name>"} with
// the $defs of schema.json that the branch refers to, directly or not. Only
// those: every $ref in the branch schema is then reachable, so the warm-up
// resolves them all (TestWarmUpResolvesEveryRef).
func compileBranch(defs map[string]any, name string) (*jsonschema.Schema, error) {
	needed := map[string]any{}
	pending := []string{name}
	for len(pending) > 0 {
		def := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		if _, done := needed[def]; done {
			continue
		}
		schema, ok := defs[def]
		if !ok {
			return nil, fmt.Errorf("messages: schema.json has no $defs/%s", def)
		}
		needed[def] = schema
		pending = append(pending, defRefs(schema)...)
	}
	raw, err := json.Marshal(map[string]any{
		"$schema": "https://json-schema.org/draft/2019-09/schema",
		"$defs":   needed,
		"$ref":    "#/$defs/" + name,
	})
	if err != nil {
		return nil, fmt.Errorf("messages: building %s branch schema: %w", name, err)
	}
	return compileSchema(raw)
}

// defRefs lists the $defs that schema's "#/$defs/<name>" references name.
func defRefs(schema any) []string {
	var names []string
	switch v := schema.(type) {
	case map[string]any:
		if ref, ok := v["$ref"].(string); ok {
			if name, ok := strings.CutPrefix(ref, "#/$defs/"); ok {
				names = append(names, name)
			}
		}
		for _, child := range v {
			names = append(names, defRefs(child)...)
		}
	case []any:
		for _, child := range v {
			names = append(names, defRefs(child)...)
		}
	}
	return names
}

func propertyNames(schema map[string]any) []string {
	props, _ := schema["properties"].(map[string]any)
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Warm-up documents. The good one holds an insert and a delete with every
// property, so each branch and each $ref under it is reached; the bad ones
// take the error paths.
const (
	warmInsert = `{"operation":"insert","table":"t","col_names":["a"],"col_types":["INT64"],"col_values":[1]}`
	warmDelete = `{"operation":"delete","table":"t","value_to_delete":{"col_names":["a"],"col_types":["INT64"],"col_values":[1]}}`
	warmGood   = `{"activities":[` + warmInsert + `,` + warmDelete + `]}`
	warmBad    = `{"activities":[{"operation":"upsert"},{"operation":"insert","table":"","col_names":[1],"col_types":[],"col_values":[],"x":1},` +
		`{"operation":"delete","table":1,"value_to_delete":{"col_names":"a","col_types":[2],"col_values":{}}}],"y":2}`
)

func (g *gateSchemas) warmUp() error {
	checks := []struct {
		schema    *jsonschema.Schema
		doc       string
		wantValid bool
	}{
		{g.root, warmGood, true},
		{g.root, warmBad, false},
		{g.insert, warmInsert, true},
		{g.insert, `{"operation":"insert","table":"","col_names":[1],"col_types":[],"col_values":[],"x":1}`, false},
		{g.delete, warmDelete, true},
		{g.delete, `{"operation":"delete","table":1,"value_to_delete":{"col_names":"a","col_types":[2],"col_values":{},"x":1}}`, false},
	}
	for _, c := range checks {
		var doc any
		if err := json.Unmarshal([]byte(c.doc), &doc); err != nil {
			return fmt.Errorf("messages: warm-up document: %w", err)
		}
		state := c.schema.Validate(context.Background(), doc)
		if valid := len(*state.Errs) == 0; valid != c.wantValid {
			return fmt.Errorf("messages: schema.json misjudges its warm-up document %s: errors %v", c.doc, *state.Errs)
		}
	}
	return nil
}

// check validates doc against the schema and returns its problems, empty
// when the shape is right.
func (g *gateSchemas) check(doc any) []Problem {
	if problems := g.oversized(doc); len(problems) > 0 {
		return withRule(problems, RuleLimits)
	}
	return withRule(g.checkShape(doc), RuleSchema)
}

// withRule marks problems as breaking rule.
func withRule(problems []Problem, rule Rule) []Problem {
	for i := range problems {
		problems[i].Rule = rule
	}
	return problems
}

func (g *gateSchemas) checkShape(doc any) []Problem {
	errs := *g.root.Validate(context.Background(), doc).Errs
	if len(errs) == 0 {
		return nil
	}
	var activities []any
	if obj, ok := doc.(map[string]any); ok {
		activities, _ = obj["activities"].([]any)
	}

	// For an activity whose operation is known, its branch schema explains
	// the failure far better than oneOf's "did not match"; its errors replace
	// everything the root reported under that activity.
	var problems []Problem
	branchChecked := map[int]bool{}
	for _, e := range errs {
		index, rest, ok := activityIndex(e.PropertyPath)
		if ok && index < len(activities) {
			if op, known := knownOperation(activities[index]); known {
				if !branchChecked[index] {
					branchChecked[index] = true
					problems = append(problems, g.checkBranch(op, index, activities[index])...)
				}
				continue
			}
			if rest == "" && e.Message == qriOneOfMismatch {
				// The enum, required or type error beside it says what is wrong.
				continue
			}
		}
		problems = append(problems, g.problemsFrom(e, "", "")...)
	}
	if len(problems) == 0 {
		// Defensive: never turn a failed validation into a pass.
		for _, e := range errs {
			problems = append(problems, g.problemsFrom(e, "", "")...)
		}
	}
	return problems
}

// maxObjectProperties is far above the five properties any object of the
// payload may have.
const maxObjectProperties = 64

// oversized reports, without running the validator, a document whose
// activity list or objects are far too large. The validator spends about
// 15µs on an activity even if it is "{}" and a few µs on each stray
// property; a 1 MiB body of either would cost a second or more for a
// payload that is refused anyway, so such parts are reported alone.
func (g *gateSchemas) oversized(doc any) []Problem {
	root, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	var problems []Problem
	tooMany := func(path string, obj map[string]any, allowed []string) {
		if len(obj) > maxObjectProperties {
			problems = append(problems, Problem{Path: path, Message: fmt.Sprintf(
				"has %d properties; allowed here: %s", len(obj), strings.Join(allowed, ", "))})
		}
	}
	tooMany("", root, g.allowed[""])
	activities, _ := root["activities"].([]any)
	if len(activities) > MaxActivities {
		problems = append(problems, Problem{Path: "/activities", Message: fmt.Sprintf(
			"has %d items; at most %d allowed", len(activities), MaxActivities)})
		return problems
	}
	for i, item := range activities {
		activity, ok := item.(map[string]any)
		if !ok {
			continue
		}
		path := "/activities/" + strconv.Itoa(i)
		kind := "activity"
		if op, known := knownOperation(activity); known {
			kind = string(op)
		}
		tooMany(path, activity, g.allowed[kind])
		if row, ok := activity["value_to_delete"].(map[string]any); ok {
			tooMany(path+"/value_to_delete", row, g.allowed["row"])
		}
	}
	return problems
}

func (g *gateSchemas) checkBranch(op Operation, index int, activity any) []Problem {
	schema := g.insert
	if op == OpDelete {
		schema = g.delete
	}
	prefix := "/activities/" + strconv.Itoa(index)
	errs := *schema.Validate(context.Background(), activity).Errs
	problems := make([]Problem, 0, len(errs))
	for _, e := range errs {
		problems = append(problems, g.problemsFrom(e, prefix, string(op))...)
	}
	if len(problems) == 0 {
		problems = append(problems, Problem{Path: prefix, Message: "is not a valid " + string(op) + " activity"})
	}
	return problems
}

const qriOneOfMismatch = "did not match any of the specified OneOf schemas"

// activityIndex splits "/activities/N[/rest]" into N and "/rest".
func activityIndex(path string) (index int, rest string, ok bool) {
	tail, found := strings.CutPrefix(path, "/activities/")
	if !found {
		return 0, "", false
	}
	digits, rest, _ := strings.Cut(tail, "/")
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 {
		return 0, "", false
	}
	if rest != "" {
		rest = "/" + rest
	}
	return n, rest, true
}

func knownOperation(activity any) (Operation, bool) {
	obj, ok := activity.(map[string]any)
	if !ok {
		return "", false
	}
	switch op, _ := obj["operation"].(string); Operation(op) {
	case OpInsert:
		return OpInsert, true
	case OpDelete:
		return OpDelete, true
	}
	return "", false
}

// problemsFrom turns one qri KeyError into Problems, rewording qri's
// messages for API clients. prefix is prepended to the error's path (for a
// branch check, the activity's path); op names the branch, "" for the root.
func (g *gateSchemas) problemsFrom(e jsonschema.KeyError, prefix, op string) []Problem {
	path := e.PropertyPath
	if path == "/" {
		path = ""
	}
	path = prefix + path
	msg := e.Message

	if t, got, ok := cutTypeMessage(msg); ok {
		return []Problem{{Path: path, Message: "must be " + withArticle(t) + ", got " + withArticle(got)}}
	}
	if field, ok := cutQuoted(msg, `"`, `" value is required`); ok {
		return []Problem{{Path: path, Message: "missing required property " + strconv.Quote(field)}}
	}
	if strings.HasPrefix(msg, "array length ") {
		var n, limit int
		if _, err := fmt.Sscanf(msg, "array length %d below %d minimum items", &n, &limit); err == nil {
			if limit == 1 {
				return []Problem{{Path: path, Message: "must not be empty"}}
			}
			return []Problem{{Path: path, Message: fmt.Sprintf("has %d items; at least %d required", n, limit)}}
		}
		if _, err := fmt.Sscanf(msg, "array length %d exceeds %d max", &n, &limit); err == nil {
			return []Problem{{Path: path, Message: fmt.Sprintf("has %d items; at most %d allowed", n, limit)}}
		}
	}
	if strings.HasPrefix(msg, "min length of 1 characters required") {
		return []Problem{{Path: path, Message: "must not be empty"}}
	}
	if strings.HasPrefix(msg, "max length of ") {
		// qri echoes the whole string, which would make the answer to a
		// long value as long as the value.
		var limit int
		if _, err := fmt.Sscanf(msg, "max length of %d characters exceeded", &limit); err == nil {
			s, _ := e.InvalidValue.(string)
			return []Problem{{Path: path, Message: fmt.Sprintf("has %d characters; at most %d allowed", utf8.RuneCountInString(s), limit)}}
		}
	}
	if strings.HasPrefix(msg, "regexp pattern ") {
		// The only patterns in schema.json are propertyNames, and qri
		// locates their errors at the refused key.
		if key, isKey := e.InvalidValue.(string); isKey && strings.HasSuffix(path, "/"+escapePointerToken(key)) {
			return []Problem{{Path: path, Message: "unknown property; allowed here: " + strings.Join(g.allowedAt(path, op), ", ")}}
		}
	}
	if list, ok := strings.CutPrefix(msg, "should be one of "); ok {
		if strings.HasSuffix(path, "/operation") {
			return []Problem{{Path: path, Message: "unknown operation " + describeValue(e.InvalidValue) + `; must be "insert" or "delete"`}}
		}
		return []Problem{{Path: path, Message: "must be one of " + list + ", got " + describeValue(e.InvalidValue)}}
	}
	if msg == qriOneOfMismatch {
		return []Problem{{Path: path, Message: `must be an insert or a delete activity`}}
	}
	return []Problem{{Path: path, Message: msg}}
}

// allowedAt lists the properties allowed in the object that holds the
// property at path; op is the branch being checked, "" for the root.
func (g *gateSchemas) allowedAt(path, op string) []string {
	parent := path[:strings.LastIndexByte(path, '/')]
	switch {
	case parent == "":
		return g.allowed[""]
	case strings.HasSuffix(parent, "/value_to_delete"):
		return g.allowed["row"]
	default:
		return g.allowed[op]
	}
}

func escapePointerToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// cutTypeMessage parses qri's "type should be X, got Y".
func cutTypeMessage(msg string) (want, got string, ok bool) {
	rest, found := strings.CutPrefix(msg, "type should be ")
	if !found {
		return "", "", false
	}
	return strings.Cut(rest, ", got ")
}

func cutQuoted(msg, prefix, suffix string) (string, bool) {
	if !strings.HasPrefix(msg, prefix) || !strings.HasSuffix(msg, suffix) || len(msg) < len(prefix)+len(suffix) {
		return "", false
	}
	return msg[len(prefix) : len(msg)-len(suffix)], true
}

func withArticle(noun string) string {
	if noun == "" {
		return noun
	}
	switch noun[0] {
	case 'a', 'e', 'i', 'o', 'u':
		return "an " + noun
	}
	return "a " + noun
}

// describeValue renders a client's value (from the decoded document) for a
// message, bounded in length.
func describeValue(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return truncateForMessage(string(raw))
}

// sortProblems orders problems by location in the document (array indexes
// compared as numbers), then by message, and drops exact duplicates, so the
// same payload always yields the same list.
func sortProblems(problems []Problem) []Problem {
	slices.SortFunc(problems, func(a, b Problem) int {
		if c := comparePointers(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
	return slices.Compact(problems)
}

// comparePointers orders JSON Pointers token by token, numbers by value. It
// does not allocate: a hostile payload can yield a million problems.
func comparePointers(a, b string) int {
	for a != "" && b != "" {
		var ta, tb string
		ta, a = nextToken(a)
		tb, b = nextToken(b)
		if ta == tb {
			continue
		}
		if isDigits(ta) && isDigits(tb) {
			ta, tb = strings.TrimLeft(ta, "0"), strings.TrimLeft(tb, "0")
			if len(ta) != len(tb) {
				return cmp.Compare(len(ta), len(tb))
			}
		}
		return strings.Compare(ta, tb)
	}
	return cmp.Compare(len(a), len(b))
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isASCIIDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// nextToken splits "/tok/rest" into "tok" and "/rest".
func nextToken(p string) (token, rest string) {
	p = strings.TrimPrefix(p, "/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}
