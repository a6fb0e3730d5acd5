package messages

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// convertValue turns one col_values entry into the Go value its column type
// stores (see Column.Value). problem is non-empty when the value does not fit;
// declared is the col_type as the client wrote it, for the message.
//
// It only dispatches: each type's rules are a function of their own, so
// that the stack frame of the common case stays small. One function holding
// every type's messages needed a 3 KB frame, and a goroutine per message
// (Watermill's router starts one) grew its stack for it on every payload:
// runtime.newstack was 10 % of the apply stage's CPU draining a backlog.
func convertValue(t ColumnType, declared string, raw json.RawMessage) (value any, problem string) {
	if len(raw) == 0 {
		return nil, "value is missing"
	}
	kind := jsonKind(raw[0])
	if kind == "null" {
		return nil, ""
	}
	switch t.Base {
	case TypeInt64:
		return int64Value(declared, kind, raw)
	case TypeFloat64:
		return float64Value(declared, kind, raw)
	case TypeNumeric, TypeBigNumeric:
		return decimalValue(t, declared, kind, raw)
	case TypeBool:
		if kind != "boolean" {
			return nil, mismatch(declared, "true or false", kind, raw)
		}
		return raw[0] == 't', ""
	case TypeString:
		return stringValue(t, declared, kind, raw)
	case TypeBytes:
		return bytesValue(declared, kind, raw)
	case TypeJSON:
		return jsonValue(declared, raw)
	case TypeDate, TypeDatetime, TypeTime, TypeTimestamp:
		return temporalValue(t, declared, kind, raw)
	}
	return nil, "column type " + quote(declared) + " has no value rules"
}

// mismatch is the problem of a value of the wrong JSON kind.
//
//go:noinline
func mismatch(declared, want, kind string, raw json.RawMessage) string {
	return declared + " value must be " + want + ", got " + kindWithArticle(kind) + " " + echo(raw)
}

// valueProblem is declared + " value " + the client's value + what is wrong.
//
//go:noinline
func valueProblem(declared string, raw json.RawMessage, what string) string {
	return declared + " value " + echo(raw) + what
}

func int64Value(declared, kind string, raw json.RawMessage) (any, string) {
	if kind != "number" {
		return nil, mismatch(declared, "an integral JSON number", kind, raw)
	}
	d, _ := parseDecimal(string(raw))
	v, ok := d.int64()
	if !ok {
		if d.fracDigits() > 0 {
			return nil, valueProblem(declared, raw, " is not an integer")
		}
		return nil, valueProblem(declared, raw, " is out of range for INT64")
	}
	return v, ""
}

func float64Value(declared, kind string, raw json.RawMessage) (any, string) {
	if kind != "number" {
		return nil, mismatch(declared, "a JSON number", kind, raw)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, valueProblem(declared, raw, " is out of range for FLOAT64")
	}
	return f, ""
}

func decimalValue(t ColumnType, declared, kind string, raw json.RawMessage) (any, string) {
	var text string
	switch kind {
	case "number":
		text = string(raw)
	case "string":
		s, err := decodeJSONString(raw)
		if err != nil {
			return nil, mismatch(declared, "a decimal number or decimal string", kind, raw)
		}
		text = s
	default:
		return nil, mismatch(declared, "a decimal number or decimal string", kind, raw)
	}
	d, ok := parseDecimal(text)
	if !ok {
		return nil, valueProblem(declared, raw, " is not a decimal number")
	}
	intLimit, fracLimit := t.decimalLimits()
	if d.intDigits() > intLimit {
		return nil, digitsProblem(t, declared, raw, d.intDigits(), "before", intLimit)
	}
	if d.fracDigits() > fracLimit {
		return nil, digitsProblem(t, declared, raw, d.fracDigits(), "after", fracLimit)
	}
	return d.String(), ""
}

//go:noinline
func digitsProblem(t ColumnType, declared string, raw json.RawMessage, digits int, side string, limit int) string {
	return declared + " value " + echo(raw) + " has " + strconv.Itoa(digits) +
		" digits " + side + " the decimal point; at most " + strconv.Itoa(limit) + " fit " + t.String()
}

// stringContent is what raw holds when the column wants a JSON string
// (described as want in the problem), or the problem.
func stringContent(declared, want, kind string, raw json.RawMessage) (s, problem string) {
	if kind != "string" {
		return "", mismatch(declared, want, kind, raw)
	}
	s, err := decodeJSONString(raw)
	if err != nil {
		return "", mismatch(declared, want, kind, raw)
	}
	return s, ""
}

func stringValue(t ColumnType, declared, kind string, raw json.RawMessage) (any, string) {
	s, problem := stringContent(declared, "a JSON string", kind, raw)
	if problem != "" {
		return nil, problem
	}
	if t.MaxLength > 0 {
		if n := runeCount(s); n > t.MaxLength {
			return nil, lengthProblem(declared, n, t.MaxLength)
		}
	}
	return s, ""
}

//go:noinline
func lengthProblem(declared string, n, limit int) string {
	return declared + " value is " + strconv.Itoa(n) + " characters long; at most " +
		strconv.Itoa(limit) + " allowed"
}

func bytesValue(declared, kind string, raw json.RawMessage) (any, string) {
	s, problem := stringContent(declared, "a base64 string", kind, raw)
	if problem != "" {
		return nil, problem
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, valueProblem(declared, raw, " is not standard base64 (RFC 4648 with padding)")
	}
	return b, ""
}

func jsonValue(declared string, raw json.RawMessage) (any, string) {
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return nil, declared + " value is not valid JSON"
	}
	return buf.String(), ""
}

func temporalValue(t ColumnType, declared, kind string, raw json.RawMessage) (any, string) {
	s, problem := stringContent(declared, "a JSON string", kind, raw)
	if problem != "" {
		return nil, problem
	}
	var canonical string
	var ok bool
	var format string
	switch t.Base {
	case TypeDate:
		canonical, ok = canonicalDate(s)
		format = `"YYYY-MM-DD"`
	case TypeDatetime:
		canonical, ok = canonicalDatetime(s)
		format = `"YYYY-MM-DD HH:MM:SS[.ffffff]" (or with "T")`
	case TypeTime:
		canonical, ok = canonicalTime(s)
		format = `"HH:MM:SS[.ffffff]"`
	default:
		canonical, ok = canonicalTimestamp(s)
		format = `RFC 3339 or "YYYY-MM-DD HH:MM:SS[.ffffff][zone]" (no zone means UTC)`
	}
	if !ok {
		return nil, valueProblem(declared, raw, " is not a valid "+string(t.Base)+"; expected "+format)
	}
	return canonical, ""
}

func jsonKind(first byte) string {
	switch first {
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	case '{':
		return "object"
	case '[':
		return "array"
	default:
		return "number"
	}
}

func kindWithArticle(kind string) string {
	switch kind {
	case "object", "array":
		return "an " + kind
	}
	return "a " + kind
}

// echo renders a client's value for a message, bounded in length.
func echo(raw json.RawMessage) string { return truncateForMessage(string(raw)) }

func runeCount(s string) int { return utf8.RuneCountInString(s) }

// decodeJSONString decodes a JSON string literal, skipping encoding/json for
// the common literal without escapes. The body was checked to be UTF-8 and
// JSON already, so such a literal is its own content.
func decodeJSONString(raw json.RawMessage) (string, error) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// decimal is an exact decimal number: sign × digits × 10^exp, where digits
// has neither leading nor trailing zeros ("" is zero, which is never
// negative). NUMERIC values go through it and never through float64.
type decimal struct {
	neg    bool
	digits string
	exp    int
}

// maxDecimalExponent saturates exponents: any value this far from the decimal
// point is out of every type's range, and saturating keeps the arithmetic
// clear of overflow.
const maxDecimalExponent = 1 << 30

// parseDecimal parses [+-]digits[.digits][(e|E)[+-]digits], where either
// side of the point may be empty but not both.
func parseDecimal(s string) (decimal, bool) {
	i := 0
	var d decimal
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		d.neg = s[i] == '-'
		i++
	}
	intStart := i
	for i < len(s) && isASCIIDigit(s[i]) {
		i++
	}
	intPart := s[intStart:i]
	var fracPart string
	if i < len(s) && s[i] == '.' {
		i++
		fracStart := i
		for i < len(s) && isASCIIDigit(s[i]) {
			i++
		}
		fracPart = s[fracStart:i]
	}
	if intPart == "" && fracPart == "" {
		return decimal{}, false
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		expStart := i
		for i < len(s) && isASCIIDigit(s[i]) {
			if exp < maxDecimalExponent {
				exp = exp*10 + int(s[i]-'0')
			}
			i++
		}
		if i == expStart {
			return decimal{}, false
		}
		exp = min(exp, maxDecimalExponent)
		if expNeg {
			exp = -exp
		}
	}
	if i != len(s) {
		return decimal{}, false
	}

	// Strip leading zeros (across the point) and trailing zeros (into exp)
	// without concatenating the parts unless both hold significant digits.
	exp -= len(fracPart)
	intPart = strings.TrimLeft(intPart, "0")
	var digits string
	if intPart == "" {
		digits = strings.TrimLeft(fracPart, "0")
	} else {
		digits = intPart + fracPart
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	d.digits = trimmed
	if d.digits == "" {
		return decimal{}, true
	}
	d.exp = exp
	return d, true
}

// intDigits is how many digits the value has before the decimal point.
func (d decimal) intDigits() int {
	if d.digits == "" {
		return 0
	}
	return max(0, len(d.digits)+d.exp)
}

// fracDigits is how many digits the value needs after the decimal point.
func (d decimal) fracDigits() int { return max(0, -d.exp) }

// int64 returns the value if it is an integer within int64.
func (d decimal) int64() (int64, bool) {
	if d.digits == "" {
		return 0, true
	}
	if d.exp < 0 || d.intDigits() > 19 {
		return 0, false
	}
	v, err := strconv.ParseInt(d.String(), 10, 64)
	return v, err == nil
}

// String renders the decimal without exponent and without trailing
// fractional zeros: "-12.5", "100", "0.001", "0". Callers bound the digits
// first; the exponent is only ever as large as the type allows.
func (d decimal) String() string {
	if d.digits == "" {
		return "0"
	}
	var b strings.Builder
	n := len(d.digits)
	b.Grow(n + 3 + max(d.exp, -d.exp))
	if d.neg {
		b.WriteByte('-')
	}
	switch {
	case d.exp >= 0:
		b.WriteString(d.digits)
		for range d.exp {
			b.WriteByte('0')
		}
	case -d.exp < n:
		b.WriteString(d.digits[:n+d.exp])
		b.WriteByte('.')
		b.WriteString(d.digits[n+d.exp:])
	default:
		b.WriteString("0.")
		for range -d.exp - n {
			b.WriteByte('0')
		}
		b.WriteString(d.digits)
	}
	return b.String()
}

// Date and time literals. Every parser is exact about widths, so a
// canonical literal is also the only spelling of its value once the
// fraction's trailing zeros are dropped.

// parseDate parses "YYYY-MM-DD" with a year in BigQuery's 0001..9999.
func parseDate(s string) (year int, month time.Month, day int, ok bool) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return 0, 0, 0, false
	}
	y, ok1 := fixedDigits(s[0:4])
	m, ok2 := fixedDigits(s[5:7])
	dd, ok3 := fixedDigits(s[8:10])
	if !ok1 || !ok2 || !ok3 || y < 1 || m < 1 || m > 12 || dd < 1 || dd > daysIn(time.Month(m), y) {
		return 0, 0, 0, false
	}
	return y, time.Month(m), dd, true
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// parseClock parses "HH:MM:SS[.f…]" (at most six fraction digits) at the
// start of s and returns what follows. frac has no trailing zeros.
func parseClock(s string) (h, m, sec int, frac string, rest string, ok bool) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, 0, 0, "", "", false
	}
	var ok1, ok2, ok3 bool
	h, ok1 = fixedDigits(s[0:2])
	m, ok2 = fixedDigits(s[3:5])
	sec, ok3 = fixedDigits(s[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 59 {
		return 0, 0, 0, "", "", false
	}
	rest = s[8:]
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		for i < len(rest) && isASCIIDigit(rest[i]) {
			i++
		}
		if i == 1 || i > 7 {
			return 0, 0, 0, "", "", false
		}
		frac = strings.TrimRight(rest[1:i], "0")
		rest = rest[i:]
	}
	return h, m, sec, frac, rest, true
}

func fixedDigits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if !isASCIIDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

func canonicalDate(s string) (string, bool) {
	if _, _, _, ok := parseDate(s); !ok {
		return "", false
	}
	return s, true
}

func clockString(h, m, sec int, frac string) string {
	var b strings.Builder
	b.Grow(15)
	b.WriteString(twoDigits(h))
	b.WriteByte(':')
	b.WriteString(twoDigits(m))
	b.WriteByte(':')
	b.WriteString(twoDigits(sec))
	if frac != "" {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}

func twoDigits(n int) string { return string([]byte{byte('0' + n/10), byte('0' + n%10)}) }

// canonicalTime accepts "HH:MM:SS[.ffffff]" and drops trailing fraction zeros.
func canonicalTime(s string) (string, bool) {
	h, m, sec, frac, rest, ok := parseClock(s)
	if !ok || rest != "" {
		return "", false
	}
	return clockString(h, m, sec, frac), true
}

// canonicalDatetime accepts "YYYY-MM-DD HH:MM:SS[.ffffff]" with a space or
// "T" and renders it with a space, as BigQuery SQL literals are written.
func canonicalDatetime(s string) (string, bool) {
	if len(s) < 19 || (s[10] != ' ' && s[10] != 'T') {
		return "", false
	}
	if _, _, _, ok := parseDate(s[:10]); !ok {
		return "", false
	}
	h, m, sec, frac, rest, ok := parseClock(s[11:])
	if !ok || rest != "" {
		return "", false
	}
	return s[:10] + " " + clockString(h, m, sec, frac), true
}

// canonicalTimestamp accepts RFC 3339 ("2006-01-02T15:04:05.999999Z07:00")
// and BigQuery's "2006-01-02 15:04:05.999999[zone]", where the zone is Z,
// ±HH, ±HHMM or ±HH:MM, optionally after one space, and no zone means UTC.
// Time zone names are refused: resolving them needs the tz database, which
// is I/O and differs between hosts. The result is in UTC,
// "2006-01-02T15:04:05.999999Z".
func canonicalTimestamp(s string) (string, bool) {
	if len(s) < 19 || (s[10] != ' ' && s[10] != 'T' && s[10] != 't') {
		return "", false
	}
	year, month, day, ok := parseDate(s[:10])
	if !ok {
		return "", false
	}
	h, m, sec, frac, zone, ok := parseClock(s[11:])
	if !ok {
		return "", false
	}
	offset, ok := parseZoneOffset(zone)
	if !ok {
		return "", false
	}
	nanos := 0
	if frac != "" {
		n, _ := fixedDigits(frac)
		for range 9 - len(frac) {
			n *= 10
		}
		nanos = n
	}
	t := time.Date(year, month, day, h, m, sec, nanos, time.UTC).Add(-time.Duration(offset) * time.Second)
	if y := t.Year(); y < 1 || y > 9999 {
		return "", false
	}
	return t.Format("2006-01-02T15:04:05.999999Z"), true
}

// parseZoneOffset returns the zone's offset east of UTC in seconds.
func parseZoneOffset(zone string) (int, bool) {
	if zone == "" {
		return 0, true
	}
	if zone[0] == ' ' {
		zone = zone[1:]
	}
	if zone == "Z" || zone == "z" {
		return 0, true
	}
	if len(zone) < 3 || (zone[0] != '+' && zone[0] != '-') {
		return 0, false
	}
	sign := 1
	if zone[0] == '-' {
		sign = -1
	}
	hh, ok := fixedDigits(zone[1:3])
	if !ok || hh > 23 {
		return 0, false
	}
	mm := 0
	switch rest := zone[3:]; len(rest) {
	case 0:
	case 2, 3:
		if len(rest) == 3 {
			if rest[0] != ':' {
				return 0, false
			}
			rest = rest[1:]
		}
		mm, ok = fixedDigits(rest)
		if !ok || mm > 59 {
			return 0, false
		}
	default:
		return 0, false
	}
	return sign * (hh*3600 + mm*60), true
}
