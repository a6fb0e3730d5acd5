package messages

import (
	"errors"
	"testing"
)

func TestParseColumnTypeMapping(t *testing.T) {
	tests := []struct {
		in   string
		want ColumnType
	}{
		{"TEXT", ColumnType{Base: TypeString}},
		{"text", ColumnType{Base: TypeString}},
		{"LONGTEXT", ColumnType{Base: TypeString}},
		{"STRING", ColumnType{Base: TypeString}},
		{"VARCHAR(255)", ColumnType{Base: TypeString, MaxLength: 255}},
		{"varchar ( 10 )", ColumnType{Base: TypeString, MaxLength: 10}},
		{"VARCHAR", ColumnType{Base: TypeString}},
		{"CHAR(2)", ColumnType{Base: TypeString, MaxLength: 2}},
		{"STRING(7)", ColumnType{Base: TypeString, MaxLength: 7}},
		{"INTEGER", ColumnType{Base: TypeInt64}},
		{"INT", ColumnType{Base: TypeInt64}},
		{"BIGINT", ColumnType{Base: TypeInt64}},
		{"SMALLINT", ColumnType{Base: TypeInt64}},
		{"TINYINT", ColumnType{Base: TypeInt64}},
		{"INT64", ColumnType{Base: TypeInt64}},
		{"  Integer  ", ColumnType{Base: TypeInt64}},
		{"FLOAT", ColumnType{Base: TypeFloat64}},
		{"DOUBLE", ColumnType{Base: TypeFloat64}},
		{"REAL", ColumnType{Base: TypeFloat64}},
		{"FLOAT64", ColumnType{Base: TypeFloat64}},
		{"DECIMAL", ColumnType{Base: TypeNumeric}},
		{"NUMERIC", ColumnType{Base: TypeNumeric}},
		{"DECIMAL(10,2)", ColumnType{Base: TypeNumeric, Precision: 10, Scale: 2}},
		{"numeric( 10 , 2 )", ColumnType{Base: TypeNumeric, Precision: 10, Scale: 2}},
		{"DECIMAL(10)", ColumnType{Base: TypeNumeric, Precision: 10}},
		{"DECIMAL(29,9)", ColumnType{Base: TypeNumeric, Precision: 29, Scale: 9}},
		{"DECIMAL(30,2)", ColumnType{Base: TypeBigNumeric, Precision: 30, Scale: 2}},
		{"NUMERIC(20,10)", ColumnType{Base: TypeBigNumeric, Precision: 20, Scale: 10}},
		{"DECIMAL(76,38)", ColumnType{Base: TypeBigNumeric, Precision: 76, Scale: 38}},
		{"DECIMAL(1,1)", ColumnType{Base: TypeNumeric, Precision: 1, Scale: 1}},
		{"BIGNUMERIC", ColumnType{Base: TypeBigNumeric}},
		{"BIGNUMERIC(10,2)", ColumnType{Base: TypeBigNumeric, Precision: 10, Scale: 2}},
		{"BIGDECIMAL(40,2)", ColumnType{Base: TypeBigNumeric, Precision: 40, Scale: 2}},
		{"BOOLEAN", ColumnType{Base: TypeBool}},
		{"BOOL", ColumnType{Base: TypeBool}},
		{"DATE", ColumnType{Base: TypeDate}},
		{"DATETIME", ColumnType{Base: TypeDatetime}},
		{"TIMESTAMP", ColumnType{Base: TypeTimestamp}},
		{"TIME", ColumnType{Base: TypeTime}},
		{"JSON", ColumnType{Base: TypeJSON}},
		{"BLOB", ColumnType{Base: TypeBytes}},
		{"BYTES", ColumnType{Base: TypeBytes}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseColumnType(tt.in)
			if err != nil {
				t.Fatalf("ParseColumnType(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseColumnType(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseColumnTypeRejects(t *testing.T) {
	for _, in := range []string{
		"", "   ", "FOO", "VARCHAR2", "INT(11)", "TEXT(5)", "VARCHAR(0)", "VARCHAR(a)", "VARCHAR(1,2)",
		"VARCHAR(-1)", "VARCHAR(99999999999999999999)", "DECIMAL(0)", "DECIMAL(0,0)", "DECIMAL(77,0)",
		"DECIMAL(5,6)", "DECIMAL(76,39)", "DECIMAL(60,10)", "DECIMAL(1,2,3)", "DECIMAL()", "DECIMAL(,2)",
		"DECIMAL(10,2", "DECIMAL 10,2", "DATE(1)", "BOOL()", "INT64 INT64", "1INT", "(INT)", "JSON;",
		"TIMESTAMP WITH TIME ZONE", "NUMERIC(10, 2) x",
	} {
		t.Run(in, func(t *testing.T) {
			got, err := ParseColumnType(in)
			if err == nil {
				t.Fatalf("ParseColumnType(%q) = %+v, want an error", in, got)
			}
			var cte *ColumnTypeError
			if !errors.As(err, &cte) || cte.Input != in || cte.Reason == "" {
				t.Fatalf("ParseColumnType(%q) error = %#v, want a *ColumnTypeError with a reason", in, err)
			}
		})
	}
}

func TestColumnTypeString(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"TEXT", "STRING"},
		{"VARCHAR(10)", "STRING"},
		{"INTEGER", "INT64"},
		{"DOUBLE", "FLOAT64"},
		{"DECIMAL", "NUMERIC"},
		{"DECIMAL(10,2)", "NUMERIC(10,2)"},
		{"DECIMAL(10)", "NUMERIC(10,0)"},
		{"DECIMAL(40,2)", "BIGNUMERIC(40,2)"},
		{"BIGNUMERIC", "BIGNUMERIC"},
		{"BOOLEAN", "BOOL"},
		{"BLOB", "BYTES"},
		{"datetime", "DATETIME"},
	}
	for _, tt := range tests {
		ct, err := ParseColumnType(tt.in)
		if err != nil {
			t.Fatalf("ParseColumnType(%q): %v", tt.in, err)
		}
		if got := ct.String(); got != tt.want {
			t.Errorf("ParseColumnType(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		// The DDL form names the same BigQuery type again (a length bound is
		// the gate's, not BigQuery's, so it is not expected to survive).
		again, err := ParseColumnType(ct.String())
		if err != nil || again.Base != ct.Base || again.Precision != ct.Precision || again.Scale != ct.Scale {
			t.Errorf("ParseColumnType(%q) = %+v, %v; want %+v without MaxLength", ct.String(), again, err, ct)
		}
	}
}

func TestWireNameRoundTrips(t *testing.T) {
	for _, in := range []string{"VARCHAR(10)", "TEXT", "DECIMAL(10)", "DECIMAL(40,2)", "BIGNUMERIC(10,2)", "NUMERIC", "BLOB"} {
		ct, err := ParseColumnType(in)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseColumnType(ct.wireName())
		if err != nil || again != ct {
			t.Errorf("ParseColumnType(%q) = %+v, %v; want %+v (from %q)", ct.wireName(), again, err, ct, in)
		}
	}
}

func TestColumnTypeCompatible(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"INTEGER", "BIGINT", true},
		{"VARCHAR(10)", "TEXT", true},
		{"DECIMAL(10,2)", "NUMERIC(12,4)", true},
		{"DECIMAL(10,2)", "DECIMAL(40,2)", false}, // NUMERIC versus BIGNUMERIC
		{"INTEGER", "FLOAT", false},
		{"DATE", "DATETIME", false},
		{"TEXT", "JSON", false},
	}
	for _, tt := range tests {
		a, _ := ParseColumnType(tt.a)
		b, _ := ParseColumnType(tt.b)
		if got := a.Compatible(b); got != tt.want {
			t.Errorf("%s.Compatible(%s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := b.Compatible(a); got != tt.want {
			t.Errorf("%s.Compatible(%s) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}
