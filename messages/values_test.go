package messages

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestConvertValueAccepts(t *testing.T) {
	tests := []struct {
		typ  string
		raw  string
		want any
	}{
		{"INTEGER", `null`, nil},
		{"JSON", `null`, nil},
		{"INTEGER", `42`, int64(42)},
		{"INTEGER", `-7`, int64(-7)},
		{"INTEGER", `1.0`, int64(1)},
		{"INTEGER", `1e3`, int64(1000)},
		{"INTEGER", `1.5e1`, int64(15)},
		{"INTEGER", `-0`, int64(0)},
		{"INTEGER", `9223372036854775807`, int64(9223372036854775807)},
		{"INTEGER", `-9223372036854775808`, int64(-9223372036854775808)},
		{"INTEGER", `0e99999999999999999999`, int64(0)},
		{"FLOAT", `1.5`, 1.5},
		{"DOUBLE", `-2e-5`, -2e-5},
		{"REAL", `3`, 3.0},
		{"FLOAT64", `1.7976931348623157e308`, 1.7976931348623157e308},
		{"DECIMAL(10,2)", `12.5`, "12.5"},
		{"DECIMAL(10,2)", `"12.50"`, "12.5"},
		{"DECIMAL(10,2)", `"-0012.50"`, "-12.5"},
		{"DECIMAL(10,2)", `"+3"`, "3"},
		{"DECIMAL(10,2)", `12345678.99`, "12345678.99"},
		{"DECIMAL(10,2)", `-0.0`, "0"},
		{"DECIMAL(10,2)", `"1e2"`, "100"},
		{"DECIMAL(10,2)", `".5"`, "0.5"},
		{"NUMERIC", `0.000000001`, "0.000000001"},
		{"NUMERIC", `"99999999999999999999999999999.999999999"`, "99999999999999999999999999999.999999999"},
		{"DECIMAL(40,2)", `"123456789012345678901234567890.12"`, "123456789012345678901234567890.12"},
		{"BIGNUMERIC", `1e-38`, "0.00000000000000000000000000000000000001"},
		{"BIGNUMERIC", `1e37`, "10000000000000000000000000000000000000"},
		{"BOOLEAN", `true`, true},
		{"BOOL", `false`, false},
		{"TEXT", `"Backup and Restore"`, "Backup and Restore"},
		{"TEXT", `"tab\there \u00e9"`, "tab\there é"},
		{"TEXT", `""`, ""},
		{"VARCHAR(5)", `"héllo"`, "héllo"},
		{"CHAR(1)", `"x"`, "x"},
		{"DATE", `"2024-02-29"`, "2024-02-29"},
		{"DATE", `"0001-01-01"`, "0001-01-01"},
		{"DATETIME", `"2018-03-27 11:58:28.988414"`, "2018-03-27 11:58:28.988414"},
		{"DATETIME", `"2018-03-27T11:58:28"`, "2018-03-27 11:58:28"},
		{"DATETIME", `"2018-03-27 11:58:28.500000"`, "2018-03-27 11:58:28.5"},
		{"DATETIME", `"2018-03-27 11:58:28.000"`, "2018-03-27 11:58:28"},
		{"TIME", `"23:59:59.999999"`, "23:59:59.999999"},
		{"TIME", `"00:00:00"`, "00:00:00"},
		{"TIMESTAMP", `"2024-01-01T00:30:00+01:00"`, "2023-12-31T23:30:00Z"},
		{"TIMESTAMP", `"2024-01-01T10:00:00.123456Z"`, "2024-01-01T10:00:00.123456Z"},
		{"TIMESTAMP", `"2024-01-01 10:00:00"`, "2024-01-01T10:00:00Z"},
		{"TIMESTAMP", `"2024-01-01 10:00:00.5-08"`, "2024-01-01T18:00:00.5Z"},
		{"TIMESTAMP", `"2024-01-01 10:00:00 +0530"`, "2024-01-01T04:30:00Z"},
		{"TIMESTAMP", `"2024-01-01t10:00:00z"`, "2024-01-01T10:00:00Z"},
		{"JSON", `{"b": [1, 2.50, "<x>"], "a": null}`, `{"b":[1,2.50,"<x>"],"a":null}`},
		{"JSON", `"just a string"`, `"just a string"`},
		{"JSON", `12`, `12`},
		{"BLOB", `"aGVsbG8="`, []byte("hello")},
		{"BYTES", `""`, []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.typ+" "+tt.raw, func(t *testing.T) {
			ct, err := ParseColumnType(tt.typ)
			if err != nil {
				t.Fatal(err)
			}
			got, problem := convertValue(ct, tt.typ, json.RawMessage(tt.raw))
			if problem != "" {
				t.Fatalf("convertValue(%s, %s): %s", tt.typ, tt.raw, problem)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("convertValue(%s, %s) = %#v, want %#v", tt.typ, tt.raw, got, tt.want)
			}
		})
	}
}

func TestConvertValueRejects(t *testing.T) {
	tests := []struct {
		typ, raw, wantInMessage string
	}{
		{"INTEGER", `1.5`, "not an integer"},
		{"INTEGER", `1e30`, "out of range"},
		{"INTEGER", `9223372036854775808`, "out of range"},
		{"INTEGER", `1e-1`, "not an integer"},
		{"INTEGER", `"1"`, "must be an integral JSON number, got a string"},
		{"INTEGER", `true`, "got a boolean"},
		{"FLOAT", `1e400`, "out of range"},
		{"FLOAT", `"1.5"`, "must be a JSON number"},
		{"FLOAT", `"NaN"`, "must be a JSON number"},
		{"DECIMAL(10,2)", `1.234`, "3 digits after the decimal point; at most 2"},
		{"DECIMAL(10,2)", `123456789`, "9 digits before the decimal point; at most 8"},
		{"DECIMAL(10,2)", `"12,5"`, "not a decimal"},
		{"DECIMAL(10,2)", `"abc"`, "not a decimal"},
		{"DECIMAL(10,2)", `"1e"`, "not a decimal"},
		{"DECIMAL(10,2)", `" 1"`, "not a decimal"},
		{"DECIMAL(10,2)", `"."`, "not a decimal"},
		{"DECIMAL(10,2)", `"NaN"`, "not a decimal"},
		{"DECIMAL(10,2)", `"1e999999999999999999"`, "digits before the decimal point"},
		{"DECIMAL(10,2)", `true`, "must be a decimal"},
		{"NUMERIC", `1e29`, "30 digits before the decimal point; at most 29"},
		{"NUMERIC", `0.0000000001`, "10 digits after the decimal point; at most 9"},
		{"BIGNUMERIC", `1e-39`, "at most 38"},
		{"BOOLEAN", `1`, "must be true or false"},
		{"BOOLEAN", `"true"`, "must be true or false"},
		{"TEXT", `1`, "must be a JSON string"},
		{"TEXT", `{"a":1}`, "got an object"},
		{"VARCHAR(3)", `"héll"`, "4 characters long; at most 3"},
		{"DATE", `"2023-02-29"`, "not a valid DATE"},
		{"DATE", `"2024-13-01"`, "not a valid DATE"},
		{"DATE", `"0000-01-01"`, "not a valid DATE"},
		{"DATE", `"2024-1-01"`, "not a valid DATE"},
		{"DATE", `"2024-01-01 10:00:00"`, "not a valid DATE"},
		{"DATE", `20240101`, "must be a JSON string"},
		{"DATETIME", `"2024-01-01 24:00:00"`, "not a valid DATETIME"},
		{"DATETIME", `"2024-01-01 10:00:00.1234567"`, "not a valid DATETIME"},
		{"DATETIME", `"2024-01-01 10:00:00Z"`, "not a valid DATETIME"},
		{"DATETIME", `"2024-01-01 10:00"`, "not a valid DATETIME"},
		{"DATETIME", `"2024-01-01 10:00:00."`, "not a valid DATETIME"},
		{"TIME", `"10:60:00"`, "not a valid TIME"},
		{"TIME", `"10:00:60"`, "not a valid TIME"},
		{"TIME", `"10:00"`, "not a valid TIME"},
		{"TIMESTAMP", `"2024-01-01"`, "not a valid TIMESTAMP"},
		{"TIMESTAMP", `"2024-01-01T10:00:00+25:00"`, "not a valid TIMESTAMP"},
		{"TIMESTAMP", `"2024-01-01 10:00:00 America/New_York"`, "not a valid TIMESTAMP"},
		{"TIMESTAMP", `"2024-01-01T10:00:00.1234567Z"`, "not a valid TIMESTAMP"},
		{"TIMESTAMP", `"0001-01-01T00:00:00+01:00"`, "not a valid TIMESTAMP"},
		{"TIMESTAMP", `"9999-12-31T23:00:00-02:00"`, "not a valid TIMESTAMP"},
		{"BLOB", `"not base64!"`, "not standard base64"},
		{"BLOB", `"aGVsbG8"`, "not standard base64"},
		{"BLOB", `"aGVsbG8_"`, "not standard base64"},
		{"BLOB", `[1,2]`, "must be a base64 string"},
	}
	for _, tt := range tests {
		t.Run(tt.typ+" "+tt.raw, func(t *testing.T) {
			ct, err := ParseColumnType(tt.typ)
			if err != nil {
				t.Fatal(err)
			}
			got, problem := convertValue(ct, tt.typ, json.RawMessage(tt.raw))
			if problem == "" {
				t.Fatalf("convertValue(%s, %s) = %#v, want a problem", tt.typ, tt.raw, got)
			}
			if !strings.Contains(problem, tt.wantInMessage) {
				t.Fatalf("convertValue(%s, %s) problem %q, want it to mention %q", tt.typ, tt.raw, problem, tt.wantInMessage)
			}
		})
	}
}

func TestProblemMessagesBoundEchoedValues(t *testing.T) {
	ct, _ := ParseColumnType("INTEGER")
	raw := json.RawMessage(`"` + strings.Repeat("x", 100000) + `"`)
	_, problem := convertValue(ct, "INTEGER", raw)
	if problem == "" || len(problem) > 300 {
		t.Fatalf("problem is %d bytes, want a short message", len(problem))
	}
}

func TestDecimalIsExact(t *testing.T) {
	// float64 would round these; the gate must not.
	ct, _ := ParseColumnType("BIGNUMERIC")
	for _, raw := range []string{
		`12345678901234567890123456789012345678.12345678901234567890123456789012345678`,
		`0.10000000000000000555`,
		`9007199254740993`,
	} {
		got, problem := convertValue(ct, "BIGNUMERIC", json.RawMessage(raw))
		if problem != "" || got != raw {
			t.Errorf("convertValue(BIGNUMERIC, %s) = %v, %q; want it unchanged", raw, got, problem)
		}
	}
}

func TestJSONValueKeepsNumbersAndEscapes(t *testing.T) {
	ct, _ := ParseColumnType("JSON")
	raw := `{"n": 1.000000000000000000001, "s": "\u003c&"}`
	got, problem := convertValue(ct, "JSON", json.RawMessage(raw))
	if problem != "" {
		t.Fatal(problem)
	}
	var want bytes.Buffer
	_ = json.Compact(&want, []byte(raw))
	if got != want.String() {
		t.Fatalf("got %v, want %s", got, want.String())
	}
}
