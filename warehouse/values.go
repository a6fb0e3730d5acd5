package warehouse

import (
	"fmt"

	"github.com/gatekeeper/gatekeeper/messages"
)

// Values cross the port in the Go types messages.Column.Value documents,
// in both directions: payloads bring them, and Reader.Rows returns them.

// CheckValue refuses a value, not nil, whose Go type does not belong to
// column type t: a float64 slipping into a NUMERIC column would silently
// lose exactness.
func CheckValue(t messages.ColumnType, v any) error {
	if _, ok := asValue(t.Base, v); ok {
		return nil
	}
	switch t.Base {
	case messages.TypeString, messages.TypeInt64, messages.TypeFloat64, messages.TypeNumeric,
		messages.TypeBigNumeric, messages.TypeBool, messages.TypeDate, messages.TypeDatetime,
		messages.TypeTimestamp, messages.TypeTime, messages.TypeJSON, messages.TypeBytes:
		return fmt.Errorf("a %s value cannot be %T", t.Base, v)
	}
	return fmt.Errorf("unknown column type %q", t.Base)
}

// asValue returns v if it is of the Go type a value of base type b has. A
// nil []byte becomes an empty one: BYTES NULL is a nil Value, and an empty
// BYTES value is not NULL.
func asValue(b messages.BaseType, v any) (any, bool) {
	switch b {
	case messages.TypeInt64:
		n, ok := v.(int64)
		return n, ok
	case messages.TypeFloat64:
		f, ok := v.(float64)
		return f, ok
	case messages.TypeBool:
		x, ok := v.(bool)
		return x, ok
	case messages.TypeBytes:
		x, ok := v.([]byte)
		if ok && x == nil {
			x = []byte{}
		}
		return x, ok
	case messages.TypeString, messages.TypeNumeric, messages.TypeBigNumeric, messages.TypeDate,
		messages.TypeDatetime, messages.TypeTimestamp, messages.TypeTime, messages.TypeJSON:
		s, ok := v.(string)
		return s, ok
	}
	return nil, false
}

// NormaliseValue turns what a backend returned for a column of type t
// into the Go type messages.Column.Value uses for it. A value already of
// that type is kept; convert, when set, turns the backend's own
// representations (SQLite's integers for BOOL, BigQuery's civil dates) and
// reports whether it knew v.
func NormaliseValue(t messages.ColumnType, v any, convert func(t messages.ColumnType, v any) (any, bool)) (any, error) {
	if v == nil {
		return nil, nil
	}
	if n, ok := asValue(t.Base, v); ok {
		return n, nil
	}
	if convert != nil {
		if n, ok := convert(t, v); ok {
			return n, nil
		}
	}
	return nil, fmt.Errorf("%s column holds a %T", t.Base, v)
}

// NormaliseRow makes one row of Reader.Rows from the values a backend
// returned for columns, in their order.
func NormaliseRow[C Column, V any](columns []C, values []V, normalise func(messages.ColumnType, V) (any, error)) (map[string]any, error) {
	if len(values) != len(columns) {
		return nil, fmt.Errorf("got %d columns, want %d", len(values), len(columns))
	}
	row := make(map[string]any, len(columns))
	for i, c := range columns {
		s := c.Schema()
		v, err := normalise(s.Type, values[i])
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", s.Name, err)
		}
		row[s.Name] = v
	}
	return row, nil
}
