package warehouse_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

func TestCheckValue(t *testing.T) {
	for _, tc := range []struct {
		base messages.BaseType
		v    any
		want string
	}{
		{messages.TypeInt64, int64(1), ""},
		{messages.TypeInt64, 1.0, "a INT64 value cannot be float64"},
		{messages.TypeNumeric, "1.5", ""},
		{messages.TypeNumeric, 1.5, "a NUMERIC value cannot be float64"},
		{messages.TypeBool, true, ""},
		{messages.TypeBytes, []byte(nil), ""},
		{messages.TypeBytes, "AA==", "a BYTES value cannot be string"},
		{messages.TypeTimestamp, "2020-01-01T00:00:00Z", ""},
		{"GEOGRAPHY", "POINT(1 1)", `unknown column type "GEOGRAPHY"`},
	} {
		err := warehouse.CheckValue(messages.ColumnType{Base: tc.base}, tc.v)
		if got := errText(err); got != tc.want {
			t.Errorf("CheckValue(%s, %#v) = %q, want %q", tc.base, tc.v, got, tc.want)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestNormaliseValue(t *testing.T) {
	bytesType := messages.ColumnType{Base: messages.TypeBytes}
	boolType := messages.ColumnType{Base: messages.TypeBool}
	fromInt := func(t messages.ColumnType, v any) (any, bool) {
		n, ok := v.(int64)
		return n != 0, ok && t.Base == messages.TypeBool
	}

	if v, err := warehouse.NormaliseValue(boolType, nil, fromInt); v != nil || err != nil {
		t.Errorf("NULL normalised to %#v, %v", v, err)
	}
	if v, err := warehouse.NormaliseValue(boolType, true, nil); v != true || err != nil {
		t.Errorf("a bool normalised to %#v, %v", v, err)
	}
	if v, err := warehouse.NormaliseValue(boolType, int64(1), fromInt); v != true || err != nil {
		t.Errorf("a converted 1 normalised to %#v, %v", v, err)
	}
	if v, err := warehouse.NormaliseValue(bytesType, []byte(nil), nil); err != nil || v == nil || !bytes.Equal(v.([]byte), []byte{}) || v.([]byte) == nil {
		t.Errorf("empty BYTES normalised to %#v, %v; want a non-nil empty slice", v, err)
	}
	if _, err := warehouse.NormaliseValue(boolType, "yes", fromInt); errText(err) != "BOOL column holds a string" {
		t.Errorf("an unconvertible value: %v", err)
	}
}

func TestNormaliseRow(t *testing.T) {
	columns := []warehouse.ColumnSchema{{Name: "a", Type: intType}, {Name: "s", Type: stringType}}
	normalise := func(t messages.ColumnType, v any) (any, error) { return warehouse.NormaliseValue(t, v, nil) }

	row, err := warehouse.NormaliseRow(columns, []any{int64(1), nil}, normalise)
	if err != nil || len(row) != 2 || row["a"] != int64(1) || row["s"] != nil {
		t.Errorf("row %v, %v", row, err)
	}
	if _, err := warehouse.NormaliseRow(columns, []any{int64(1)}, normalise); errText(err) != "got 1 columns, want 2" {
		t.Errorf("short row: %v", err)
	}
	broken := errors.New("broken")
	_, err = warehouse.NormaliseRow(columns, []any{int64(1), "x"}, func(t messages.ColumnType, v any) (any, error) {
		if t.Base == messages.TypeString {
			return nil, broken
		}
		return v, nil
	})
	if !errors.Is(err, broken) || err.Error() != `column "s": broken` {
		t.Errorf("failed column: %v", err)
	}
}
