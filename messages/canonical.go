package messages

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"sort"
	"strconv"
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
func (p Payload) Canonical() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p.Wire()); err != nil {
		// Unreachable: every value renderValue produces is valid JSON.
		return nil
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Tables returns the distinct tables p touches, sorted.
func (p Payload) Tables() []string {
	seen := make(map[string]struct{}, len(p.Activities))
	tables := make([]string, 0, len(p.Activities))
	for _, a := range p.Activities {
		if _, ok := seen[a.Table]; ok {
			continue
		}
		seen[a.Table] = struct{}{}
		tables = append(tables, a.Table)
	}
	sort.Strings(tables)
	return tables
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
