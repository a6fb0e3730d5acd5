package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
)

// fastPathSchemaSHA256 is the SHA-256 of the schema.json the fast path was
// last proven against (TestFastPathAgreesWithSchema with at least a million
// documents). schema.json is the contract and qri-io/jsonschema defines
// what it means; the fast path only mirrors it. A schema.json with another
// hash turns the fast path off (every payload then takes the qri path,
// slower but right) and fails TestFastPathFollowsSchema until a developer
// has checked the fast path against the new schema and recorded its hash
// here.
const fastPathSchemaSHA256 = "47a5563e8d3ef9940474d670151663dd46f49bdea9fa5f771f4b0e1af01a1366"

// field is a property the fast decoder knows how to decode. The decoder's
// shape is fixed (a WirePayload); schema.json decides the constraints on
// it, which compileFastSchema reads.
type field uint8

const (
	fieldActivities field = iota
	fieldOrderingKey
	fieldOperation
	fieldTable
	fieldColNames
	fieldColTypes
	fieldColValues
	fieldValueToDelete
	numFields
)

var fieldNames = [numFields]string{
	fieldActivities: "activities", fieldOrderingKey: "ordering_key", fieldOperation: "operation",
	fieldTable: "table", fieldColNames: "col_names", fieldColTypes: "col_types",
	fieldColValues: "col_values", fieldValueToDelete: "value_to_delete",
}

func fieldByName(name string) (field, bool) {
	for f, n := range fieldNames {
		if n == name {
			return field(f), true
		}
	}
	return 0, false
}

// fieldSet is a set of fields, one bit each.
type fieldSet uint16

func (s fieldSet) has(f field) bool { return s&(1<<f) != 0 }
func (s *fieldSet) add(f field)     { *s |= 1 << f }

func (s fieldSet) names() []string {
	var names []string
	for f := range numFields {
		if s.has(f) {
			names = append(names, fieldNames[f])
		}
	}
	return names
}

// position is a place in the payload where the fast decoder stands; each
// has one JSON kind, the only one the decoder can represent there.
type position uint8

const (
	posRoot       position = iota // the document: an object
	posActivities                 // /activities: an array of activity objects
	posActivity                   // /activities/i
	posRow                        // /activities/i/value_to_delete
	posStrings                    // col_names, col_types: arrays of strings
	posString                     // operation, table, ordering_key, a name or type
	posValues                     // col_values: an array of any JSON values, kept as text
)

var positionNames = [...]string{"the document", "activities", "an activity", "value_to_delete", "a string array", "a string", "col_values"}

type schemaKind uint8

const (
	schemaObject schemaKind = iota
	schemaArray
	schemaString
)

var kindNames = [...]string{schemaObject: "object", schemaArray: "array", schemaString: "string"}

func (p position) kind() schemaKind {
	switch p {
	case posRoot, posActivity, posRow:
		return schemaObject
	case posString:
		return schemaString
	}
	return schemaArray
}

// fields maps each property the decoder knows at an object position to
// the position of its value.
func (p position) fields() map[field]position {
	columns := map[field]position{fieldColNames: posStrings, fieldColTypes: posStrings, fieldColValues: posValues}
	switch p {
	case posRoot:
		return map[field]position{fieldActivities: posActivities, fieldOrderingKey: posString}
	case posActivity:
		columns[fieldOperation], columns[fieldTable], columns[fieldValueToDelete] = posString, posString, posRow
		return columns
	case posRow:
		return columns
	}
	return nil
}

// items is the position of an array position's elements; posValues has
// none the decoder looks into.
func (p position) items() (position, bool) {
	switch p {
	case posActivities:
		return posActivity, true
	case posStrings:
		return posString, true
	}
	return 0, false
}

// schemaNode is one compiled subschema of schema.json, holding the
// keywords the fast path knows. It is evaluated on the decoded payload as
// qri-io/jsonschema evaluates it on the generic tree: a keyword that does
// not apply to a value's kind is ignored, oneOf needs exactly one branch.
type schemaNode struct {
	where string // JSON Pointer into schema.json, for messages

	typ                  string // "" when the node has no type keyword
	required             fieldSet
	allowed              fieldSet // from propertyNames; meaningful if hasAllowed
	hasAllowed           bool
	properties           [numFields]*schemaNode
	items                *schemaNode
	minItems, maxItems   int // maxItems < 0: no bound
	minLength, maxLength int // maxLength < 0: no bound
	enum                 []string
	hasEnum              bool
	constant             string
	hasConst             bool
	oneOf                []*schemaNode
}

// fastSchema is schema.json compiled for the fast path.
type fastSchema struct {
	root *schemaNode
}

// annotations are keywords that never affect validity.
var annotations = map[string]bool{"title": true, "description": true, "$comment": true}

// compileFastSchema compiles raw (schema.json) into the fast path's form
// and proves that the decoder can follow it: every keyword is one the fast
// path evaluates, every property it allows is one the decoder decodes, and
// wherever the decoder needs a JSON kind to represent a value, the schema
// refuses every other kind. Where the decoder gives up early (an unknown
// key, a wrong kind), the schema would therefore refuse too, and the fast
// path can decide acceptance alone.
func compileFastSchema(raw []byte) (*fastSchema, error) {
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("schema.json: %w", err)
	}
	c := &schemaCompiler{defs: map[string]*schemaNode{}, compiling: map[string]bool{}}
	if d, ok := doc["$defs"]; ok {
		if c.rawDefs, ok = d.(map[string]any); !ok {
			return nil, fmt.Errorf("schema.json: $defs is not an object")
		}
	}
	root, err := c.compile(doc, "", true)
	if err != nil {
		return nil, err
	}
	if err := verifyPosition(posRoot, []*schemaNode{root}); err != nil {
		return nil, err
	}
	return &fastSchema{root: root}, nil
}

type schemaCompiler struct {
	rawDefs   map[string]any
	defs      map[string]*schemaNode
	compiling map[string]bool
}

func (c *schemaCompiler) compile(v any, where string, isRoot bool) (*schemaNode, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("schema.json%s: a subschema that is not an object (boolean schemas are not supported)", pointerOrRoot(where))
	}
	n := &schemaNode{where: where, maxItems: -1, maxLength: -1}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys) // one order, so the first problem reported is always the same
	if ref, ok := obj["$ref"]; ok {
		for _, k := range keys {
			if k != "$ref" && !annotations[k] {
				return nil, fmt.Errorf("schema.json%s: $ref beside %q is not supported by the fast path", pointerOrRoot(where), k)
			}
		}
		return c.ref(ref, where)
	}
	for _, k := range keys {
		val := obj[k]
		at := where + "/" + escapePointerToken(k)
		var err error
		switch {
		case annotations[k]:
		case isRoot && (k == "$schema" || k == "$defs"):
			// $defs are compiled where a $ref reaches them.
		case k == "type":
			s, ok := val.(string)
			if !ok || (s != "object" && s != "array" && s != "string") {
				err = fmt.Errorf("schema.json%s: type %v is not one of object, array, string (the only kinds the fast path decodes)", at, val)
			}
			n.typ = s
		case k == "required":
			var names []string
			if names, err = stringList(val, at); err == nil {
				for _, name := range names {
					f, known := fieldByName(name)
					if !known {
						err = fmt.Errorf("schema.json%s: required property %q is not one the fast path decodes", at, name)
						break
					}
					n.required.add(f)
				}
			}
		case k == "propertyNames":
			n.allowed, err = propertyNamesSet(val, at)
			n.hasAllowed = true
		case k == "properties":
			props, ok := val.(map[string]any)
			if !ok {
				err = fmt.Errorf("schema.json%s: properties is not an object", at)
				break
			}
			names := make([]string, 0, len(props))
			for name := range props {
				names = append(names, name)
			}
			slices.Sort(names)
			for _, name := range names {
				f, known := fieldByName(name)
				if !known {
					err = fmt.Errorf("schema.json%s: property %q is not one the fast path decodes", at, name)
					break
				}
				if n.properties[f], err = c.compile(props[name], at+"/"+escapePointerToken(name), false); err != nil {
					break
				}
			}
		case k == "items":
			if _, isList := val.([]any); isList {
				err = fmt.Errorf("schema.json%s: items as a list (tuple validation) is not supported by the fast path", at)
				break
			}
			n.items, err = c.compile(val, at, false)
		case k == "minItems":
			n.minItems, err = count(val, at)
		case k == "maxItems":
			n.maxItems, err = count(val, at)
		case k == "minLength":
			n.minLength, err = count(val, at)
		case k == "maxLength":
			n.maxLength, err = count(val, at)
		case k == "enum":
			n.enum, err = stringList(val, at)
			n.hasEnum = true
		case k == "const":
			s, ok := val.(string)
			if !ok {
				err = fmt.Errorf("schema.json%s: const %v is not a string (the only const the fast path compares)", at, val)
			}
			n.constant, n.hasConst = s, true
		case k == "oneOf":
			branches, ok := val.([]any)
			if !ok || len(branches) == 0 {
				err = fmt.Errorf("schema.json%s: oneOf is not a non-empty list", at)
				break
			}
			for i, b := range branches {
				var branch *schemaNode
				if branch, err = c.compile(b, fmt.Sprintf("%s/%d", at, i), false); err != nil {
					break
				}
				n.oneOf = append(n.oneOf, branch)
			}
		default:
			err = fmt.Errorf("schema.json%s: keyword %q is not one the fast path knows; teach it to the fast path (messages/fastschema.go) or drop it", at, k)
		}
		if err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (c *schemaCompiler) ref(v any, where string) (*schemaNode, error) {
	ref, _ := v.(string)
	name, ok := strings.CutPrefix(ref, "#/$defs/")
	if !ok || strings.Contains(name, "/") {
		return nil, fmt.Errorf("schema.json%s/$ref: %q is not of the form #/$defs/name", where, ref)
	}
	if n, done := c.defs[name]; done {
		return n, nil
	}
	if c.compiling[name] {
		return nil, fmt.Errorf("schema.json%s/$ref: $defs/%s refers to itself; the fast path decodes a fixed depth", where, name)
	}
	def, ok := c.rawDefs[name]
	if !ok {
		return nil, fmt.Errorf("schema.json%s/$ref: there is no $defs/%s", where, name)
	}
	c.compiling[name] = true
	n, err := c.compile(def, "/$defs/"+escapePointerToken(name), false)
	delete(c.compiling, name)
	if err != nil {
		return nil, err
	}
	c.defs[name] = n
	return n, nil
}

func pointerOrRoot(where string) string {
	if where == "" {
		return " (the root)"
	}
	return where
}

func stringList(v any, at string) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("schema.json%s: not a list", at)
	}
	out := make([]string, 0, len(list))
	for _, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("schema.json%s: member %v is not a string (the only kind the fast path compares)", at, item)
		}
		out = append(out, s)
	}
	return out, nil
}

func count(v any, at string) (int, error) {
	f, ok := v.(float64)
	if !ok || f < 0 || f != math.Trunc(f) || f > math.MaxInt32 {
		return 0, fmt.Errorf("schema.json%s: %v is not a non-negative integer", at, v)
	}
	return int(f), nil
}

// propertyNamesSet reads {"pattern": "^(a|b|c)$"} as the set {a, b, c}.
// Under RE2 (qri compiles patterns with Go's regexp), where $ matches only
// at the end of the text, such a pattern of plain word alternatives matches
// exactly those names; any other pattern is refused rather than guessed at.
func propertyNamesSet(v any, at string) (fieldSet, error) {
	obj, ok := v.(map[string]any)
	pattern, isString := obj["pattern"].(string)
	if !ok || len(obj) != 1 || !isString {
		return 0, fmt.Errorf("schema.json%s: propertyNames must be {\"pattern\": \"^(a|b)$\"} for the fast path", at)
	}
	inner, ok1 := strings.CutPrefix(pattern, "^(")
	inner, ok2 := strings.CutSuffix(inner, ")$")
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("schema.json%s/pattern: %q is not of the form ^(a|b)$", at, pattern)
	}
	var set fieldSet
	for _, name := range strings.Split(inner, "|") {
		if name == "" || strings.TrimLeft(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
			return 0, fmt.Errorf("schema.json%s/pattern: alternative %q is not a plain name", at, name)
		}
		f, known := fieldByName(name)
		if !known {
			return 0, fmt.Errorf("schema.json%s/pattern: property %q is not one the fast path decodes", at, name)
		}
		set.add(f)
	}
	return set, nil
}

// verifyPosition proves that the decoder may give up early at pos, where
// conj are the schema nodes that all apply to the value there. It checks
// every alternative (one branch chosen in each oneOf): in each, the value
// must be of pos's kind, an object may hold only properties the decoder
// knows here, and each such property is verified at its own position.
func verifyPosition(pos position, conj []*schemaNode) error {
	for _, alt := range alternatives(conj) {
		if err := verifyAlternative(pos, alt); err != nil {
			return err
		}
	}
	return nil
}

func verifyAlternative(pos position, alt []*schemaNode) error {
	where := func() string {
		ws := make([]string, len(alt))
		for i, n := range alt {
			ws[i] = strings.TrimPrefix(pointerOrRoot(n.where), " ")
		}
		return strings.Join(ws, " and ")
	}
	kind := pos.kind()
	typed := false
	for _, n := range alt {
		typed = typed || n.typ == kindNames[kind]
		if (n.hasEnum || n.hasConst) && kind != schemaString {
			return fmt.Errorf("schema.json %s: enum or const on %s is not supported by the fast path", where(), positionNames[pos])
		}
	}
	if !typed {
		return fmt.Errorf("schema.json %s: %s must be declared type %q, or the fast path, which decodes only that, would refuse what the schema accepts",
			where(), positionNames[pos], kindNames[kind])
	}
	switch kind {
	case schemaObject:
		known := pos.fields()
		var knownSet fieldSet
		for f := range known {
			knownSet.add(f)
		}
		restricted := false
		for _, n := range alt {
			if n.hasAllowed && n.allowed&^knownSet == 0 {
				restricted = true
			}
			if n.hasAllowed && n.allowed&^knownSet != 0 {
				return fmt.Errorf("schema.json%s/propertyNames: allows %v in %s; the fast path decodes only %v there",
					n.where, (n.allowed &^ knownSet).names(), positionNames[pos], knownSet.names())
			}
		}
		if !restricted {
			return fmt.Errorf("schema.json %s: %s needs propertyNames, or the fast path, which decodes only %v, would refuse a property the schema accepts",
				where(), positionNames[pos], knownSet.names())
		}
		for f, child := range known {
			var childConj []*schemaNode
			allowedHere := true
			for _, n := range alt {
				if n.hasAllowed && !n.allowed.has(f) {
					allowedHere = false
				}
				if n.properties[f] != nil {
					childConj = append(childConj, n.properties[f])
				}
			}
			if !allowedHere {
				continue // never present in an accepted document
			}
			if err := verifyPosition(child, childConj); err != nil {
				return err
			}
		}
	case schemaArray:
		itemPos, hasItems := pos.items()
		var itemConj []*schemaNode
		for _, n := range alt {
			if n.items == nil {
				continue
			}
			if !hasItems {
				return fmt.Errorf("schema.json%s/items: the fast path keeps %s as text and does not validate their items", n.where, positionNames[pos])
			}
			itemConj = append(itemConj, n.items)
		}
		if hasItems {
			return verifyPosition(itemPos, itemConj)
		}
	}
	return nil
}

// alternatives expands every oneOf in conj: each result chooses one branch
// per oneOf (recursively) and holds every node that then applies.
func alternatives(conj []*schemaNode) [][]*schemaNode {
	out := [][]*schemaNode{nil}
	for _, n := range conj {
		var next [][]*schemaNode
		choices := [][]*schemaNode{{n}}
		if len(n.oneOf) > 0 {
			choices = nil
			for _, b := range n.oneOf {
				for _, alt := range alternatives([]*schemaNode{b}) {
					choices = append(choices, append([]*schemaNode{n}, alt...))
				}
			}
		}
		for _, prefix := range out {
			for _, c := range choices {
				next = append(next, append(slices.Clone(prefix), c...))
			}
		}
		out = next
	}
	return out
}

var (
	fastOnce    sync.Once
	fastGate    *fastSchema
	fastGateErr error
)

// loadFastSchema compiles schema.json for the fast path once per process.
// It returns nil, and the reason, when the fast path must stay off: a
// schema.json it was not proven against, or one it cannot follow.
func loadFastSchema() (*fastSchema, error) {
	fastOnce.Do(func() { fastGate, fastGateErr = newFastSchema(schemaJSON) })
	return fastGate, fastGateErr
}

func newFastSchema(raw []byte) (*fastSchema, error) {
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != fastPathSchemaSHA256 {
		return nil, fmt.Errorf("schema.json has SHA-256 %s, but the fast path was proven against %s", got, fastPathSchemaSHA256)
	}
	return compileFastSchema(raw)
}
