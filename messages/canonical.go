package messages

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Wire renders p in the wire form, from the typed values: a payload that
// came from Parse renders as a payload Parse accepts and maps back to p.
// col_types are rendered by ColumnType.String, except that a bounded string
// is "STRING(n)" so that its bound survives; values are rendered in their
// canonical form (NUMERIC as a decimal string, BYTES as base64, JSON as the
// value itself).
func (p Payload) Wire() WirePayload {
	w := WirePayload{Activities: make([]WireActivity, len(p.Activities)), OrderingKey: p.OrderingKey}
	for i, a := range p.Activities {
		names := make([]string, len(a.Columns))
		types := make([]string, len(a.Columns))
		values := make([]json.RawMessage, len(a.Columns))
		for j, c := range a.Columns {
			names[j] = c.Name
			types[j] = c.Type.wireName()
			values[j] = renderValue(c)
		}
		wa := WireActivity{Operation: a.Op, Table: a.Table}
		if a.Op == OpDelete {
			wa.ValueToDelete = &WireRow{ColNames: names, ColTypes: types, ColValues: values}
		} else {
			wa.ColNames, wa.ColTypes, wa.ColValues = names, types, values
		}
		w.Activities[i] = wa
	}
	return w
}

// Canonical is p's wire form as compact JSON. It is deterministic (the same
// payload always yields the same bytes) and Parse(Canonical(p)) equals p, so
// it is what travels on the accepted topic and what a replay re-POSTs.
// HTML characters are not escaped: they would change JSON-typed values.
//
// The bytes are exactly what encoding/json's Encoder, with SetEscapeHTML
// (false), writes for p.Wire() without its newline (the definition, kept
// in canonicalViaEncoder and compared by the differential tests); they are
// written here directly because the gate and the apply stage render every
// payload, and the reflective encoder cost as much as parsing it.
func (p Payload) Canonical() []byte {
	out := make([]byte, 0, canonicalSizeHint(p))
	out = append(out, `{"activities":[`...)
	for i, a := range p.Activities {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"operation":`...)
		out = appendJSONString(out, string(a.Op))
		out = append(out, `,"table":`...)
		out = appendJSONString(out, a.Table)
		switch {
		case a.Op == OpDelete:
			// WireRow's fields have no omitempty: an empty row is still written.
			out = append(out, `,"value_to_delete":{`...)
			out = appendColumns(out, a.Columns)
			out = append(out, '}')
		case len(a.Columns) > 0:
			// WireActivity's column fields are omitempty.
			out = append(out, ',')
			out = appendColumns(out, a.Columns)
		}
		out = append(out, '}')
	}
	out = append(out, ']')
	if p.OrderingKey != "" {
		out = append(out, `,"ordering_key":`...)
		out = appendJSONString(out, p.OrderingKey)
	}
	return append(out, '}')
}

// canonicalSizeHint is about the size of p's canonical form, so that it is
// written into one allocation.
func canonicalSizeHint(p Payload) int {
	n := 64 + len(p.OrderingKey)
	for _, a := range p.Activities {
		n += 96 + len(a.Table)
		for _, c := range a.Columns {
			n += 24 + len(c.Name)
			switch v := c.Value.(type) {
			case string:
				n += len(v)
			case []byte:
				n += len(v) * 4 / 3
			}
		}
	}
	return n
}

// appendColumns writes "col_names":[…],"col_types":[…],"col_values":[…].
func appendColumns(out []byte, columns []Column) []byte {
	out = append(out, `"col_names":[`...)
	for j, c := range columns {
		if j > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, c.Name)
	}
	out = append(out, `],"col_types":[`...)
	for j, c := range columns {
		if j > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, c.Type.wireName())
	}
	out = append(out, `],"col_values":[`...)
	for j, c := range columns {
		if j > 0 {
			out = append(out, ',')
		}
		out = appendValue(out, c)
	}
	return append(out, ']')
}

// appendValue writes renderValue(c) as the Encoder writes a RawMessage:
// compacted. The common values are written directly; the others go
// through renderValue itself.
func appendValue(out []byte, c Column) []byte {
	switch v := c.Value.(type) {
	case nil:
		return append(out, "null"...)
	case int64:
		return strconv.AppendInt(out, v, 10)
	case bool:
		return strconv.AppendBool(out, v)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return append(out, "null"...)
		}
		return appendJSONFloat(out, v)
	case []byte:
		out = append(out, '"')
		out = base64.StdEncoding.AppendEncode(out, v)
		return append(out, '"')
	case string:
		if c.Type.Base != TypeJSON {
			return appendJSONString(out, v)
		}
	}
	return appendCompact(out, renderValue(c))
}

// appendCompact appends raw compacted, as json.Compact writes it (and as
// the Encoder writes a RawMessage without HTML escaping).
func appendCompact(out, raw []byte) []byte {
	buf := bytes.NewBuffer(out)
	if err := json.Compact(buf, raw); err != nil {
		// renderValue returns only valid JSON.
		return append(out, "null"...)
	}
	return buf.Bytes()
}

// appendJSONFloat writes f as encoding/json does: like ES6's number to
// string conversion, %f between 1e-6 and 1e21, else %e without exponent
// padding.
func appendJSONFloat(out []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	out = strconv.AppendFloat(out, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(out)
		if n >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
			out[n-2] = out[n-1]
			out = out[:n-1]
		}
	}
	return out
}

// appendJSONString writes s as a JSON string as encoding/json does without
// HTML escaping: '"', '\\' and control characters escaped (\b \f \n \r \t
// by name), U+2028 and U+2029 escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(out []byte, s string) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			out = append(out, s[start:i]...)
			switch b {
			case '\\', '"':
				out = append(out, '\\', b)
			case '\b':
				out = append(out, '\\', 'b')
			case '\f':
				out = append(out, '\\', 'f')
			case '\n':
				out = append(out, '\\', 'n')
			case '\r':
				out = append(out, '\\', 'r')
			case '\t':
				out = append(out, '\\', 't')
			default:
				out = append(out, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			out = append(out, s[start:i]...)
			out = append(out, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			out = append(out, s[start:i]...)
			out = append(out, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}

// Tables returns the distinct tables p touches, sorted.
func (p Payload) Tables() []string {
	// Sorting first and dropping neighbours that repeat needs no map.
	tables := make([]string, 0, len(p.Activities))
	for _, a := range p.Activities {
		tables = append(tables, a.Table)
	}
	slices.Sort(tables)
	return slices.Compact(tables)
}

var jsonNull = json.RawMessage("null")

// renderValue renders one typed value as JSON. Values Parse produces always
// match their column type; a Payload built by hand with a mismatched or
// non-finite value gets the closest JSON rendering, or null for NaN and ±Inf,
// which JSON cannot express.
func renderValue(c Column) json.RawMessage {
	switch v := c.Value.(type) {
	case nil:
		return jsonNull
	case int64:
		return strconv.AppendInt(nil, v, 10)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return jsonNull
		}
	case bool:
		if v {
			return json.RawMessage("true")
		}
		return json.RawMessage("false")
	case []byte:
		return marshalString(base64.StdEncoding.EncodeToString(v))
	case string:
		if c.Type.Base == TypeJSON && json.Valid([]byte(v)) {
			return json.RawMessage(v)
		}
		return marshalString(v)
	}
	raw, err := json.Marshal(c.Value)
	if err != nil {
		return jsonNull
	}
	return raw
}

func marshalString(s string) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// PayloadHash is the SHA-256, in hex, of a payload's canonical form: the
// payload_hash metadata (MetaPayloadHash) and ledger column, which tell a
// redelivery of a payload from other content under its id.
func PayloadHash(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}
