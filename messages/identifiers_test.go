package messages

import (
	"strings"
	"testing"
)

func TestValidIdentifier(t *testing.T) {
	tests := []struct {
		name string
		max  int
		want bool
	}{
		{"a", 10, true},
		{"_", 10, true},
		{"table1", 10, true},
		{"Mixed_Case_9", 20, true},
		{"", 10, false},
		{"1a", 10, false},
		{"a b", 10, false},
		{"a; DROP TABLE x", 100, false},
		{"a`b", 10, false},
		{"a.b", 10, false},
		{"a-b", 10, false},
		{`a"b`, 10, false},
		{"é", 10, false},
		{"a\x00", 10, false},
		{strings.Repeat("a", 300), 300, true},
		{strings.Repeat("a", 301), 300, false},
	}
	for _, tt := range tests {
		if got := ValidIdentifier(tt.name, tt.max); got != tt.want {
			t.Errorf("ValidIdentifier(%q, %d) = %v, want %v", tt.name, tt.max, got, tt.want)
		}
	}
}

func TestNameProblems(t *testing.T) {
	tests := []struct {
		name        string
		table, col  bool // whether it is acceptable as a table / column name
		wantMessage string
	}{
		{"orders", true, true, ""},
		{"_private", true, true, ""},
		{"_gatekeeper_ledger", false, false, "reserved"},
		{"_GateKeeper_x", false, false, "reserved"},
		{"_gatekeepers", false, false, "reserved"},
		{"_TABLE_SUFFIX", true, false, "BigQuery refuses"},
		{"_table_x", true, false, "BigQuery refuses"},
		{"_FILE_NAME", true, false, "BigQuery refuses"},
		{"_PARTITIONTIME", true, false, "BigQuery refuses"},
		{"_ROW_TIMESTAMP", true, false, "BigQuery refuses"},
		{"__ROOT__x", true, false, "BigQuery refuses"},
		{"_COLIDENTIFIER1", true, false, "BigQuery refuses"},
		{"_TABLE", true, true, ""},
		{strings.Repeat("t", MaxColumnNameLen+1), true, false, "at most 300"},
		{strings.Repeat("t", MaxTableNameLen+1), false, false, "at most"},
	}
	for _, tt := range tests {
		tableMsg, colMsg := tableNameProblem(tt.name), columnNameProblem(tt.name)
		if (tableMsg == "") != tt.table {
			t.Errorf("tableNameProblem(%.20q) = %q, want acceptable=%v", tt.name, tableMsg, tt.table)
		}
		if (colMsg == "") != tt.col {
			t.Errorf("columnNameProblem(%.20q) = %q, want acceptable=%v", tt.name, colMsg, tt.col)
		}
		if tt.wantMessage != "" && !strings.Contains(tableMsg+colMsg, tt.wantMessage) {
			t.Errorf("problems for %.20q = %q / %q, want one mentioning %q", tt.name, tableMsg, colMsg, tt.wantMessage)
		}
	}
}
