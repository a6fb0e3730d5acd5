package bigquery

import (
	"math/big"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/civil"

	"github.com/gatekeeper/gatekeeper/messages"
)

func ct(b messages.BaseType) messages.ColumnType { return messages.ColumnType{Base: b} }

func TestConfigDefaultsAndValidate(t *testing.T) {
	cfg := Config{ProjectID: "example.com:proj-1", DatasetID: "gatekeeper"}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if cfg.MaxScriptBytes != 900_000 || cfg.MaxParams != 10_000 || cfg.MaxTables != 100 || cfg.MetadataTTL != 5*time.Minute {
		t.Fatalf("defaults %+v", cfg)
	}

	bad := Config{ProjectID: "proj`; DROP", DatasetID: "my-dataset", EmulatorHost: "http://localhost:9050",
		MaxScriptBytes: 2 << 20, MaxParams: 20_000, MaxTables: 101, MaxRequestBytes: 11 << 20}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	for _, want := range []string{"ProjectID", "DatasetID", "EmulatorHost", "MaxScriptBytes", "MaxParams", "MaxTables", "MaxRequestBytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate does not report %s: %v", want, err)
		}
	}
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "ProjectID is required") || !strings.Contains(err.Error(), "DatasetID is required") {
		t.Errorf("empty config: %v", err)
	}
}

func TestColumnTypesRoundTripThroughTableSchemas(t *testing.T) {
	for _, typ := range []messages.ColumnType{
		ct(messages.TypeString), ct(messages.TypeInt64), ct(messages.TypeFloat64), ct(messages.TypeNumeric),
		{Base: messages.TypeNumeric, Precision: 10, Scale: 2}, ct(messages.TypeBigNumeric),
		{Base: messages.TypeBigNumeric, Precision: 40, Scale: 10}, ct(messages.TypeBool), ct(messages.TypeDate),
		ct(messages.TypeDatetime), ct(messages.TypeTimestamp), ct(messages.TypeTime), ct(messages.TypeJSON), ct(messages.TypeBytes),
	} {
		got, ok := columnType(fieldSchema("c", typ))
		if !ok || got != typ {
			t.Errorf("%v reads back as %v (%v)", typ, got, ok)
		}
	}
	// BigQuery reports the legacy names.
	for legacy, want := range map[bigquery.FieldType]messages.BaseType{"INTEGER": messages.TypeInt64, "FLOAT": messages.TypeFloat64, "BOOLEAN": messages.TypeBool} {
		if got, ok := columnType(&bigquery.FieldSchema{Type: legacy}); !ok || got.Base != want {
			t.Errorf("%s reads as %v", legacy, got)
		}
	}
	for _, f := range []*bigquery.FieldSchema{{Type: "GEOGRAPHY"}, {Type: "RECORD"}, {Type: "STRING", Repeated: true}} {
		if _, ok := columnType(f); ok {
			t.Errorf("%+v is writable", f)
		}
	}
}

func TestBindValueRefusesForeignGoTypes(t *testing.T) {
	if _, err := bindValue(ct(messages.TypeNumeric), 1.5); err == nil {
		t.Fatal("a float64 bound as NUMERIC")
	}
	if _, err := bindValue(ct(messages.TypeInt64), "1"); err == nil {
		t.Fatal("a string bound as INT64")
	}
	ts, err := bindValue(ct(messages.TypeTimestamp), "2018-03-27T11:58:28.988414Z")
	if err != nil || ts.text != "2018-03-27 11:58:28.988414+00:00" || ts.param.Type.TypeKind != "TIMESTAMP" {
		t.Fatalf("TIMESTAMP bound as %+v, %v", ts, err)
	}
	by, err := bindValue(ct(messages.TypeBytes), []byte{0, 1, 0xff})
	if err != nil || by.text != "AAH/" || by.param.Type.TypeKind != "STRING" {
		t.Fatalf("BYTES bound as %+v, %v", by, err)
	}
	var b strings.Builder
	by.expr(&b, "p7")
	if b.String() != "FROM_BASE64(@p7)" {
		t.Fatalf("BYTES expression %q", b.String())
	}
	f, _ := bindValue(ct(messages.TypeFloat64), 1e21)
	if f.text != "1e+21" {
		t.Fatalf("FLOAT64 text %q", f.text)
	}
}

func TestNormaliseValueGivesTheGatesCanonicalForms(t *testing.T) {
	rat := func(s string) *big.Rat { r, _ := new(big.Rat).SetString(s); return r }
	for _, tc := range []struct {
		typ  messages.BaseType
		in   bigquery.Value
		want any
	}{
		{messages.TypeNumeric, rat("-12.50"), "-12.5"},
		{messages.TypeNumeric, rat("0"), "0"},
		{messages.TypeNumeric, rat("100"), "100"},
		{messages.TypeBigNumeric, rat("123456789012345678901234567890.123456789"), "123456789012345678901234567890.123456789"},
		{messages.TypeBigNumeric, rat("0.00000000000000000000000000000000000001"), "0.00000000000000000000000000000000000001"},
		{messages.TypeDatetime, civil.DateTime{Date: civil.Date{Year: 2019, Month: 4, Day: 28}, Time: civil.Time{Hour: 10, Minute: 24, Second: 30, Nanosecond: 183414000}}, "2019-04-28 10:24:30.183414"},
		{messages.TypeTime, civil.Time{Hour: 10, Minute: 24, Second: 30, Nanosecond: 500000000}, "10:24:30.5"},
		{messages.TypeTime, civil.Time{Hour: 1, Minute: 2, Second: 3}, "01:02:03"},
		{messages.TypeDate, civil.Date{Year: 1, Month: 1, Day: 1}, "0001-01-01"},
		{messages.TypeTimestamp, time.Date(2018, 3, 27, 13, 58, 28, 988414000, time.FixedZone("", 7200)), "2018-03-27T11:58:28.988414Z"},
		{messages.TypeBytes, []byte(nil), []byte{}},
		{messages.TypeInt64, nil, nil},
	} {
		got, err := normaliseValue(ct(tc.typ), tc.in)
		if err != nil {
			t.Errorf("%s %v: %v", tc.typ, tc.in, err)
			continue
		}
		if gb, ok := got.([]byte); ok {
			if wb := tc.want.([]byte); string(gb) != string(wb) || gb == nil {
				t.Errorf("%s %v = %#v, want %#v", tc.typ, tc.in, got, tc.want)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%s %v = %#v, want %#v", tc.typ, tc.in, got, tc.want)
		}
	}
	if _, err := normaliseValue(ct(messages.TypeInt64), "1"); err == nil {
		t.Error("a string read as INT64")
	}
}
