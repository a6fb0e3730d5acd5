package messages

import (
	"strings"
	"sync"
)

// parseFast is the gate's fast path: one pass from body to Payload, with
// schema.json evaluated in its compiled form (fastschema.go) and the
// semantic rules applied to the typed columns. ok is false whenever the
// payload is not plainly valid; the caller then runs parseChecked, which
// is the definition of the gate (schema.json through qri-io/jsonschema,
// then fromWire) and produces the error. body must be valid UTF-8.
//
// TestFastPathAgreesWithSchema holds it to that definition: on every
// document, parseFast accepts exactly when parseChecked does, with the
// same Payload.
func parseFast(body []byte) (p Payload, ok bool) {
	schema, err := loadFastSchema()
	if err != nil {
		return Payload{}, false
	}
	d := decoders.Get().(*fastDecoder)
	defer releaseDecoder(d)
	d.reset(body)
	if !d.decode() || !schema.valid(d) {
		return Payload{}, false
	}
	return d.payload()
}

// decoders pools the decoder's scratch, which is pointer-free (see text),
// so a pooled decoder holds no body.
var decoders = sync.Pool{New: func() any { return new(fastDecoder) }}

// maxPooledEntries keeps a decoder that read a huge body from pinning its
// scratch in the pool; such bodies are rare, and allocating for them is
// cheap next to reading them.
const maxPooledEntries = 1 << 14

func releaseDecoder(d *fastDecoder) {
	d.data = nil
	if cap(d.strs) > maxPooledEntries || cap(d.vals) > maxPooledEntries || cap(d.arena) > 16*maxPooledEntries ||
		cap(d.keys) > maxPooledEntries || cap(d.keyBuf) > 16*maxPooledEntries {
		return
	}
	decoders.Put(d)
}

// payload applies the semantic rules (see Parse) to the decoded document,
// which matched the schema, and builds the Payload. It is fromWire and
// checkRow for a payload without problems: the first rule broken makes it
// give up, since the checked path will list every problem anyway.
func (d *fastDecoder) payload() (Payload, bool) {
	columns := 0
	for i := range d.acts {
		columns += d.rowFor(&d.acts[i]).names.len()
	}
	// One backing array for every activity's columns; each activity's
	// slice is capped, so appending to one never writes into the next.
	cols := make([]Column, columns)
	p := Payload{Activities: make([]Activity, len(d.acts))}
	if d.present.has(fieldOrderingKey) {
		p.OrderingKey = string(d.bytes(d.orderingKey))
	}
	var tables distinctTables
	for i := range d.acts {
		a := &d.acts[i]
		r := d.rowFor(a)
		n := r.names.len()
		if r.types.len() != n || r.values.len() != n {
			return Payload{}, false
		}
		row := cols[:n:n]
		cols = cols[n:]
		table := d.identifiers(a.table, r.names, row)
		if tableNameProblem(table) != "" {
			return Payload{}, false
		}
		tables.add(table)
		if repeatsColumn(row) {
			return Payload{}, false
		}
		for j := range row {
			if columnNameProblem(row[j].Name) != "" {
				return Payload{}, false
			}
			t, ok := columnType(d.bytes(d.strs[r.types.lo+j]))
			if !ok {
				return Payload{}, false
			}
			v := d.vals[r.values.lo+j]
			// A lone surrogate escape is kept only in a JSON value, as the
			// text the sender sent (see decodeForSchema).
			if v.lone && t.Base != TypeJSON {
				return Payload{}, false
			}
			value, ok := fastValue(t, d.data[v.off:v.end])
			if !ok {
				return Payload{}, false
			}
			row[j].Type, row[j].Value = t, value
		}
		p.Activities[i] = Activity{Op: operation(d.bytes(a.operation)), Table: table, Columns: row}
	}
	if tables.count() > MaxTables {
		return Payload{}, false
	}
	return p, true
}

// rowFor is the row fromWire reads: value_to_delete for a delete that has
// one, else the columns at the top level.
func (d *fastDecoder) rowFor(a *fastActivity) *fastRow {
	if string(d.bytes(a.operation)) == string(OpDelete) && a.present.has(fieldValueToDelete) {
		return &a.del
	}
	return &a.top
}

// identifiers copies an activity's table and column names out of the body
// into one string, of which each is a part: one allocation instead of one
// per name (the names of one activity live as long as each other). It
// returns the table and sets each column's Name.
func (d *fastDecoder) identifiers(table text, names span, row []Column) string {
	size := table.len()
	for _, t := range d.strs[names.lo:names.hi] {
		size += t.len()
	}
	var b strings.Builder
	b.Grow(size)
	b.Write(d.bytes(table))
	for _, t := range d.strs[names.lo:names.hi] {
		b.Write(d.bytes(t))
	}
	all := b.String()
	at := table.len()
	for j, t := range d.strs[names.lo:names.hi] {
		row[j].Name = all[at : at+t.len()]
		at += t.len()
	}
	return all[:table.len()]
}

// repeatsColumn reports whether a column's name repeats an earlier one,
// ignoring ASCII case, as duplicateColumns decides it.
func repeatsColumn(row []Column) bool {
	if len(row) <= keyScanLimit {
		for j := 1; j < len(row); j++ {
			for k := range j {
				if asciiEqualFold(row[j].Name, row[k].Name) {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(row))
	for _, c := range row {
		key := asciiLower(c.Name)
		if _, dup := seen[key]; dup {
			return true
		}
		seen[key] = struct{}{}
	}
	return false
}

func operation(b []byte) Operation {
	switch string(b) {
	case string(OpInsert):
		return OpInsert
	case string(OpDelete):
		return OpDelete
	}
	return Operation(b)
}

// distinctTables counts distinct table names without a map for the few
// tables a payload usually touches.
type distinctTables struct {
	few  [keyScanLimit]string
	n    int
	many map[string]struct{}
}

func (t *distinctTables) add(name string) {
	if t.many != nil {
		t.many[name] = struct{}{}
		return
	}
	for _, seen := range t.few[:t.n] {
		if seen == name {
			return
		}
	}
	if t.n < len(t.few) {
		t.few[t.n] = name
		t.n++
		return
	}
	t.many = make(map[string]struct{}, 4*keyScanLimit)
	for _, seen := range t.few {
		t.many[seen] = struct{}{}
	}
	t.many[name] = struct{}{}
}

func (t *distinctTables) count() int {
	if t.many != nil {
		return len(t.many)
	}
	return t.n
}

// columnTypes caches ParseColumnType for the plain spellings of every
// type, in upper and lower case: looking a []byte up in a map by
// string(b) does not allocate, where ParseColumnType(string(b)) would.
var columnTypes = func() map[string]ColumnType {
	m := make(map[string]ColumnType, 2*len(typeNames))
	for name := range typeNames {
		for _, spelling := range []string{name, strings.ToLower(name)} {
			if t, err := ParseColumnType(spelling); err == nil {
				m[spelling] = t
			}
		}
	}
	return m
}()

func columnType(b []byte) (ColumnType, bool) {
	if t, ok := columnTypes[string(b)]; ok {
		return t, true
	}
	t, err := ParseColumnType(string(b))
	return t, err == nil
}

// fastValue is convertValue for a value that fits: it decodes the common
// small integer itself, which convertValue does through an exact decimal
// (three allocations), and leaves every other value to convertValue.
func fastValue(t ColumnType, raw []byte) (any, bool) {
	if t.Base == TypeInt64 {
		if v, ok := smallInteger(raw); ok {
			return v, true
		}
	}
	value, problem := convertValue(t, "", raw) // declared only words the problem
	return value, problem == ""
}

// smallInteger parses a JSON integer of at most 18 digits, -?(0|[1-9]\d*),
// which always fits int64 and which convertValue would map to the same
// value ("-0" is 0). Anything else (a fraction, an exponent, more digits)
// is left to convertValue.
func smallInteger(raw []byte) (int64, bool) {
	neg := len(raw) > 0 && raw[0] == '-'
	digits := raw
	if neg {
		digits = raw[1:]
	}
	if len(digits) == 0 || len(digits) > 18 || len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}
