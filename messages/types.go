package messages

import (
	"strconv"
	"strings"
)

// BaseType is a BigQuery column type without parameters.
type BaseType string

const (
	TypeString     BaseType = "STRING"
	TypeInt64      BaseType = "INT64"
	TypeFloat64    BaseType = "FLOAT64"
	TypeNumeric    BaseType = "NUMERIC"
	TypeBigNumeric BaseType = "BIGNUMERIC"
	TypeBool       BaseType = "BOOL"
	TypeDate       BaseType = "DATE"
	TypeDatetime   BaseType = "DATETIME"
	TypeTimestamp  BaseType = "TIMESTAMP"
	TypeTime       BaseType = "TIME"
	TypeJSON       BaseType = "JSON"
	TypeBytes      BaseType = "BYTES"
)

// ColumnType is the BigQuery type a payload's col_type maps to.
type ColumnType struct {
	Base BaseType
	// Precision and Scale are set for NUMERIC and BIGNUMERIC declared with
	// (p,s); both are zero for a bare DECIMAL/NUMERIC.
	Precision, Scale int
	// MaxLength is n for VARCHAR(n) and CHAR(n), zero when unbounded. BigQuery
	// gets a plain STRING; the gate enforces the length.
	MaxLength int
}

// Precision limits. BigQuery's NUMERIC holds 29 integer and 9 fraction
// digits, BIGNUMERIC 38 and 38; a declared (p,s) can only narrow them.
const (
	numericMaxScale       = 9
	numericMaxPrecision   = 29 // as the brief's DECIMAL(p,s) mapping decides NUMERIC versus BIGNUMERIC
	numericIntDigits      = 29
	bigNumericMaxScale    = 38
	bigNumericIntDigits   = 38
	bigNumericMaxDigits   = 76
	maxStringLengthDigits = 18 // keeps VARCHAR(n) parsing clear of int overflow
)

// ColumnTypeError says why a col_type was not understood.
type ColumnTypeError struct {
	Input  string
	Reason string
}

func (e *ColumnTypeError) Error() string {
	return "column type " + quote(e.Input) + ": " + e.Reason
}

// typeNames maps every accepted spelling (upper case) to its base type. The
// aliases are the ones the replaced service's MySQL-minded backends send.
var typeNames = map[string]BaseType{
	"STRING": TypeString, "TEXT": TypeString, "LONGTEXT": TypeString,
	"VARCHAR": TypeString, "CHAR": TypeString,
	"INT64": TypeInt64, "INTEGER": TypeInt64, "INT": TypeInt64,
	"BIGINT": TypeInt64, "SMALLINT": TypeInt64, "TINYINT": TypeInt64,
	"FLOAT64": TypeFloat64, "FLOAT": TypeFloat64, "DOUBLE": TypeFloat64, "REAL": TypeFloat64,
	"NUMERIC": TypeNumeric, "DECIMAL": TypeNumeric,
	"BIGNUMERIC": TypeBigNumeric, "BIGDECIMAL": TypeBigNumeric,
	"BOOL": TypeBool, "BOOLEAN": TypeBool,
	"DATE": TypeDate, "DATETIME": TypeDatetime, "TIMESTAMP": TypeTimestamp, "TIME": TypeTime,
	"JSON":  TypeJSON,
	"BYTES": TypeBytes, "BLOB": TypeBytes,
}

// ParseColumnType maps a payload's col_type to its BigQuery type. Names are
// case-insensitive and blanks are allowed around the name and inside the
// parentheses ("decimal( 10 , 2 )").
//
// Parameters: VARCHAR(n), CHAR(n) and STRING(n) bound the length in
// characters (bare, they are unbounded). DECIMAL and NUMERIC take (p,s) or
// (p) meaning (p,0), with 1 <= p <= 76, s <= p, s <= 38 and at most 38
// integer digits (p-s), which BIGNUMERIC needs; they become NUMERIC(p,s), or
// BIGNUMERIC(p,s) when p > 29 or s > 9. BIGNUMERIC (and its alias
// BIGDECIMAL) stays BIGNUMERIC. Every other type takes no parameters.
func ParseColumnType(s string) (ColumnType, error) {
	name, params, hasParams, reason := splitTypeParams(s)
	if reason != "" {
		return ColumnType{}, &ColumnTypeError{Input: s, Reason: reason}
	}
	base, ok := typeNames[name]
	if !ok {
		return ColumnType{}, &ColumnTypeError{Input: s, Reason: "unknown type; known: " + knownTypeNames}
	}
	t := ColumnType{Base: base}
	switch base {
	case TypeString:
		if name != "VARCHAR" && name != "CHAR" && name != "STRING" && hasParams {
			return ColumnType{}, &ColumnTypeError{Input: s, Reason: name + " takes no parameters"}
		}
		if !hasParams {
			return t, nil
		}
		if len(params) != 1 {
			return ColumnType{}, &ColumnTypeError{Input: s, Reason: name + " takes one length parameter"}
		}
		if params[0] < 1 {
			return ColumnType{}, &ColumnTypeError{Input: s, Reason: "length must be at least 1"}
		}
		t.MaxLength = params[0]
		return t, nil
	case TypeNumeric, TypeBigNumeric:
		if !hasParams {
			return t, nil
		}
		p, sc := params[0], 0
		switch len(params) {
		case 1:
		case 2:
			sc = params[1]
		default:
			return ColumnType{}, &ColumnTypeError{Input: s, Reason: name + " takes (precision) or (precision, scale)"}
		}
		switch {
		case p < 1:
			return ColumnType{}, &ColumnTypeError{Input: s, Reason: "precision must be at least 1"}
		case p > bigNumericMaxDigits:
			return ColumnType{}, &ColumnTypeError{Input: s, Reason: "precision must be at most 76"}
		case sc > p:
			return ColumnType{}, &ColumnTypeError{Input: s, Reason: "scale must not exceed precision"}
		case sc > bigNumericMaxScale:
			return ColumnType{}, &ColumnTypeError{Input: s, Reason: "scale must be at most 38"}
		case p-sc > bigNumericIntDigits:
			return ColumnType{}, &ColumnTypeError{Input: s, Reason: "at most 38 digits before the decimal point (precision - scale)"}
		}
		if base == TypeNumeric && (p > numericMaxPrecision || sc > numericMaxScale) {
			t.Base = TypeBigNumeric
		}
		t.Precision, t.Scale = p, sc
		return t, nil
	default:
		if hasParams {
			return ColumnType{}, &ColumnTypeError{Input: s, Reason: name + " takes no parameters"}
		}
		return t, nil
	}
}

const knownTypeNames = "STRING, TEXT, LONGTEXT, VARCHAR(n), CHAR(n), INT64, INTEGER, INT, BIGINT, SMALLINT, TINYINT, " +
	"FLOAT64, FLOAT, DOUBLE, REAL, NUMERIC(p,s), DECIMAL(p,s), BIGNUMERIC(p,s), BOOL, BOOLEAN, " +
	"DATE, DATETIME, TIMESTAMP, TIME, JSON, BYTES, BLOB"

// splitTypeParams splits "name ( a , b )" into the upper-cased name and its
// unsigned integer parameters. reason is non-empty when s is malformed.
func splitTypeParams(s string) (name string, params []int, hasParams bool, reason string) {
	s = trimBlanks(s)
	i := 0
	for i < len(s) && (isASCIILetter(s[i]) || (i > 0 && isASCIIDigit(s[i]))) {
		i++
	}
	if i == 0 {
		return "", nil, false, "must start with a type name; known: " + knownTypeNames
	}
	name = strings.ToUpper(s[:i])
	rest := trimBlanks(s[i:])
	if rest == "" {
		return name, nil, false, ""
	}
	if rest[0] != '(' || rest[len(rest)-1] != ')' {
		return "", nil, false, "expected NAME or NAME(parameters)"
	}
	inner := rest[1 : len(rest)-1]
	for _, field := range strings.Split(inner, ",") {
		field = trimBlanks(field)
		if field == "" || len(field) > maxStringLengthDigits {
			return "", nil, false, "parameters must be unsigned integers"
		}
		n := 0
		for j := 0; j < len(field); j++ {
			if !isASCIIDigit(field[j]) {
				return "", nil, false, "parameters must be unsigned integers"
			}
			n = n*10 + int(field[j]-'0')
		}
		params = append(params, n)
	}
	return name, params, true, ""
}

func trimBlanks(s string) string { return strings.Trim(s, " \t\r\n") }

func isASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isASCIIDigit(c byte) bool  { return c >= '0' && c <= '9' }

// String renders t in BigQuery DDL: "STRING", "INT64", "NUMERIC",
// "NUMERIC(10,2)", "BIGNUMERIC(40,2)". A length bound is not rendered:
// BigQuery gets a plain STRING and the gate enforces the length.
func (t ColumnType) String() string {
	switch t.Base {
	case TypeNumeric, TypeBigNumeric:
		if t.Precision > 0 {
			return string(t.Base) + "(" + strconv.Itoa(t.Precision) + "," + strconv.Itoa(t.Scale) + ")"
		}
	}
	return string(t.Base)
}

// wireName renders t as a col_type that ParseColumnType maps back to t
// exactly, which String does not for a bounded STRING.
func (t ColumnType) wireName() string {
	if t.Base == TypeString && t.MaxLength > 0 {
		return "STRING(" + strconv.Itoa(t.MaxLength) + ")"
	}
	return t.String()
}

// Compatible reports whether a column declared as t can hold values
// declared as o: the same base type. Precision, scale and length are the
// gate's business per payload, not the table's.
func (t ColumnType) Compatible(o ColumnType) bool { return t.Base == o.Base }

// limits returns the integer and fraction digits a NUMERIC or BIGNUMERIC
// value of type t may have.
func (t ColumnType) decimalLimits() (intDigits, fracDigits int) {
	if t.Precision > 0 {
		return t.Precision - t.Scale, t.Scale
	}
	if t.Base == TypeBigNumeric {
		return bigNumericIntDigits, bigNumericMaxScale
	}
	return numericIntDigits, numericMaxScale
}
