package sqlite

import (
	"testing"

	"github.com/gatekeeper/gatekeeper/messages"
)

func TestDeclaredType_reads_back_exactly(t *testing.T) {
	types := []messages.ColumnType{
		{Base: messages.TypeString},
		{Base: messages.TypeInt64},
		{Base: messages.TypeFloat64},
		{Base: messages.TypeNumeric},
		{Base: messages.TypeNumeric, Precision: 10, Scale: 2},
		{Base: messages.TypeNumeric, Precision: 5, Scale: 0},
		{Base: messages.TypeBigNumeric},
		{Base: messages.TypeBigNumeric, Precision: 76, Scale: 38},
		{Base: messages.TypeBool},
		{Base: messages.TypeDate},
		{Base: messages.TypeDatetime},
		{Base: messages.TypeTimestamp},
		{Base: messages.TypeTime},
		{Base: messages.TypeJSON},
		{Base: messages.TypeBytes},
	}
	for _, want := range types {
		decl, err := declaredType(want)
		if err != nil {
			t.Fatalf("declaredType(%+v): %v", want, err)
		}
		got, err := parseDeclaredType(decl)
		if err != nil || got != want {
			t.Errorf("%+v declared as %q reads back as %+v, %v", want, decl, got, err)
		}
	}

	bounded, _ := declaredType(messages.ColumnType{Base: messages.TypeString, MaxLength: 10})
	if got, _ := parseDeclaredType(bounded); got != (messages.ColumnType{Base: messages.TypeString}) {
		t.Errorf("VARCHAR(10) reads back as %+v, want a plain STRING", got)
	}
	if _, err := declaredType(messages.ColumnType{Base: "GEOGRAPHY"}); err == nil {
		t.Error("an unknown type was declared")
	}
}

func TestParseDeclaredType_refuses_declarations_it_did_not_write(t *testing.T) {
	for _, decl := range []string{
		"", "TEXT", "INTEGER", "STRING", "NUMERIC", "NUMERIC(10,2)", "JSON", "INT64 TEXT",
		"STRING TEXT(10,2)", "NUMERIC TEXT(10)", "NUMERIC TEXT(x,2)", "NUMERIC TEXT(10,2", "BYTES TEXT",
	} {
		if got, err := parseDeclaredType(decl); err == nil {
			t.Errorf("parseDeclaredType(%q) = %+v, want an error", decl, got)
		}
	}
}
