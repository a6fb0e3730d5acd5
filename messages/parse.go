package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxProblems bounds one ValidationError. A hostile body can hold hundreds
// of thousands of wrong values; listing each would make the 400 response
// many times larger than the request. Below the bound every problem is
// listed.
const maxProblems = 1000

// Parse is the gate: it accepts body only if it is a valid payload and
// returns it typed. It checks, in this order, and stops at the first step
// that fails:
//
//  1. body is UTF-8 and one JSON document, with no object key twice in
//     one object and no lone UTF-16 surrogate escape, else *SyntaxError
//     (located by JSON Pointer for those two);
//  2. the document matches schema.json (see SchemaJSON), else
//     *ValidationError listing every schema problem;
//  3. the semantic rules, for every activity, else one *ValidationError
//     listing every problem found in any activity:
//     - col_names, col_types and col_values have the same length;
//     - table and column names are identifiers (see ValidIdentifier) within
//     MaxTableNameLen and MaxColumnNameLen, do not start with "_gatekeeper",
//     and column names avoid BigQuery's reserved prefixes;
//     - no column appears twice in one activity, ignoring case;
//     - every col_type is known (see ParseColumnType);
//     - every value is JSON null (SQL NULL) or fits its type (see
//     Column.Value for the Go value each type becomes);
//     - at most MaxTables distinct tables.
//
// Problems are located by JSON Pointer and sorted by location, so the same
// body always yields the same error. Two bounds keep a hostile body cheap:
// more than MaxActivities activities, or an object with dozens of stray
// properties, is reported without validating what is inside; and an error
// lists at most 1000 problems, then says how many more there were.
//
// Values are normalised, so equal values have one form: integers lose a
// ".0", decimals are exact strings without exponent or trailing fraction
// zeros, times drop trailing fraction zeros, DATETIME has a space before the
// time, TIMESTAMP is converted to UTC, JSON values are compacted.
//
// Parse is safe for concurrent use, does no I/O, and its cost is linear in
// len(body); the request size limit is the caller's job.
//
// A valid payload is decided by a fast path (parseFast) that decodes the
// body once, straight into typed columns, and evaluates schema.json in a
// compiled form; anything else takes parseChecked, the definition above
// step by step, which produces the error. The two agree on every document
// (TestFastPathAgreesWithSchema), so which one answered is never visible.
func Parse(body []byte) (Payload, error) {
	if utf8.Valid(body) {
		if p, ok := parseFast(body); ok {
			return p, nil
		}
	}
	return parseChecked(body)
}

// parseChecked is Parse as documented, each step in turn: the strict
// decoder's generic tree, schema.json through qri-io/jsonschema, a second
// decode into WirePayload and fromWire. It is what a refused payload's
// error comes from, and the oracle the fast path is tested against.
func parseChecked(body []byte) (Payload, error) {
	if !utf8.Valid(body) {
		return Payload{}, &SyntaxError{Err: invalidUTF8Error(body)}
	}
	doc, se := decodeForSchema(body)
	if se != nil {
		return Payload{}, se
	}
	g, err := loadGate()
	if err != nil {
		return Payload{}, err
	}
	if problems := g.check(doc); len(problems) > 0 {
		return Payload{}, newValidationError(problems)
	}
	var wire WirePayload
	if err := json.Unmarshal(body, &wire); err != nil {
		// The schema admits only documents that decode; reaching this is a
		// disagreement between schema.json and WirePayload.
		return Payload{}, newValidationError([]Problem{{Message: "payload does not decode: " + err.Error(), Rule: RuleSchema}})
	}
	p, problems := fromWire(wire)
	if len(problems) > 0 {
		return Payload{}, newValidationError(problems)
	}
	return p, nil
}

func newValidationError(problems []Problem) *ValidationError {
	broken := map[Rule]bool{}
	for _, p := range problems {
		broken[p.Rule] = true
	}
	var rules []Rule
	for _, r := range Rules {
		if broken[r] {
			rules = append(rules, r)
		}
	}
	problems = sortProblems(problems)
	if len(problems) > maxProblems {
		more := len(problems) - maxProblems
		problems = append(problems[:maxProblems:maxProblems], Problem{
			Message: fmt.Sprintf("and %d more problems not listed", more),
		})
	}
	return &ValidationError{Problems: problems, Rules: rules}
}

// invalidUTF8Error locates the first byte that is not UTF-8. It is needed
// because encoding/json would silently replace such bytes with U+FFFD, and
// the gate would pass data the sender never sent.
func invalidUTF8Error(body []byte) error {
	offset := 0
	for offset < len(body) {
		r, size := utf8.DecodeRune(body[offset:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		offset += size
	}
	return fmt.Errorf("body is not valid UTF-8 (first invalid byte at offset %d)", offset)
}

// fromWire applies the semantic rules to a document that matched the schema
// and builds the typed payload. It collects every problem before giving up.
func fromWire(w WirePayload) (Payload, []Problem) {
	var problems []Problem
	p := Payload{Activities: make([]Activity, 0, len(w.Activities)), OrderingKey: w.OrderingKey}
	tables := make(map[string]struct{}, 4)
	for i, wa := range w.Activities {
		base := "/activities/" + strconv.Itoa(i)
		if msg := tableNameProblem(wa.Table); msg != "" {
			problems = append(problems, Problem{Path: base + "/table", Message: msg, Rule: RuleIdentifier})
		}
		tables[wa.Table] = struct{}{}

		rowPath := base
		names, types, values := wa.ColNames, wa.ColTypes, wa.ColValues
		if wa.Operation == OpDelete && wa.ValueToDelete != nil {
			rowPath = base + "/value_to_delete"
			names, types, values = wa.ValueToDelete.ColNames, wa.ValueToDelete.ColTypes, wa.ValueToDelete.ColValues
		}
		columns, rowProblems := checkRow(rowPath, names, types, values)
		problems = append(problems, rowProblems...)
		p.Activities = append(p.Activities, Activity{Op: wa.Operation, Table: wa.Table, Columns: columns})
	}
	if len(tables) > MaxTables {
		problems = append(problems, Problem{
			Path: "/activities",
			Message: fmt.Sprintf("payload touches %d distinct tables; at most %d fit one transaction",
				len(tables), MaxTables),
			Rule: RuleLimits,
		})
	}
	if len(problems) > 0 {
		return Payload{}, problems
	}
	return p, nil
}

// checkRow checks one activity's columns, located under path.
func checkRow(path string, names, types []string, values []json.RawMessage) ([]Column, []Problem) {
	var problems []Problem
	if len(types) != len(names) {
		problems = append(problems, Problem{Path: path + "/col_types", Message: lengthMismatch("col_types", len(types), len(names)), Rule: RuleLengthMismatch})
	}
	if len(values) != len(names) {
		problems = append(problems, Problem{Path: path + "/col_values", Message: lengthMismatch("col_values", len(values), len(names)), Rule: RuleLengthMismatch})
	}

	for j, name := range names {
		if msg := columnNameProblem(name); msg != "" {
			problems = append(problems, Problem{Path: path + "/col_names/" + strconv.Itoa(j), Message: msg, Rule: RuleIdentifier})
		}
	}
	problems = append(problems, duplicateColumns(path, names)...)

	columns := make([]Column, min(len(names), len(types), len(values)))
	for j, declared := range types {
		t, err := ParseColumnType(declared)
		if err != nil {
			var cte *ColumnTypeError
			msg := err.Error()
			if errors.As(err, &cte) {
				msg = "unknown column type " + quote(declared) + ": " + cte.Reason
			}
			problems = append(problems, Problem{Path: path + "/col_types/" + strconv.Itoa(j), Message: msg, Rule: RuleUnknownType})
			continue
		}
		if j >= len(values) {
			continue
		}
		value, msg := convertValue(t, declared, values[j])
		if msg != "" {
			problems = append(problems, Problem{Path: path + "/col_values/" + strconv.Itoa(j), Message: msg, Rule: RuleValueType})
			continue
		}
		if j < len(columns) {
			columns[j] = Column{Name: names[j], Type: t, Value: value}
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return columns, nil
}

func lengthMismatch(field string, got, want int) string {
	return fmt.Sprintf("%s has %d entries but col_names has %d; col_names, col_types and col_values must have the same length",
		field, got, want)
}

// duplicateColumns reports each column named again in one activity.
// BigQuery column names are case-insensitive, so "ID" repeats "id".
func duplicateColumns(path string, names []string) []Problem {
	var problems []Problem
	report := func(j, first int) {
		problems = append(problems, Problem{
			Path: path + "/col_names/" + strconv.Itoa(j),
			Message: fmt.Sprintf("column %s repeats col_names/%d %s (column names are case-insensitive)",
				quote(names[j]), first, quote(names[first])),
			Rule: RuleDuplicateColumn,
		})
	}
	// Few columns are the rule; a quadratic scan beats a map there.
	const scanLimit = 16
	if len(names) <= scanLimit {
		for j := 1; j < len(names); j++ {
			for k := 0; k < j; k++ {
				if asciiEqualFold(names[j], names[k]) {
					report(j, k)
					break
				}
			}
		}
		return problems
	}
	first := make(map[string]int, len(names))
	for j, name := range names {
		key := asciiLower(name)
		if k, seen := first[key]; seen {
			report(j, k)
			continue
		}
		first[key] = j
	}
	return problems
}

// asciiEqualFold and asciiLower fold only ASCII letters, as BigQuery does
// for the ASCII identifiers the gate admits; both duplicate checks above
// must agree on every input.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = lowerASCII(b[j])
			}
			return string(b)
		}
	}
	return s
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
