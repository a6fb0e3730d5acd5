package bigquery

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/civil"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// Every messages.BaseType is spelled as its GoogleSQL type name, so the
// base type is used as is in CAST and in table schemas. Schemas are written
// with the GoogleSQL names (INT64, FLOAT64, BOOL) rather than the legacy
// ones BigQuery reports back (INTEGER, FLOAT, BOOLEAN): both are accepted,
// and the emulator reads a legacy FLOAT as a 32-bit float.

// fieldSchema is the table column a payload column of type t creates.
func fieldSchema(name string, t messages.ColumnType) *bigquery.FieldSchema {
	f := &bigquery.FieldSchema{Name: name, Type: bigquery.FieldType(t.Base)}
	if t.Base == messages.TypeNumeric || t.Base == messages.TypeBigNumeric {
		f.Precision, f.Scale = int64(t.Precision), int64(t.Scale)
	}
	return f
}

// columnType reads a table column back as a payload type. ok is false for
// columns gatekeeper cannot write: repeated fields, records, and types the
// gate does not know (GEOGRAPHY, INTERVAL, RANGE).
func columnType(f *bigquery.FieldSchema) (t messages.ColumnType, ok bool) {
	if f.Repeated {
		return messages.ColumnType{}, false
	}
	var base messages.BaseType
	switch strings.ToUpper(string(f.Type)) {
	case "STRING":
		base = messages.TypeString
	case "INTEGER", "INT64":
		base = messages.TypeInt64
	case "FLOAT", "FLOAT64":
		base = messages.TypeFloat64
	case "NUMERIC", "DECIMAL":
		base = messages.TypeNumeric
	case "BIGNUMERIC", "BIGDECIMAL":
		base = messages.TypeBigNumeric
	case "BOOLEAN", "BOOL":
		base = messages.TypeBool
	case "DATE":
		base = messages.TypeDate
	case "DATETIME":
		base = messages.TypeDatetime
	case "TIMESTAMP":
		base = messages.TypeTimestamp
	case "TIME":
		base = messages.TypeTime
	case "JSON":
		base = messages.TypeJSON
	case "BYTES":
		base = messages.TypeBytes
	default:
		return messages.ColumnType{}, false
	}
	t = messages.ColumnType{Base: base}
	if base == messages.TypeNumeric || base == messages.TypeBigNumeric {
		t.Precision, t.Scale = int(f.Precision), int(f.Scale)
	}
	return t, true
}

// boundValue is a non-NULL value as it travels: a query parameter of an
// explicit type, and the SQL expression that turns the parameter into a
// value of the column's type.
//
// The expression wraps the parameter in a CAST to the column's type. With a
// parameter of that very type the CAST is a no-op in BigQuery; it is there
// because the emulator ignores parameter types and hands every parameter to
// the query as a STRING. BYTES and JSON travel as STRING parameters
// (base64, JSON text) and are converted with FROM_BASE64 and PARSE_JSON,
// which is exact in both.
type boundValue struct {
	param bigquery.QueryParameterValue
	// text is the parameter's value as sent, for size accounting.
	text string
	// expr renders the SQL expression for the parameter named name.
	expr func(b *strings.Builder, name string)
}

func castExpr(typ string) func(b *strings.Builder, name string) {
	return func(b *strings.Builder, name string) {
		b.WriteString("CAST(@")
		b.WriteString(name)
		b.WriteString(" AS ")
		b.WriteString(typ)
		b.WriteByte(')')
	}
}

func callExpr(fn string) func(b *strings.Builder, name string) {
	return func(b *strings.Builder, name string) {
		b.WriteString(fn)
		b.WriteString("(@")
		b.WriteString(name)
		b.WriteByte(')')
	}
}

func plainExpr(b *strings.Builder, name string) {
	b.WriteByte('@')
	b.WriteString(name)
}

// bindValue prepares a non-nil value of a column of type t, refusing a Go
// type that does not belong to t: a float64 slipping into a NUMERIC column
// would silently lose exactness.
func bindValue(t messages.ColumnType, v any) (boundValue, error) {
	typed := func(kind, text string, expr func(*strings.Builder, string)) boundValue {
		return boundValue{
			param: bigquery.QueryParameterValue{Type: bigquery.StandardSQLDataType{TypeKind: kind}, Value: text},
			text:  text,
			expr:  expr,
		}
	}
	mismatch := fmt.Errorf("a %s value cannot be %T", t.Base, v)
	switch t.Base {
	case messages.TypeInt64:
		if n, ok := v.(int64); ok {
			return typed("INT64", strconv.FormatInt(n, 10), castExpr("INT64")), nil
		}
	case messages.TypeFloat64:
		if f, ok := v.(float64); ok {
			return typed("FLOAT64", strconv.FormatFloat(f, 'g', -1, 64), castExpr("FLOAT64")), nil
		}
	case messages.TypeBool:
		if x, ok := v.(bool); ok {
			return typed("BOOL", strconv.FormatBool(x), castExpr("BOOL")), nil
		}
	case messages.TypeBytes:
		if x, ok := v.([]byte); ok {
			return typed("STRING", base64.StdEncoding.EncodeToString(x), callExpr("FROM_BASE64")), nil
		}
	case messages.TypeJSON:
		if s, ok := v.(string); ok {
			return typed("STRING", s, callExpr("PARSE_JSON")), nil
		}
	case messages.TypeString:
		if s, ok := v.(string); ok {
			return typed("STRING", s, plainExpr), nil
		}
	case messages.TypeTimestamp:
		if s, ok := v.(string); ok {
			ts, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return boundValue{}, fmt.Errorf("TIMESTAMP value %q is not in canonical form: %w", s, err)
			}
			// The client library's own TIMESTAMP parameter format.
			return typed("TIMESTAMP", ts.UTC().Format("2006-01-02 15:04:05.999999-07:00"), castExpr("TIMESTAMP")), nil
		}
	case messages.TypeNumeric, messages.TypeBigNumeric, messages.TypeDate, messages.TypeDatetime, messages.TypeTime:
		if s, ok := v.(string); ok {
			return typed(string(t.Base), s, castExpr(string(t.Base))), nil
		}
	default:
		return boundValue{}, fmt.Errorf("unknown column type %q", t.Base)
	}
	return boundValue{}, mismatch
}

// nullExpr is a NULL of the column's type. NULLs are written into the SQL
// rather than bound: the emulator cannot bind a NULL parameter, and a typed
// NULL literal carries no value anyway.
func nullExpr(t messages.ColumnType) string { return "CAST(NULL AS " + string(t.Base) + ")" }

// definitelyDiffers reports whether a stored value a and a predicate value
// b, both of a column of type col (nil meaning NULL), can be told unequal
// for sure without asking BigQuery. The planner may reorder an insert and a
// delete only when the inserted row cannot match the delete, so every
// doubt answers false.
//
// A NULL and a value differ (a delete's "= v" never matches NULL, and its
// "IS NULL" never matches a value); two NULLs do not.
func definitelyDiffers(col columnInfo, a, b any) bool {
	if a == nil || b == nil {
		return (a == nil) != (b == nil)
	}
	equal, sure := compareValues(col, a, b)
	return sure && !equal
}

// compareValues compares two non-nil values of a column. sure is false when
// BigQuery's equality could disagree with the comparison.
func compareValues(col columnInfo, a, b any) (equal, sure bool) {
	switch col.typ.Base {
	case messages.TypeInt64:
		x, ok1 := a.(int64)
		y, ok2 := b.(int64)
		return x == y, ok1 && ok2
	case messages.TypeFloat64:
		// Go's == matches SQL's: -0 equals 0, and NaN never reaches here.
		x, ok1 := a.(float64)
		y, ok2 := b.(float64)
		return x == y, ok1 && ok2
	case messages.TypeBool:
		x, ok1 := a.(bool)
		y, ok2 := b.(bool)
		return x == y, ok1 && ok2
	case messages.TypeBytes:
		x, ok1 := a.([]byte)
		y, ok2 := b.([]byte)
		return bytes.Equal(x, y), ok1 && ok2
	case messages.TypeString:
		x, ok1 := a.(string)
		y, ok2 := b.(string)
		// A collation (say und:ci) makes different strings equal.
		return x == y, ok1 && ok2 && !col.collated
	case messages.TypeDate, messages.TypeDatetime, messages.TypeTime, messages.TypeTimestamp:
		// The gate gives each of these one canonical spelling.
		x, ok1 := a.(string)
		y, ok2 := b.(string)
		return x == y, ok1 && ok2
	case messages.TypeNumeric, messages.TypeBigNumeric:
		x, ok1 := a.(string)
		y, ok2 := b.(string)
		if !ok1 || !ok2 {
			return false, false
		}
		rx, ok1 := new(big.Rat).SetString(x)
		ry, ok2 := new(big.Rat).SetString(y)
		if !ok1 || !ok2 {
			return false, false
		}
		// A column with a scale rounds what it stores; only values within
		// the scale are stored as given.
		if col.typ.Precision > 0 && (fractionDigits(x) > col.typ.Scale || fractionDigits(y) > col.typ.Scale) {
			return false, false
		}
		return rx.Cmp(ry) == 0, true
	case messages.TypeJSON:
		// BigQuery normalises JSON (number spelling, whitespace), so equal
		// texts are equal values but different texts may be too.
		x, ok1 := a.(string)
		y, ok2 := b.(string)
		if ok1 && ok2 && x == y {
			return true, true
		}
		return false, false
	}
	return false, false
}

func fractionDigits(decimal string) int {
	if i := strings.IndexByte(decimal, '.'); i >= 0 {
		return len(decimal) - i - 1
	}
	return 0
}

// normaliseValue turns what the client library read from a column of type
// t into the Go type messages.Column.Value uses for it.
func normaliseValue(t messages.ColumnType, v bigquery.Value) (any, error) {
	return warehouse.NormaliseValue(t, v, fromBigQuery)
}

// fromBigQuery converts the client library's values of the types it does
// not read as strings: decimals as *big.Rat, dates and times as civil and
// time values.
func fromBigQuery(t messages.ColumnType, v any) (any, bool) {
	switch t.Base {
	case messages.TypeNumeric, messages.TypeBigNumeric:
		if r, ok := v.(*big.Rat); ok {
			return canonicalDecimal(r), true
		}
	case messages.TypeDate:
		if d, ok := v.(civil.Date); ok {
			return d.String(), true
		}
	case messages.TypeDatetime:
		if dt, ok := v.(civil.DateTime); ok {
			return dt.Date.String() + " " + clockString(dt.Time), true
		}
	case messages.TypeTime:
		if tm, ok := v.(civil.Time); ok {
			return clockString(tm), true
		}
	case messages.TypeTimestamp:
		if ts, ok := v.(time.Time); ok {
			return ts.UTC().Format("2006-01-02T15:04:05.999999Z"), true
		}
	}
	return nil, false
}

// canonicalDecimal renders r as the gate does: no exponent, no trailing
// fraction zeros. BIGNUMERIC has at most 38 fraction digits, so rendering
// 38 and trimming is exact.
func canonicalDecimal(r *big.Rat) string {
	s := r.FloatString(38)
	s = strings.TrimRight(s, "0")
	s = strings.TrimSuffix(s, ".")
	if s == "-0" || s == "" {
		return "0"
	}
	return s
}

// clockString renders "HH:MM:SS[.ffffff]" without trailing fraction zeros,
// the gate's canonical TIME.
func clockString(t civil.Time) string {
	s := fmt.Sprintf("%02d:%02d:%02d", t.Hour, t.Minute, t.Second)
	if micros := t.Nanosecond / 1000; micros > 0 {
		s += strings.TrimRight(fmt.Sprintf(".%06d", micros), "0")
	}
	return s
}
