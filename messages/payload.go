package messages

import "encoding/json"

// Operation names an activity's kind on the wire.
type Operation string

const (
	OpInsert Operation = "insert"
	OpDelete Operation = "delete"
)

// WirePayload is the document backends POST, exactly as the replaced Flask
// service accepted it. It is also what travels on the accepted topic, in
// canonical form (see Payload.Canonical), so a poisoned message can be
// re-POSTed or replayed unchanged.
type WirePayload struct {
	Activities []WireActivity `json:"activities"`
	// OrderingKey orders the payload after every earlier payload of the
	// same key (see OrderingKey).
	OrderingKey string `json:"ordering_key,omitempty"`
}

// WireActivity is one insert or delete as it appears on the wire. An insert
// carries its columns at the top level; a delete carries them in
// ValueToDelete.
type WireActivity struct {
	Operation     Operation         `json:"operation"`
	Table         string            `json:"table"`
	ColNames      []string          `json:"col_names,omitempty"`
	ColTypes      []string          `json:"col_types,omitempty"`
	ColValues     []json.RawMessage `json:"col_values,omitempty"`
	ValueToDelete *WireRow          `json:"value_to_delete,omitempty"`
}

// WireRow is the column set of a delete.
type WireRow struct {
	ColNames  []string          `json:"col_names"`
	ColTypes  []string          `json:"col_types"`
	ColValues []json.RawMessage `json:"col_values"`
}

// Payload is a payload that passed the gate: every identifier is a valid
// BigQuery identifier, every type is known and every value fits its type.
// Warehouse adapters consume this form and never the wire form.
type Payload struct {
	Activities []Activity
	// OrderingKey is "" or the key that orders this payload after every
	// earlier accepted payload of the same key.
	OrderingKey string
}

// Activity is one validated insert or delete.
type Activity struct {
	Op    Operation
	Table string
	// Columns are in payload order. For an insert they are the row to insert;
	// for a delete they are the predicate: every column equals its value, and
	// a nil Value means IS NULL.
	Columns []Column
}

// Column is one named, typed value.
type Column struct {
	Name string
	Type ColumnType
	// Value is nil (SQL NULL) or, by Type.Base:
	//   INT64: int64; FLOAT64: float64; BOOL: bool; BYTES: []byte;
	//   NUMERIC, BIGNUMERIC: string, a canonical decimal such as "-12.5";
	//   STRING, DATE, DATETIME, TIMESTAMP, TIME: string in BigQuery's
	//   canonical literal format (TIMESTAMP in UTC, RFC 3339 with "T" and "Z");
	//   JSON: string holding compact JSON text.
	Value any
}
