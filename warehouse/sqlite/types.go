package sqlite

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// SQLite decides a column's affinity from words in its declared type, and
// affinity decides what happens to a value on the way in: a declared
// "NUMERIC" or "JSON" column has NUMERIC affinity and would store the text
// "0123" as the integer 123 and "12.50" as the float 12.5. So every column is
// declared as its BigQuery type followed by a storage word that forces the
// right affinity, with NUMERIC parameters at the end where SQLite's grammar
// allows them:
//
//	STRING TEXT, INT64, FLOAT64, NUMERIC TEXT, NUMERIC TEXT(10,2),
//	BIGNUMERIC TEXT(40,2), BOOL INTEGER, DATE TEXT, DATETIME TEXT,
//	TIMESTAMP TEXT, TIME TEXT, JSON TEXT, BYTES BLOB
//
// The first word reads back as the BigQuery base type, the parameters as
// precision and scale. None of the BigQuery names contains "INT" except
// INT64, nor "CHAR", "CLOB", "TEXT", "BLOB", "REAL", "FLOA" or "DOUB" except
// FLOAT64, so the storage word alone decides the affinity. A STRING's length
// bound is not kept: BigQuery gets a plain STRING and the gate enforces it.

// storageWord is the word after the BigQuery name in a declared type, or ""
// for types whose own name already gives the right affinity.
func storageWord(b messages.BaseType) (string, bool) {
	switch b {
	case messages.TypeInt64, messages.TypeFloat64:
		return "", true
	case messages.TypeBool:
		return "INTEGER", true
	case messages.TypeBytes:
		return "BLOB", true
	case messages.TypeString, messages.TypeNumeric, messages.TypeBigNumeric,
		messages.TypeDate, messages.TypeDatetime, messages.TypeTimestamp,
		messages.TypeTime, messages.TypeJSON:
		return "TEXT", true
	}
	return "", false
}

// declaredType renders t as the declared type of a SQLite column.
func declaredType(t messages.ColumnType) (string, error) {
	word, ok := storageWord(t.Base)
	if !ok {
		return "", fmt.Errorf("unknown column type %q", t.Base)
	}
	decl := string(t.Base)
	if word != "" {
		decl += " " + word
	}
	if (t.Base == messages.TypeNumeric || t.Base == messages.TypeBigNumeric) && t.Precision > 0 {
		decl += "(" + strconv.Itoa(t.Precision) + "," + strconv.Itoa(t.Scale) + ")"
	}
	return decl, nil
}

// parseDeclaredType reads back a type declaredType wrote. Any other
// declaration means the column was not created by this adapter.
func parseDeclaredType(decl string) (messages.ColumnType, error) {
	notOurs := fmt.Errorf("declared type %q was not written by gatekeeper", decl)
	s := strings.ToUpper(strings.TrimSpace(decl))
	var params string
	if open := strings.IndexByte(s, '('); open >= 0 {
		if !strings.HasSuffix(s, ")") {
			return messages.ColumnType{}, notOurs
		}
		params = s[open+1 : len(s)-1]
		s = strings.TrimSpace(s[:open])
	}
	name, word, _ := strings.Cut(s, " ")
	t := messages.ColumnType{Base: messages.BaseType(name)}
	want, ok := storageWord(t.Base)
	if !ok || word != want {
		return messages.ColumnType{}, notOurs
	}
	if params == "" {
		return t, nil
	}
	if t.Base != messages.TypeNumeric && t.Base != messages.TypeBigNumeric {
		return messages.ColumnType{}, notOurs
	}
	p, sc, ok := strings.Cut(params, ",")
	if !ok {
		return messages.ColumnType{}, notOurs
	}
	precision, err1 := strconv.Atoi(strings.TrimSpace(p))
	scale, err2 := strconv.Atoi(strings.TrimSpace(sc))
	if err1 != nil || err2 != nil || precision < 1 || scale < 0 {
		return messages.ColumnType{}, notOurs
	}
	t.Precision, t.Scale = precision, scale
	return t, nil
}

// bindValue converts a column's value to what is bound for it, refusing a
// Go type that does not belong to the column's type (warehouse.CheckValue).
func bindValue(c messages.Column) (any, error) {
	if c.Value == nil {
		return nil, nil
	}
	if err := warehouse.CheckValue(c.Type, c.Value); err != nil {
		return nil, err
	}
	switch v := c.Value.(type) {
	case bool:
		if v {
			return int64(1), nil
		}
		return int64(0), nil
	case []byte:
		if v == nil {
			// The driver binds a nil slice as NULL; an empty BYTES value
			// is not NULL.
			return []byte{}, nil
		}
	}
	return c.Value, nil
}

// normaliseValue turns what the driver returned for a column of type t into
// the Go type messages.Column.Value uses for it.
func normaliseValue(t messages.ColumnType, v any) (any, error) {
	return warehouse.NormaliseValue(t, v, fromSQLite)
}

// fromSQLite converts the driver's values that are not already of the Go
// type of their column: SQLite has no BOOL, stores an integral REAL as an
// integer, and hands back TEXT and BLOB values as either string or []byte.
func fromSQLite(t messages.ColumnType, v any) (any, bool) {
	switch t.Base {
	case messages.TypeInt64:
		// Only an int64 is an INT64.
	case messages.TypeFloat64:
		if n, ok := v.(int64); ok {
			return float64(n), true
		}
	case messages.TypeBool:
		if n, ok := v.(int64); ok {
			return n != 0, true
		}
	case messages.TypeBytes:
		if s, ok := v.(string); ok {
			return []byte(s), true
		}
	default:
		if b, ok := v.([]byte); ok {
			return string(b), true
		}
	}
	return nil, false
}

// quoteIdent quotes a table, column or index name. Names are valid BigQuery
// identifiers by the time they get here; escaping the quote character anyway
// keeps that assumption from being load-bearing.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
