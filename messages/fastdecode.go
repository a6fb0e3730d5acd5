package messages

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// The fast decoder reads a body in one pass straight into the payload's
// typed wire form, without building the generic tree qri needs. It only
// decides: any doubt (not JSON, a key twice, a lone surrogate outside a
// JSON value, a property or kind it does not decode) makes it give up, and
// Parse then runs the checked path, which explains the refusal. So it never
// needs to produce an error, only to be right when it accepts; and because
// compileFastSchema proved that schema.json refuses whatever the decoder
// gives up on, it also accepts whatever the checked path accepts
// (TestFastPathAgreesWithSchema).
//
// It follows decodeForSchema's grammar, which is encoding/json's
// (FuzzDecodeForSchema), byte for byte. The body must be valid UTF-8.

// text is a decoded string: a range of the body when the string had no
// escape, else of the decoder's arena. Offsets rather than slices keep the
// pooled scratch free of pointers, so it neither pins a body nor costs the
// garbage collector a scan.
type text struct {
	off, end int
	inArena  bool
}

func (t text) len() int { return t.end - t.off }

// span is a range of indexes into fastDecoder.strs or fastDecoder.vals.
type span struct{ lo, hi int }

func (s span) len() int { return s.hi - s.lo }

// rawValue is one col_values entry: its JSON text in the body, and whether
// a lone surrogate escape appears in it, which only a JSON column may hold.
type rawValue struct {
	off, end int
	lone     bool
}

type fastRow struct {
	present              fieldSet
	names, types, values span
}

type fastActivity struct {
	present          fieldSet
	operation, table text
	top              fastRow // an insert's columns
	del              fastRow // value_to_delete
}

type fastDecoder struct {
	data  []byte
	pos   int
	depth int

	present     fieldSet // the document's properties
	orderingKey text
	acts        []fastActivity
	strs        []text     // every col_names and col_types entry, in order
	vals        []rawValue // every col_values entry, in order
	arena       []byte     // unescaped strings

	// Scratch for the values: the keys of the objects being read, one run
	// per nesting level, to find a key given twice.
	keys   []text
	keyBuf []byte
	// lone is set when the value being read holds a lone surrogate escape.
	lone bool
}

func (d *fastDecoder) reset(body []byte) {
	d.data, d.pos, d.depth = body, 0, 0
	d.present, d.orderingKey = 0, text{}
	d.acts, d.strs, d.vals, d.arena = d.acts[:0], d.strs[:0], d.vals[:0], d.arena[:0]
	d.keys, d.keyBuf, d.lone = d.keys[:0], d.keyBuf[:0], false
}

func (d *fastDecoder) bytes(t text) []byte {
	if t.inArena {
		return d.arena[t.off:t.end]
	}
	return d.data[t.off:t.end]
}

// decode reads the whole body; false means the fast path gives up.
func (d *fastDecoder) decode() bool {
	d.skipSpace()
	if !d.root() {
		return false
	}
	d.skipSpace()
	return d.pos == len(d.data)
}

func (d *fastDecoder) skipSpace() { d.pos = skipWhitespace(d.data, d.pos) }

// skipWhitespace returns the position of the first byte at or after pos
// that is not JSON whitespace; both decoders use it.
func skipWhitespace(data []byte, pos int) int {
	for pos < len(data) {
		switch data[pos] {
		case ' ', '\t', '\n', '\r':
			pos++
		default:
			return pos
		}
	}
	return pos
}

// open consumes the opening bracket c of an object or array and reports
// whether it was there and within maxNestingDepth; empty reports that the
// closing bracket followed at once (and was consumed).
func (d *fastDecoder) open(c, end byte) (empty, ok bool) {
	if d.pos >= len(d.data) || d.data[d.pos] != c {
		return false, false
	}
	d.depth++
	if d.depth > maxNestingDepth {
		return false, false
	}
	d.pos++
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == end {
		d.pos++
		d.depth--
		return true, true
	}
	return false, true
}

// next reads what follows an element: a comma (more is true) or the
// closing bracket end (consumed).
func (d *fastDecoder) next(end byte) (more, ok bool) {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return false, false
	}
	switch d.data[d.pos] {
	case ',':
		d.pos++
		d.skipSpace()
		return true, true
	case end:
		d.pos++
		d.depth--
		return false, true
	}
	return false, false
}

// colon reads the ':' after a key, with the blanks around it.
func (d *fastDecoder) colon() bool {
	d.skipSpace()
	if d.pos >= len(d.data) || d.data[d.pos] != ':' {
		return false
	}
	d.pos++
	d.skipSpace()
	return true
}

// key reads an object key at a position the decoder knows, and maps it to
// the field it names; a key outside known makes the fast path give up.
func (d *fastDecoder) key(known fieldSet) (field, bool) {
	t, ok := d.identifier()
	if !ok {
		return 0, false
	}
	f, found := fieldByBytes(d.bytes(t))
	if !found || !known.has(f) || !d.colon() {
		return 0, false
	}
	return f, true
}

func fieldByBytes(b []byte) (field, bool) {
	// Comparing string(b) does not allocate.
	switch len(b) {
	case 5:
		if string(b) == "table" {
			return fieldTable, true
		}
	case 9:
		switch string(b) {
		case "operation":
			return fieldOperation, true
		case "col_names":
			return fieldColNames, true
		case "col_types":
			return fieldColTypes, true
		}
	case 10:
		switch string(b) {
		case "activities":
			return fieldActivities, true
		case "col_values":
			return fieldColValues, true
		}
	case 12:
		if string(b) == "ordering_key" {
			return fieldOrderingKey, true
		}
	case 15:
		if string(b) == "value_to_delete" {
			return fieldValueToDelete, true
		}
	}
	return 0, false
}

// identifier reads a string that the payload keeps (a key, an operation,
// a table, a name, a type, the ordering key). A lone surrogate there is
// refused, so it makes the fast path give up.
func (d *fastDecoder) identifier() (text, bool) {
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		return text{}, false
	}
	mark := len(d.arena)
	start, end, escaped, lone, ok := d.str(&d.arena)
	if !ok || lone {
		return text{}, false
	}
	if escaped {
		return text{off: mark, end: len(d.arena), inArena: true}, true
	}
	return text{off: start, end: end}, true
}

func (d *fastDecoder) root() bool {
	empty, ok := d.open('{', '}')
	if !ok || empty {
		return ok
	}
	known := fieldSet(1<<fieldActivities | 1<<fieldOrderingKey)
	for {
		f, ok := d.key(known)
		if !ok || d.present.has(f) {
			return false
		}
		d.present.add(f)
		if f == fieldActivities {
			ok = d.activities()
		} else {
			d.orderingKey, ok = d.identifier()
		}
		if !ok {
			return false
		}
		more, ok := d.next('}')
		if !ok || !more {
			return ok
		}
	}
}

func (d *fastDecoder) activities() bool {
	empty, ok := d.open('[', ']')
	if !ok || empty {
		return ok
	}
	for {
		// oversized refuses more activities than this whatever the schema
		// says, before validating them.
		if len(d.acts) == MaxActivities {
			return false
		}
		d.acts = append(d.acts, fastActivity{})
		if !d.activity(&d.acts[len(d.acts)-1]) {
			return false
		}
		more, ok := d.next(']')
		if !ok || !more {
			return ok
		}
	}
}

const rowFields = fieldSet(1<<fieldColNames | 1<<fieldColTypes | 1<<fieldColValues)

func (d *fastDecoder) activity(a *fastActivity) bool {
	empty, ok := d.open('{', '}')
	if !ok || empty {
		return ok
	}
	known := rowFields | 1<<fieldOperation | 1<<fieldTable | 1<<fieldValueToDelete
	for {
		f, ok := d.key(known)
		if !ok || a.present.has(f) {
			return false
		}
		a.present.add(f)
		switch f {
		case fieldOperation:
			a.operation, ok = d.identifier()
		case fieldTable:
			a.table, ok = d.identifier()
		case fieldValueToDelete:
			ok = d.row(&a.del)
		default:
			ok = d.column(f, &a.top)
		}
		if !ok {
			return false
		}
		more, ok := d.next('}')
		if !ok || !more {
			return ok
		}
	}
}

func (d *fastDecoder) row(r *fastRow) bool {
	empty, ok := d.open('{', '}')
	if !ok || empty {
		return ok
	}
	for {
		f, ok := d.key(rowFields)
		if !ok || r.present.has(f) || !d.column(f, r) {
			return false
		}
		r.present.add(f)
		more, ok := d.next('}')
		if !ok || !more {
			return ok
		}
	}
}

// column reads col_names, col_types or col_values into r.
func (d *fastDecoder) column(f field, r *fastRow) bool {
	switch f {
	case fieldColNames:
		return d.strings(&r.names)
	case fieldColTypes:
		return d.strings(&r.types)
	}
	return d.values(&r.values)
}

func (d *fastDecoder) strings(s *span) bool {
	s.lo = len(d.strs)
	s.hi = s.lo
	empty, ok := d.open('[', ']')
	if !ok || empty {
		return ok
	}
	for {
		t, ok := d.identifier()
		if !ok {
			return false
		}
		d.strs = append(d.strs, t)
		s.hi++
		more, ok := d.next(']')
		if !ok || !more {
			return ok
		}
	}
}

func (d *fastDecoder) values(s *span) bool {
	s.lo = len(d.vals)
	s.hi = s.lo
	empty, ok := d.open('[', ']')
	if !ok || empty {
		return ok
	}
	for {
		start := d.pos
		d.lone = false
		if !d.skip() {
			return false
		}
		d.vals = append(d.vals, rawValue{off: start, end: d.pos, lone: d.lone})
		s.hi++
		more, ok := d.next(']')
		if !ok || !more {
			return ok
		}
	}
}

// skip reads any JSON value, checking what the checked path checks: that
// it is JSON, within maxNestingDepth, and holds no key twice in one object.
// A lone surrogate escape sets d.lone.
func (d *fastDecoder) skip() bool {
	if d.pos >= len(d.data) {
		return false
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.skipObject()
	case c == '[':
		empty, ok := d.open('[', ']')
		if !ok || empty {
			return ok
		}
		for {
			if !d.skip() {
				return false
			}
			more, ok := d.next(']')
			if !ok || !more {
				return ok
			}
		}
	case c == '"':
		mark := len(d.keyBuf)
		_, _, _, lone, ok := d.str(&d.keyBuf)
		d.keyBuf = d.keyBuf[:mark]
		d.lone = d.lone || lone
		return ok
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	}
	return false
}

func (d *fastDecoder) literal(word string) bool {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		return false
	}
	d.pos += len(word)
	return true
}

// keyScanLimit: up to this many keys, an object inside a value is checked
// for a repeated key by comparing each with those before it; beyond it, by
// a map, so that a hostile object of many keys stays linear.
const keyScanLimit = 16

func (d *fastDecoder) skipObject() bool {
	empty, ok := d.open('{', '}')
	if !ok || empty {
		return ok
	}
	base, bufBase := len(d.keys), len(d.keyBuf)
	defer func() { d.keys, d.keyBuf = d.keys[:base], d.keyBuf[:bufBase] }()
	var seen map[string]struct{}
	for {
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return false
		}
		mark := len(d.keyBuf)
		start, end, escaped, lone, ok := d.str(&d.keyBuf)
		if !ok {
			return false
		}
		d.lone = d.lone || lone
		k := text{off: start, end: end}
		kb := d.data[start:end]
		if escaped {
			kb = d.keyBuf[mark:]
			k = text{off: mark, end: len(d.keyBuf), inArena: true}
		}
		switch {
		case seen != nil:
			if _, dup := seen[string(kb)]; dup {
				return false
			}
			seen[string(kb)] = struct{}{}
		case len(d.keys)-base < keyScanLimit:
			for _, prev := range d.keys[base:] {
				if bytes.Equal(d.keyBytes(prev), kb) {
					return false
				}
			}
			d.keys = append(d.keys, k)
		default:
			seen = make(map[string]struct{}, 2*keyScanLimit)
			for _, prev := range d.keys[base:] {
				seen[string(d.keyBytes(prev))] = struct{}{}
			}
			if _, dup := seen[string(kb)]; dup {
				return false
			}
			seen[string(kb)] = struct{}{}
		}
		if !d.colon() || !d.skip() {
			return false
		}
		more, ok := d.next('}')
		if !ok || !more {
			return ok
		}
	}
}

func (d *fastDecoder) keyBytes(t text) []byte {
	if t.inArena {
		return d.keyBuf[t.off:t.end]
	}
	return d.data[t.off:t.end]
}

// str reads the string at d.pos (its opening quote). Without escapes its
// content is d.data[start:end]; with escapes (escaped) it is unescaped onto
// *buf instead. lone reports a lone UTF-16 surrogate escape, which is
// written as U+FFFD as encoding/json does: only a caller that does not
// refuse it sees the content, and that caller ignores it.
func (d *fastDecoder) str(buf *[]byte) (start, end int, escaped, lone, ok bool) {
	d.pos++ // '"'
	start = d.pos
	data := d.data
	i := d.pos
	for i < len(data) {
		c := data[i]
		if c == '"' {
			d.pos = i + 1
			return start, i, false, false, true
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return 0, 0, false, false, false
		}
		i++
	}
	b := append(*buf, data[start:i]...)
	defer func() { *buf = b }()
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return start, i, true, lone, true
		case c < 0x20:
			return 0, 0, false, false, false
		case c != '\\':
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(data) {
			return 0, 0, false, false, false
		}
		esc := data[i+1]
		i += 2
		switch esc {
		case '"', '\\', '/':
			b = append(b, esc)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := hex4(data, i)
			if !ok {
				return 0, 0, false, false, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				// A high surrogate followed by a low one is one code point.
				if r < 0xdc00 && i+1 < len(data) && data[i] == '\\' && data[i+1] == 'u' {
					if r2, ok := hex4(data, i+2); ok && r2 >= 0xdc00 && r2 <= 0xdfff {
						b = utf8.AppendRune(b, utf16.DecodeRune(r, r2))
						i += 6
						continue
					}
				}
				lone = true
				r = utf8.RuneError
			}
			b = utf8.AppendRune(b, r)
		default:
			return 0, 0, false, false, false
		}
	}
	return 0, 0, false, false, false
}

// hex4 reads the four hex digits of a \u escape at data[at:]; both
// decoders use it.
func hex4(data []byte, at int) (rune, bool) {
	if at+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number reads a JSON number; the value rules read its text later.
func (d *fastDecoder) number() bool {
	end, ok := scanNumber(d.data, d.pos)
	d.pos = end
	return ok
}

// scanNumber reads the JSON number grammar from data[pos] and returns where
// it stopped, and whether a whole number was there. Both decoders use it.
func scanNumber(data []byte, pos int) (int, bool) {
	if data[pos] == '-' {
		pos++
	}
	switch {
	case pos < len(data) && data[pos] == '0':
		pos++
	case pos < len(data) && data[pos] >= '1' && data[pos] <= '9':
		pos = scanDigits(data, pos)
	default:
		return pos, false
	}
	if pos < len(data) && data[pos] == '.' {
		if end := scanDigits(data, pos+1); end > pos+1 {
			pos = end
		} else {
			return end, false
		}
	}
	if pos < len(data) && (data[pos] == 'e' || data[pos] == 'E') {
		pos++
		if pos < len(data) && (data[pos] == '+' || data[pos] == '-') {
			pos++
		}
		end := scanDigits(data, pos)
		if end == pos {
			return end, false
		}
		pos = end
	}
	return pos, true
}

func scanDigits(data []byte, pos int) int {
	for pos < len(data) && data[pos] >= '0' && data[pos] <= '9' {
		pos++
	}
	return pos
}
