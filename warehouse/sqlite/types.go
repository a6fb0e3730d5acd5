package sqlite

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gatekeeper/gatekeeper/messages"
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
// Go type that does not belong to the column's type: a float64 slipping into
// a NUMERIC column would silently lose exactness.
func bindValue(c messages.Column) (any, error) {
	if c.Value == nil {
		return nil, nil
	}
	mismatch := func() error {
		return fmt.Errorf("a %s value cannot be %T", c.Type.Base, c.Value)
	}
	switch c.Type.Base {
	case messages.TypeInt64:
		if v, ok := c.Value.(int64); ok {
			return v, nil
		}
	case messages.TypeFloat64:
		if v, ok := c.Value.(float64); ok {
			return v, nil
		}
	case messages.TypeBool:
		if v, ok := c.Value.(bool); ok {
			if v {
				return int64(1), nil
			}
			return int64(0), nil
		}
	case messages.TypeBytes:
		if v, ok := c.Value.([]byte); ok {
			if v == nil {
				// The driver binds a nil slice as NULL; an empty BYTES value
				// is not NULL.
				return []byte{}, nil
			}
			return v, nil
		}
	default:
		if v, ok := c.Value.(string); ok {
			return v, nil
		}
	}
	return nil, mismatch()
}

// normaliseValue turns what the driver returned for a column of type t into
// the Go type messages.Column.Value uses for it.
func normaliseValue(t messages.ColumnType, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	unexpected := fmt.Errorf("%s column holds a %T", t.Base, v)
	switch t.Base {
	case messages.TypeInt64:
		if n, ok := v.(int64); ok {
			return n, nil
		}
	case messages.TypeFloat64:
		switch f := v.(type) {
		case float64:
			return f, nil
		case int64:
			return float64(f), nil
		}
	case messages.TypeBool:
		if n, ok := v.(int64); ok {
			return n != 0, nil
		}
	case messages.TypeBytes:
		switch b := v.(type) {
		case []byte:
			if b == nil {
				return []byte{}, nil
			}
			return b, nil
		case string:
			return []byte(b), nil
		}
	default:
		switch s := v.(type) {
		case string:
			return s, nil
		case []byte:
			return string(s), nil
		}
	}
	return nil, unexpected
}

// quoteIdent quotes a table, column or index name. Names are valid BigQuery
// identifiers by the time they get here; escaping the quote character anyway
// keeps that assumption from being load-bearing.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
