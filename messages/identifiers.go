package messages

import (
	"strconv"
	"strings"
)

// Limits of one payload. The identifier lengths are BigQuery's; MaxTables is
// BigQuery's limit on tables one transaction may modify, and a payload is one
// transaction.
const (
	MaxTableNameLen  = 1024
	MaxColumnNameLen = 300
	MaxActivities    = 1000
	MaxTables        = 100
)

// reservedPrefix belongs to gatekeeper's own tables (the ledger is
// "_gatekeeper_ledger"); a payload that could write them could forge
// "already applied" records.
const reservedPrefix = "_gatekeeper"

// bigQueryReservedColumnPrefixes are prefixes BigQuery refuses in column
// names (compared case-insensitively).
var bigQueryReservedColumnPrefixes = []string{
	"_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLIDENTIFIER",
}

// ValidIdentifier reports whether name matches ^[A-Za-z_][A-Za-z0-9_]*$ and
// has at most max bytes. Only such names are ever put into SQL, so quoting
// never has to be trusted to neutralise a hostile name.
func ValidIdentifier(name string, max int) bool {
	if name == "" || len(name) > max {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' || isASCIILetter(c) || (i > 0 && isASCIIDigit(c)) {
			continue
		}
		return false
	}
	return true
}

// tableNameProblem returns why name cannot be a table name, or "".
func tableNameProblem(name string) string {
	if !ValidIdentifier(name, MaxTableNameLen) {
		return identifierProblem(name, MaxTableNameLen, "table")
	}
	if hasPrefixFold(name, reservedPrefix) {
		return "table name " + quote(name) + " is reserved: names starting with " + quote(reservedPrefix) + " belong to gatekeeper"
	}
	return ""
}

// columnNameProblem returns why name cannot be a column name, or "".
func columnNameProblem(name string) string {
	if !ValidIdentifier(name, MaxColumnNameLen) {
		return identifierProblem(name, MaxColumnNameLen, "column")
	}
	if hasPrefixFold(name, reservedPrefix) {
		return "column name " + quote(name) + " is reserved: names starting with " + quote(reservedPrefix) + " belong to gatekeeper"
	}
	for _, prefix := range bigQueryReservedColumnPrefixes {
		if hasPrefixFold(name, prefix) {
			return "column name " + quote(name) + " is reserved: BigQuery refuses column names starting with " + quote(prefix)
		}
	}
	return ""
}

func identifierProblem(name string, max int, what string) string {
	switch {
	case name == "":
		return what + " name must not be empty"
	case len(name) > max:
		return what + " name is " + strconv.Itoa(len(name)) + " bytes long; at most " + strconv.Itoa(max) + " allowed"
	default:
		return what + " name " + quote(truncateForMessage(name)) +
			" is not a valid identifier: it must start with a letter or underscore and contain only letters, digits and underscores"
	}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// maxEchoLen bounds how much of a client's input a message repeats, so an
// error response never grows with a hostile value.
const maxEchoLen = 64

func truncateForMessage(s string) string {
	if len(s) <= maxEchoLen {
		return s
	}
	cut := maxEchoLen
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func quote(s string) string { return strconv.Quote(truncateForMessage(s)) }
