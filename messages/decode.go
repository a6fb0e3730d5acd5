package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxNestingDepth is encoding/json's bound on nested arrays and objects;
// the strict decoder keeps it, so both agree on which documents are JSON.
const maxNestingDepth = 10000

// errDecoderDisagrees means encoding/json accepted a body the decoder
// refused as not JSON.
var errDecoderDisagrees = errors.New("the body could not be checked for duplicate keys and lone surrogates")

// decodeForSchema decodes body, which must be valid UTF-8, into the generic
// tree encoding/json would build (map[string]any, []any, string, float64,
// bool, nil), in one pass. Numbers beyond float64 are clamped to
// ±math.MaxFloat64: the schema checks only their kind, and the value rules
// see the original text later.
//
// It also refuses, with a *SyntaxError located by JSON Pointer, the two
// things RFC 7493 (I-JSON) forbids and encoding/json lets through:
//
//   - an object key that appears twice in one object (compared after
//     unescaping, so "a" and "\u0061" are the same key). Parsers disagree
//     on which copy wins, and that is how a payload smuggles past a gate;
//   - a \u escape of a lone UTF-16 surrogate, which encoding/json turns
//     into U+FFFD: data the sender never sent. One place is exempt: a
//     value in a JSON column, which the gate keeps as the text the sender
//     sent (compacted, escapes untouched), so nothing is replaced there.
//
// The first such problem in document order is reported. A body that is not
// JSON at all is reported as encoding/json reports it, so the messages
// clients see for syntax errors do not change.
func decodeForSchema(body []byte) (any, *SyntaxError) {
	d := decoder{data: body}
	d.skipSpace()
	v := d.value()
	d.skipSpace()
	if d.pos != len(d.data) {
		d.fail()
	}
	if d.syntax {
		var doc any
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, &SyntaxError{Err: err}
		}
		// encoding/json accepted what the decoder refused: a bug in the
		// decoder. The gate refuses rather than passing a body it could
		// not check.
		return nil, &SyntaxError{Err: errDecoderDisagrees}
	}
	for _, c := range d.inValues {
		if d.hostile != nil && d.hostile.offset < c.offset {
			break
		}
		if !isJSONColumn(v, c) {
			d.hostile = &c.located
			break
		}
	}
	if d.hostile != nil {
		return nil, d.hostile.err
	}
	return v, nil
}

// isJSONColumn reports whether the column c.column of the row at
// /activities/c.activity (or its value_to_delete) is declared JSON.
func isJSONColumn(doc any, c valueSurrogate) bool {
	root, _ := doc.(map[string]any)
	activities, _ := root["activities"].([]any)
	if c.activity >= len(activities) {
		return false
	}
	row, _ := activities[c.activity].(map[string]any)
	if c.inDelete {
		row, _ = row["value_to_delete"].(map[string]any)
	}
	types, _ := row["col_types"].([]any)
	if c.column >= len(types) {
		return false
	}
	declared, _ := types[c.column].(string)
	t, err := ParseColumnType(declared)
	return err == nil && t.Base == TypeJSON
}

type decoder struct {
	data []byte
	pos  int
	// syntax is set at the first syntax error; decoding stops there.
	syntax bool
	// hostile is the first duplicate key or lone surrogate; decoding goes
	// on, so that a syntax error later in the body still wins.
	hostile *located
	// inValues are the lone surrogates inside a column's value, one per
	// value, in document order: refused unless the column is JSON, which
	// only the whole document can tell.
	inValues []valueSurrogate
	// path locates the value being decoded, one token per level; it is
	// turned into a JSON Pointer only to report a problem.
	path  []pathToken
	depth int
	buf   []byte // scratch for unescaping strings
}

// located is a problem and the offset in the body where it was found.
type located struct {
	err    *SyntaxError
	offset int
}

type valueSurrogate struct {
	located
	activity, column int
	inDelete         bool
}

type pathToken struct {
	key   string
	index int // -1 for an object member
}

func (d *decoder) fail() {
	if !d.syntax {
		d.syntax = true
		d.pos = len(d.data)
	}
}

func (d *decoder) pointer() string {
	var b strings.Builder
	for _, t := range d.path {
		b.WriteByte('/')
		if t.index >= 0 {
			b.WriteString(strconv.Itoa(t.index))
		} else {
			b.WriteString(escapePointerToken(t.key))
		}
	}
	return b.String()
}

func (d *decoder) report(format string, args ...any) {
	if d.hostile == nil {
		d.hostile = &located{&SyntaxError{Err: fmt.Errorf(format, args...), Path: d.pointer()}, d.pos}
	}
}

// reportSurrogate reports a lone surrogate escape at the current path,
// or, inside a column's value, keeps it for decodeForSchema to decide.
func (d *decoder) reportSurrogate(where, lone string) {
	if d.hostile != nil {
		return
	}
	activity, column, inDelete, ok := d.valuePath()
	if !ok {
		d.report("%s holds a lone UTF-16 surrogate escape %s; only a valid surrogate pair can be sent", where, lone)
		return
	}
	if n := len(d.inValues); n > 0 {
		last := d.inValues[n-1]
		if last.activity == activity && last.column == column && last.inDelete == inDelete {
			return
		}
	}
	d.inValues = append(d.inValues, valueSurrogate{
		located: located{&SyntaxError{
			Err:  fmt.Errorf("%s holds a lone UTF-16 surrogate escape %s; only a valid surrogate pair can be sent (or the column declared JSON)", where, lone),
			Path: d.pointer(),
		}, d.pos},
		activity: activity, column: column, inDelete: inDelete,
	})
}

// valuePath reports whether the current path is inside a column's value,
// /activities/i/col_values/j or /activities/i/value_to_delete/col_values/j.
func (d *decoder) valuePath() (activity, column int, inDelete, ok bool) {
	p := d.path
	if len(p) < 4 || p[0].key != "activities" || p[0].index >= 0 || p[1].index < 0 {
		return 0, 0, false, false
	}
	activity = p[1].index
	if p[2].index < 0 && p[2].key == "value_to_delete" {
		inDelete, p = true, p[1:]
		if len(p) < 4 {
			return 0, 0, false, false
		}
	}
	if p[2].index >= 0 || p[2].key != "col_values" || p[3].index < 0 {
		return 0, 0, false, false
	}
	return activity, p[3].index, inDelete, true
}

func (d *decoder) skipSpace() { d.pos = skipWhitespace(d.data, d.pos) }

func (d *decoder) value() any {
	if d.pos >= len(d.data) {
		d.fail()
		return nil
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		s, _ := d.string(false)
		return s
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	case c == 't':
		return d.literal("true", true)
	case c == 'f':
		return d.literal("false", false)
	case c == 'n':
		return d.literal("null", nil)
	}
	d.fail()
	return nil
}

func (d *decoder) literal(word string, v any) any {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		d.fail()
		return nil
	}
	d.pos += len(word)
	return v
}

func (d *decoder) enter() bool {
	d.depth++
	if d.depth > maxNestingDepth {
		d.fail()
		return false
	}
	return true
}

func (d *decoder) object() any {
	if !d.enter() {
		return nil
	}
	defer func() { d.depth-- }()
	d.pos++ // '{'
	m := make(map[string]any)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return m
	}
	for !d.syntax {
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			d.fail()
			break
		}
		key, lone := d.string(true)
		if lone != "" {
			d.reportSurrogate("an object key", lone)
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			d.fail()
			break
		}
		d.pos++
		d.skipSpace()
		d.path = append(d.path, pathToken{key: key, index: -1})
		if _, dup := m[key]; dup {
			d.report("object key %s appears twice; a key may appear once per object", quote(key))
		}
		m[key] = d.value()
		d.path = d.path[:len(d.path)-1]
		if d.closes('}') {
			return m
		}
	}
	return nil
}

func (d *decoder) array() any {
	if !d.enter() {
		return nil
	}
	defer func() { d.depth-- }()
	d.pos++ // '['
	a := []any{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return a
	}
	for i := 0; !d.syntax; i++ {
		d.path = append(d.path, pathToken{index: i})
		a = append(a, d.value())
		d.path = d.path[:len(d.path)-1]
		if d.closes(']') {
			return a
		}
	}
	return nil
}

// closes reads what follows an element of an object or array: a comma,
// for another element, or end, which closes it (reported true). Anything
// else, or the end of the data, is a syntax error.
func (d *decoder) closes(end byte) bool {
	d.skipSpace()
	if d.pos >= len(d.data) {
		d.fail()
		return false
	}
	switch d.data[d.pos] {
	case ',':
		d.pos++
		d.skipSpace()
	case end:
		d.pos++
		return true
	default:
		d.fail()
	}
	return false
}

// string decodes the string at d.pos. When the string holds a lone
// surrogate escape, lone is that escape as sent and, unless isKey (the
// caller reports a key's), the problem is reported at the current path.
func (d *decoder) string(isKey bool) (s, lone string) {
	d.pos++ // '"'
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if c == '"' {
			s = string(d.data[start:d.pos])
			d.pos++
			return s, ""
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			d.fail()
			return "", ""
		}
		d.pos++
	}
	d.buf = append(d.buf[:0], d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			if lone != "" && !isKey {
				d.reportSurrogate("the string", lone)
			}
			return string(d.buf), lone
		case c < 0x20:
			d.fail()
			return "", ""
		case c != '\\':
			d.buf = append(d.buf, c)
			d.pos++
			continue
		}
		if d.pos+1 >= len(d.data) {
			d.fail()
			return "", ""
		}
		esc := d.data[d.pos+1]
		d.pos += 2
		switch esc {
		case '"', '\\', '/':
			d.buf = append(d.buf, esc)
		case 'b':
			d.buf = append(d.buf, '\b')
		case 'f':
			d.buf = append(d.buf, '\f')
		case 'n':
			d.buf = append(d.buf, '\n')
		case 'r':
			d.buf = append(d.buf, '\r')
		case 't':
			d.buf = append(d.buf, '\t')
		case 'u':
			r, ok := hex4(d.data, d.pos)
			if !ok {
				d.fail()
				return "", ""
			}
			escStart := d.pos - 2
			d.pos += 4
			if utf16.IsSurrogate(r) {
				// A high surrogate followed by a low one is one code point.
				if r < 0xdc00 && d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
					if r2, ok := hex4(d.data, d.pos+2); ok && r2 >= 0xdc00 && r2 <= 0xdfff {
						d.buf = utf8.AppendRune(d.buf, utf16.DecodeRune(r, r2))
						d.pos += 6
						continue
					}
				}
				if lone == "" {
					lone = string(d.data[escStart:d.pos])
				}
				r = utf8.RuneError
			}
			d.buf = utf8.AppendRune(d.buf, r)
		default:
			d.fail()
			return "", ""
		}
	}
	d.fail()
	return "", ""
}

// number decodes a number as encoding/json does into an any, except that
// one beyond float64 is clamped instead of refused.
func (d *decoder) number() any {
	start := d.pos
	end, ok := scanNumber(d.data, d.pos)
	d.pos = end
	if !ok {
		d.fail()
		return nil
	}
	f, err := strconv.ParseFloat(string(d.data[start:d.pos]), 64)
	if err != nil && math.IsInf(f, 0) {
		f = math.Copysign(math.MaxFloat64, f)
	}
	return f
}
