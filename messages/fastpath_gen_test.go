package messages

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// docGen writes payload documents near every boundary the gate has, for
// the differential test: each schema keyword (required, propertyNames,
// minItems and maxItems, minLength and maxLength, type, enum and const, both
// oneOf branches), the strict decoder's refusals (a key twice, a lone
// surrogate, nesting depth), and the semantic rules (identifiers, duplicate
// columns, column types, values at the edges of their types, mismatched
// lengths, the table limit). Most choices are plain, so that about half of
// the documents are valid and the other half fail at one or two places:
// a document failing everywhere would tell nothing about the edge it
// crossed.
//
// It is deterministic: document i of seed s is always the same bytes.
type docGen struct {
	r      *rand.Rand
	out    []byte
	labels map[string]int
	// quiet turns faults off while a big document's many parts are
	// written, so that the edge it was made for decides it.
	quiet bool
}

func newDocGen(seed, index uint64) *docGen {
	return &docGen{r: rand.New(rand.NewPCG(seed, index)), labels: map[string]int{}}
}

// generate returns document index of seed, possibly mutated byte-wise, and
// the labels of the edges it was built to cross.
func generateDoc(seed, index uint64) ([]byte, map[string]int) {
	g := newDocGen(seed, index)
	g.document()
	if g.chance(0.2) {
		g.mutate()
	}
	return g.out, g.labels
}

func (g *docGen) chance(p float64) bool { return g.r.Float64() < p }

// fault is chance(p) outside quiet parts.
func (g *docGen) fault(p float64) bool { return !g.quiet && g.chance(p) }

// quietly writes with faults off when on is true.
func (g *docGen) quietly(on bool, write func()) {
	was := g.quiet
	g.quiet = g.quiet || on
	write()
	g.quiet = was
}
func (g *docGen) intn(n int) int { return g.r.IntN(n) }
func (g *docGen) label(l string) { g.labels[l]++ }
func (g *docGen) raw(s string)   { g.out = append(g.out, s...) }

func pick[T any](g *docGen, list []T) T { return list[g.intn(len(list))] }

// ws writes the blanks between tokens: usually none, sometimes JSON's four,
// rarely a character JSON does not count as a blank.
func (g *docGen) ws() {
	if !g.chance(0.08) {
		return
	}
	if g.fault(0.003) {
		g.label("ws.invalid")
		g.raw(pick(g, []string{"\f", "\v", "\u00a0", "\u2028", "\x00"}))
		return
	}
	g.label("ws")
	for range 1 + g.intn(3) {
		g.raw(pick(g, []string{" ", "\t", "\n", "\r"}))
	}
}

// member is one property of an object being written.
type member struct {
	key   string
	value func()
}

// object writes an object of members, in a random order at times, with
// the faults an object can have: a member dropped (required), a stray one
// (propertyNames), one twice (the strict decoder).
func (g *docGen) object(level string, members []member, strays []string) {
	if len(members) > 0 && g.fault(0.015) {
		g.label(level + ".required")
		i := g.intn(len(members))
		members = append(members[:i:i], members[i+1:]...)
	}
	if g.fault(0.012) {
		g.label(level + ".propertyNames")
		stray := pick(g, strays)
		members = append(members, member{stray, g.anyValue})
	}
	if len(members) > 0 && g.fault(0.01) {
		g.label("dup-key." + level)
		m := pick(g, members)
		if g.chance(0.5) {
			m = member{m.key, g.anyValue}
		}
		members = append(members, m)
	}
	if g.chance(0.3) {
		g.r.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	}
	g.raw("{")
	g.ws()
	for i, m := range members {
		if i > 0 {
			g.raw(",")
			g.ws()
		}
		g.key(m.key)
		g.ws()
		g.raw(":")
		g.ws()
		m.value()
		g.ws()
	}
	g.raw("}")
}

// key writes an object key, sometimes spelled with an escape (the same key)
// or holding a lone surrogate.
func (g *docGen) key(k string) {
	switch {
	case k != "" && g.chance(0.02):
		g.label("key.escaped")
		i := g.intn(len(k))
		g.raw(`"` + k[:i] + fmt.Sprintf(`\u%04x`, k[i]) + k[i+1:] + `"`)
	case g.fault(0.002):
		g.label("surrogate.key")
		g.raw(`"` + k + `\udc01"`)
	default:
		g.raw(`"` + k + `"`)
	}
}

// wrongKind writes a value of a kind other than want ("object", "array",
// "string").
func (g *docGen) wrongKind(want string) {
	kinds := []string{"object", "array", "string", "number", "true", "null"}
	for {
		k := pick(g, kinds)
		if k == want {
			continue
		}
		switch k {
		case "object":
			g.raw(pick(g, []string{`{}`, `{"a":1}`}))
		case "array":
			g.raw(pick(g, []string{`[]`, `["a"]`, `[1]`}))
		case "string":
			g.raw(pick(g, []string{`""`, `"insert"`, `"a"`}))
		case "number":
			g.raw(pick(g, []string{`0`, `1`, `-1.5`, `1e400`}))
		default:
			g.raw(k)
		}
		return
	}
}

func (g *docGen) document() {
	if g.chance(0.005) {
		g.label("root.type")
		g.wrongKind("object")
		return
	}
	members := []member{{"activities", g.activities}}
	if g.chance(0.25) {
		members = append(members, member{"ordering_key", g.orderingKey})
	}
	g.ws()
	g.object("root", members, []string{"Activities", "activity", "ordering-key", "x", "", "operation", "col_names"})
	g.ws()
}

func (g *docGen) orderingKey() {
	if g.chance(0.02) {
		g.label("ordering_key.type")
		g.wrongKind("string")
		return
	}
	n := 1 + g.intn(12)
	switch {
	case g.chance(0.02):
		g.label("ordering_key.minLength")
		n = 0
	case g.chance(0.03):
		g.label("ordering_key.max")
		n = MaxOrderingKeyLen
	case g.chance(0.03):
		g.label("ordering_key.maxLength")
		n = MaxOrderingKeyLen + 1
	}
	g.stringOf(n, false)
}

// stringOf writes a JSON string of exactly n characters, mixing ASCII,
// multibyte characters, escapes and escaped surrogate pairs (each one
// character); with lone, one of them is a lone surrogate escape instead.
func (g *docGen) stringOf(n int, lone bool) {
	g.raw(`"`)
	pieces := []string{"a", "Z", "0", " ", "_", "é", "€", "😀", "中", `\"`, `\\`, `\/`, `\n`, `\t`, `\u00e9`, `\u0041`, `\ud83d\ude00`, `\u2028`, "<", "&"}
	loneAt := -1
	if lone && n > 0 {
		loneAt = g.intn(n)
	}
	for i := range n {
		if i == loneAt {
			g.raw(pick(g, []string{`\ud800`, `\udfff`, `\ud83d\u0041`, `\uDC00`}))
			continue
		}
		if g.chance(0.7) {
			g.raw(string(rune('a' + g.intn(26))))
			continue
		}
		g.raw(pick(g, pieces))
	}
	g.raw(`"`)
}

func (g *docGen) activities() {
	if g.chance(0.01) {
		g.label("activities.type")
		g.wrongKind("array")
		return
	}
	n := 1
	distinct := false
	switch x := g.r.Float64(); {
	case x < 0.02:
		g.label("activities.minItems")
		n = 0
	case x < 0.0201:
		g.label("activities.max")
		n = MaxActivities
	case x < 0.0202:
		g.label("activities.maxItems")
		n = MaxActivities + 1
	case x < 0.0212:
		g.label("tables.max")
		n, distinct = MaxTables, true
	case x < 0.0222:
		g.label("tables.over")
		n, distinct = MaxTables+1, true
	case x < 0.5:
		n = 1
	case x < 0.75:
		n = 2
	case x < 0.92:
		n = 3 + g.intn(3)
	default:
		n = 6 + g.intn(7)
	}
	// A big document gets plain activities, so that the edge it was made
	// for decides it.
	g.quietly(n >= MaxTables, func() {
		g.raw("[")
		g.ws()
		for i := range n {
			if i > 0 {
				g.raw(",")
				g.ws()
			}
			table := ""
			if distinct {
				table = "t" + strconv.Itoa(i)
			}
			g.activity(table)
			g.ws()
		}
		g.raw("]")
	})
}

var operations = []string{"insert", "delete"}

func (g *docGen) activity(table string) {
	if g.fault(0.006) {
		g.label("activity.type")
		g.wrongKind("object")
		return
	}
	op := pick(g, operations)
	opValue := func() { g.raw(`"` + op + `"`) }
	if g.fault(0.03) {
		g.label("operation.enum")
		opValue = func() {
			g.raw(pick(g, []string{`"upsert"`, `"INSERT"`, `"Delete"`, `""`, `"insert "`, `"insert\u0000"`, `"ins\u0065rt"`}))
		}
		if g.chance(0.2) {
			g.label("operation.type")
			opValue = func() { g.wrongKind("string") }
		}
	}
	tableValue := func() { g.table(table) }
	members := []member{{"operation", opValue}, {"table", tableValue}}
	otherBranch := []member{{"value_to_delete", g.row}}
	if op == "insert" {
		members = append(members, g.columns()...)
	} else {
		members = append(members, otherBranch...)
		otherBranch = g.columns()
	}
	if g.fault(0.015) {
		g.label("activity.otherBranch")
		members = append(members, pick(g, otherBranch))
	}
	g.object("activity", members, []string{"Table", "OPERATION", "col_name", "values", "x", "activities", "ordering_key"})
}

func (g *docGen) row() {
	if g.fault(0.01) {
		g.label("row.type")
		g.wrongKind("object")
		return
	}
	g.object("row", g.columns(), []string{"operation", "table", "Col_names", "x", "value_to_delete"})
}

// table writes a table name: usually a short valid one, sometimes one at
// or over the edge of what the gate accepts.
func (g *docGen) table(name string) {
	if name == "" {
		name = pick(g, []string{"t", "table1", "orders", "T_2", "_x"})
	}
	switch {
	case g.fault(0.01):
		g.label("table.type")
		g.wrongKind("string")
		return
	case g.fault(0.01):
		g.label("table.minLength")
		name = ""
	case g.fault(0.03):
		g.label("table.edge")
		name = pick(g, tableEdges)
	case g.fault(0.003):
		g.label("surrogate.identifier")
		g.raw(`"t\ud800"`)
		return
	}
	g.raw(strconv.Quote(name))
}

var tableEdges = []string{
	strings.Repeat("t", MaxTableNameLen), strings.Repeat("t", MaxTableNameLen+1), "_gatekeeper_ledger", "_GATEKEEPER", "_gatekeepe",
	"a b", "a.b", "a;DROP", "1abc", "ñ", "a-b", "_", "__", "A", "a`b", "é",
}

var nameEdges = []string{
	strings.Repeat("c", MaxColumnNameLen), strings.Repeat("c", MaxColumnNameLen+1), "", "_gatekeeper_id", "_TABLE_x", "_file_", "_partitiontime",
	"_PARTITION", "_row_timestamp", "__root__", "_colidentifier", "_colidentifie", "_tabl", "a b", "1a", "a-b", "é", "_", "A1", "a\u0000",
}

// column type spellings: the name, and how its values are generated.
type genType struct {
	spelling string
	base     BaseType
	maxLen   int  // a bounded string's length
	intLimit int  // NUMERIC and BIGNUMERIC digits before the point
	frac     int  // and after it
	valid    bool // whether ParseColumnType accepts the spelling
}

// columnTypeEdge is a spelling ParseColumnType refuses, or accepts only
// just.
func (g *docGen) columnTypeEdge() genType {
	if g.chance(0.3) {
		return genType{spelling: pick(g, []string{"DECIMAL(76,38)", "DECIMAL(38,0)", "NUMERIC(29,9)", "NUMERIC(30,9)", "DECIMAL(29,10)",
			"VARCHAR(1)", "BIGNUMERIC(76,38)", " decimal ( 10 , 2 ) ", "Int64"}), base: TypeNumeric, intLimit: 0, frac: 0, valid: true}
	}
	return genType{spelling: pick(g, []string{"MONEY", "", "INT(5)", "VARCHAR(0)", "VARCHAR()", "DECIMAL(10,", "TEXT(5)",
		"1INT", "DECIMAL(77)", "DECIMAL(40,39)", "NUMERIC(39,0)", "DECIMAL(10,11)", "VARCHAR(10,2)", "DECIMAL(1,2,3)",
		"VARCHAR(999999999999999999999)", "DATE TIME", "INT64()", "FLOAT64(1)", "DECIMAL(0)", "DECIMAL(38,-1)"}), base: TypeString}
}

func (g *docGen) columnType() genType {
	spell := func(s string) string {
		switch {
		case g.chance(0.2):
			return strings.ToLower(s)
		case g.chance(0.05):
			return " " + s + "\t"
		}
		return s
	}
	switch x := g.intn(100); {
	case x < 22:
		return genType{spelling: spell(pick(g, []string{"INTEGER", "INT64", "INT", "BIGINT", "SMALLINT", "TINYINT"})), base: TypeInt64, valid: true}
	case x < 44:
		return genType{spelling: spell(pick(g, []string{"TEXT", "STRING", "LONGTEXT", "VARCHAR", "CHAR"})), base: TypeString, valid: true}
	case x < 50:
		n := pick(g, []int{1, 2, 3, 5, 10})
		return genType{spelling: spell(pick(g, []string{"VARCHAR", "CHAR", "STRING"})) + "(" + strconv.Itoa(n) + ")", base: TypeString, maxLen: n, valid: true}
	case x < 56:
		return genType{spelling: spell(pick(g, []string{"FLOAT64", "FLOAT", "DOUBLE", "REAL"})), base: TypeFloat64, valid: true}
	case x < 60:
		return genType{spelling: spell(pick(g, []string{"NUMERIC", "DECIMAL"})), base: TypeNumeric, intLimit: numericIntDigits, frac: numericMaxScale, valid: true}
	case x < 63:
		return genType{spelling: spell(pick(g, []string{"BIGNUMERIC", "BIGDECIMAL"})), base: TypeBigNumeric, intLimit: bigNumericIntDigits, frac: bigNumericMaxScale, valid: true}
	case x < 67:
		p := pick(g, []int{1, 5, 9, 10, 18, 29, 30, 38, 39, 76})
		s := min(p, pick(g, []int{0, 2, 9, 10, 38}))
		if p-s > bigNumericIntDigits {
			s = p - bigNumericIntDigits
		}
		spelling := fmt.Sprintf("DECIMAL(%d,%d)", p, s)
		if s == 0 && g.chance(0.5) {
			spelling = fmt.Sprintf("NUMERIC(%d)", p)
		}
		if g.chance(0.1) {
			spelling = fmt.Sprintf("decimal( %d , %d )", p, s)
		}
		return genType{spelling: spelling, base: TypeNumeric, intLimit: p - s, frac: s, valid: true}
	case x < 72:
		return genType{spelling: spell(pick(g, []string{"BOOL", "BOOLEAN"})), base: TypeBool, valid: true}
	case x < 76:
		return genType{spelling: spell("DATE"), base: TypeDate, valid: true}
	case x < 80:
		return genType{spelling: spell("DATETIME"), base: TypeDatetime, valid: true}
	case x < 84:
		return genType{spelling: spell("TIME"), base: TypeTime, valid: true}
	case x < 90:
		return genType{spelling: spell("TIMESTAMP"), base: TypeTimestamp, valid: true}
	case x < 96:
		return genType{spelling: spell("JSON"), base: TypeJSON, valid: true}
	default:
		return genType{spelling: spell(pick(g, []string{"BYTES", "BLOB"})), base: TypeBytes, valid: true}
	}
}

// columns returns the col_names, col_types and col_values members of one
// row, each array with its own faults.
func (g *docGen) columns() []member {
	n := 1
	switch x := g.r.Float64(); {
	case g.quiet:
		n = 1
	case x < 0.01:
		g.label("cols.minItems")
		n = 0
	case x < 0.00015+0.01:
		g.label("cols.max")
		n = 10000
	case x < 0.0003+0.01:
		g.label("cols.maxItems")
		n = 10001
	case x < 0.4:
		n = 1
	case x < 0.82:
		n = 2 + g.intn(3)
	case x < 0.96:
		n = 5 + g.intn(12)
	default:
		g.label("cols.many")
		n = 17 + g.intn(24)
	}
	big := n > 1000
	plain := g.quiet
	names := make([]string, n)
	types := make([]genType, n)
	used := map[string]bool{}
	for j := range n {
		names[j] = "c" + strconv.Itoa(j)
		if !big && !plain && g.chance(0.2) {
			if name := pick(g, []string{"id", "name", "created_at", "Amount", "x", "_y", "c_1"}); !used[strings.ToLower(name)] {
				names[j] = name
			}
		}
		used[strings.ToLower(names[j])] = true
		types[j] = genType{spelling: "INTEGER", base: TypeInt64, valid: true}
		if !big && !plain {
			types[j] = g.columnType()
		}
	}
	// At most one value, one name and one type of a row is at an edge,
	// so that a row of many columns is as likely to be valid as a short one.
	faultAt, rowFault := -1, plainValue
	if !plain && !big && n > 0 {
		switch x := g.r.Float64(); {
		case x < 0.2:
			faultAt, rowFault = g.intn(n), edgeValue
		case x < 0.215:
			faultAt, rowFault = g.intn(n), wrongValue
		case x < 0.22:
			faultAt, rowFault = g.intn(n), loneValue
		}
		switch x := g.r.Float64(); {
		case x < 0.02:
			g.label("names.edge")
			names[g.intn(n)] = pick(g, nameEdges)
		case x < 0.04 && n > 1:
			g.label("names.duplicate")
			j := 1 + g.intn(n-1)
			names[j] = strings.ToUpper(names[g.intn(j)])
		}
		if g.chance(0.03) {
			g.label("types.edge")
			types[g.intn(n)] = g.columnTypeEdge()
		}
	}
	nTypes, nValues := n, n
	if !plain && !big && g.chance(0.02) {
		g.label("lengths.mismatch")
		if g.chance(0.5) {
			nTypes += pick(g, []int{-1, 1})
		} else {
			nValues += pick(g, []int{-1, 1})
		}
	}
	namesValue := func() {
		if g.fault(0.008) {
			g.label("cols.type")
			g.wrongKind("array")
			return
		}
		g.quietly(big, func() {
			g.array(n, func(j int) {
				if g.fault(0.001) {
					g.label("cols.items.type")
					g.wrongKind("string")
					return
				}
				if g.fault(0.001) {
					g.label("surrogate.identifier")
					g.raw(`"c\udfff"`)
					return
				}
				g.raw(strconv.Quote(names[j]))
			})
		})
	}
	typesValue := func() {
		if g.fault(0.008) {
			g.label("cols.type")
			g.wrongKind("array")
			return
		}
		g.quietly(big, func() {
			g.array(nTypes, func(j int) {
				if g.fault(0.001) {
					g.label("cols.items.type")
					g.wrongKind("string")
					return
				}
				t := genType{spelling: "TEXT"}
				if j < n {
					t = types[j]
				}
				g.raw(strconv.Quote(t.spelling))
			})
		})
	}
	valuesValue := func() {
		if g.fault(0.008) {
			g.label("values.type")
			g.wrongKind("array")
			return
		}
		g.quietly(big, func() {
			g.array(nValues, func(j int) {
				t := genType{base: TypeString, valid: true}
				if j < n {
					t = types[j]
				}
				if g.quiet {
					g.raw(strconv.Itoa(g.intn(1000)))
					return
				}
				fault := plainValue
				if j == faultAt {
					fault = rowFault
				}
				g.value(t, fault)
			})
		})
	}
	return []member{{"col_names", namesValue}, {"col_types", typesValue}, {"col_values", valuesValue}}
}

func (g *docGen) array(n int, item func(int)) {
	g.raw("[")
	g.ws()
	for j := range n {
		if j > 0 {
			g.raw(",")
			g.ws()
		}
		item(j)
		g.ws()
	}
	g.raw("]")
}

// valueFault is what is odd about one value of a row: nothing, or it is
// at the edge of its type, of another type, or holds a lone surrogate.
type valueFault int

const (
	plainValue valueFault = iota
	edgeValue
	wrongValue
	loneValue
)

// value writes a col_values entry for a column of type t: a valid value
// or null, or one with the fault asked for.
func (g *docGen) value(t genType, fault valueFault) {
	switch {
	case fault == wrongValue:
		g.label("value.wrongType")
		g.anyValue()
		return
	case fault == loneValue && t.base != TypeJSON:
		g.label("surrogate.value.notJSON")
		g.raw(pick(g, []string{`"\ud800"`, `{"k":"\udc00"}`, `["x\ud83d"]`, `{"\udfff":1}`}))
		return
	case g.chance(0.05):
		g.raw("null")
		return
	}
	edge := fault != plainValue
	if edge {
		g.label("value." + string(t.base) + ".edge")
	}
	switch t.base {
	case TypeInt64:
		if edge {
			g.raw(pick(g, int64Edges))
			return
		}
		g.raw(strconv.FormatInt(g.r.Int64N(math.MaxInt64)>>g.intn(63)*int64(1-2*g.intn(2)), 10))
	case TypeFloat64:
		if edge {
			g.raw(pick(g, float64Edges))
			return
		}
		f := g.r.NormFloat64() * math.Pow(10, float64(g.intn(40)-20))
		g.raw(strconv.FormatFloat(f, pick(g, []byte{'g', 'e', 'f'}), -1, 64))
	case TypeNumeric, TypeBigNumeric:
		g.decimal(t, edge)
	case TypeBool:
		if edge {
			g.raw(pick(g, []string{`"true"`, "1", "0", `"false"`, "True"}))
			return
		}
		g.raw(pick(g, []string{"true", "false"}))
	case TypeString:
		n := g.intn(12)
		if t.maxLen > 0 {
			n = g.intn(t.maxLen + 1)
			if edge {
				n = t.maxLen + pick(g, []int{-1, 0, 1})
			}
		} else if edge {
			n = pick(g, []int{0, 100, 1000})
		}
		g.stringOf(max(n, 0), false)
	case TypeBytes:
		if edge {
			g.raw(pick(g, []string{`"AA="`, `"AA"`, `"A==="`, `"-_8="`, `"AA AA=="`, `""`, `"===="`, `"AAAA\n"`, `"QUJD\u0044"`, `"\u0041A=="`}))
			return
		}
		b := make([]byte, g.intn(10))
		for i := range b {
			b[i] = byte(g.intn(256))
		}
		g.raw(`"` + base64.StdEncoding.EncodeToString(b) + `"`)
	case TypeDate:
		g.raw(`"` + g.date(edge) + `"`)
	case TypeDatetime:
		sep := " "
		if g.chance(0.5) {
			sep = "T"
		}
		if edge && g.chance(0.3) {
			sep = pick(g, []string{"t", "  ", "_"})
		}
		g.raw(`"` + g.date(edge) + sep + g.clock(edge) + `"`)
	case TypeTime:
		g.raw(`"` + g.clock(edge) + `"`)
	case TypeTimestamp:
		if edge && g.chance(0.3) {
			g.raw(pick(g, timestampEdges))
			return
		}
		sep := pick(g, []string{" ", "T", "t"})
		g.raw(`"` + g.date(edge) + sep + g.clock(edge) + g.zone(edge) + `"`)
	case TypeJSON:
		if edge {
			switch x := g.intn(6); {
			case x == 0:
				g.label("surrogate.value.JSON")
				g.raw(pick(g, []string{`"\ud800"`, `{"k":"\udc00"}`, `["x\ud83d", 1]`, `{"\udfff":1}`, `{"a":{"b":"\ud800\ud800"}}`}))
			case x == 1:
				g.label("dup-key.value")
				g.raw(pick(g, []string{`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `[{"b/c~":1,"b/c~":2}]`, `{"x":{"y":1,"y":1}}`}))
			case x == 2 && g.chance(0.02):
				g.label("depth.limit")
				// The value's own nesting is what the document leaves:
				// an insert's col_values entry is at depth 5.
				depth := maxNestingDepth - 4 + pick(g, []int{-2, -1, 0, 1})
				g.raw(strings.Repeat("[", depth) + strings.Repeat("]", depth))
			case x == 3:
				g.label("dup-key.value.many")
				var b strings.Builder
				b.WriteString("{")
				n := 20 + g.intn(20)
				dup := g.intn(n + 5)
				for i := range n {
					if i > 0 {
						b.WriteString(",")
					}
					k := i
					if i == dup {
						k = 0
					}
					fmt.Fprintf(&b, `"k%d":%d`, k, i)
				}
				b.WriteString("}")
				g.raw(b.String())
			default:
				g.raw(pick(g, []string{`1e400`, `-0.0`, `"\u0000"`, `{ "a" : [ 1 , 2 ] }`, `"<&>"`, `[]`, `{}`, `""`, `"\u2028"`, `{"":null}`}))
			}
			return
		}
		g.jsonValue(3)
	}
}

var int64Edges = []string{
	"0", "-0", "1", "-1", "255", "256", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
	"-9223372036854775809", "99999999999999999999", "1.0", "1.5", "-0.0", "1e3", "1E+2", "10e-1", "1e-2", "0.1e1",
	"123456789012345678", "1234567890123456789", "-123456789012345678", "922337203685477580.7e1", "9.223372036854775807e18",
	"1e19", "0e5", "00", "01", "-", "1.", ".5", `"1"`, "true", "[1]", "1e999999999999",
}

var float64Edges = []string{
	"1e308", "1.7976931348623157e308", "1.7976931348623159e308", "1e309", "-1e309", "5e-324", "4e-324", "1e-400", "-0.0", "0",
	"123456789012345678901234567890", "1E400", "0.1", "1e21", "1e-7", "-1e-6", "123456789e300", `"1.5"`, "true", "2.5e-08",
}

var timestampEdges = []string{
	`"0001-01-01T00:00:00+00:01"`, `"0001-01-01T00:00:00-00:01"`, `"9999-12-31T23:59:59-00:01"`, `"9999-12-31T23:59:59.999999Z"`,
	`"2024-01-01T10:00:00 UTC"`, `"2024-01-01 10:00:00 +01"`, `"2024-01-01 10:00:00+0130"`, `"2024-01-01T10:00:00+24:00"`,
	`"2024-01-01T10:00:00+23:60"`, `"2024-01-01T10:00:00+5"`, `"2024-01-01T10:00:00z"`, `"2024-01-01T10:00:00.0000000Z"`,
	`"2024-01-01T10:00:00+01:00:00"`, `"2024-01-01T10:00"`, `"2024-02-30T10:00:00Z"`,
}

func (g *docGen) date(edge bool) string {
	if edge && g.chance(0.5) {
		return pick(g, []string{"2000-02-29", "1900-02-29", "2024-02-29", "2023-02-29", "0000-01-01", "0001-01-01", "9999-12-31",
			"2024-13-01", "2024-04-31", "2024-1-01", "20240101", "2024-00-10", "2024-01-32", "+2024-01-01", "2024-01-01 "})
	}
	return fmt.Sprintf("%04d-%02d-%02d", 1+g.intn(9999), 1+g.intn(12), 1+g.intn(28))
}

func (g *docGen) clock(edge bool) string {
	if edge && g.chance(0.5) {
		return pick(g, []string{"24:00:00", "23:59:60", "23:59:59.9999999", "23:59:59.999999", "00:00:00.", "00:00:00.000000",
			"1:00:00", "10:00", "10:00:00.1.2", "10:00:00.10"})
	}
	s := fmt.Sprintf("%02d:%02d:%02d", g.intn(24), g.intn(60), g.intn(60))
	if g.chance(0.4) {
		s += "." + fmt.Sprintf("%06d", g.intn(1000000))[:1+g.intn(6)]
	}
	return s
}

func (g *docGen) zone(edge bool) string {
	if edge {
		return pick(g, []string{"+24", "-23:59", "+23:59", " Z", " +01:00", "+1", "+01:0", "UTC", "+0130", "-00"})
	}
	return pick(g, []string{"", "Z", "z", "+01:00", "-08:30", "+0530", "+02", " +01:00", "-00:00"})
}

// decimal writes a NUMERIC or BIGNUMERIC value with digit counts near the
// type's limits, as a number or a string.
func (g *docGen) decimal(t genType, edge bool) {
	if edge && g.chance(0.4) {
		g.raw(pick(g, []string{`"+.5e1"`, `".5"`, `"5."`, `"."`, `"abc"`, `"1e1000000000"`, `"-0.000"`, `"1e-1000000000"`,
			`"1e38"`, `" 1"`, `"1_000"`, `"0x10"`, `"-"`, `"+"`, `"1e"`, `"1e+"`, "1e-9", "1e-10", `"NaN"`, `"Infinity"`, "-0"}))
		return
	}
	intDigits := 0
	if t.intLimit > 0 {
		intDigits = 1 + g.intn(min(t.intLimit, 12))
	}
	fracDigits := g.intn(min(t.frac, 6) + 1)
	if edge {
		intDigits = t.intLimit + pick(g, []int{-1, 0, 1})
		fracDigits = t.frac + pick(g, []int{-1, 0, 1})
	}
	var b strings.Builder
	if g.chance(0.3) {
		b.WriteByte('-')
	}
	if intDigits == 0 {
		b.WriteByte('0')
	}
	for i := range intDigits {
		if i == 0 {
			b.WriteByte(byte('1' + g.intn(9)))
			continue
		}
		b.WriteByte(byte('0' + g.intn(10)))
	}
	if fracDigits > 0 {
		b.WriteByte('.')
		for i := range fracDigits {
			if i == fracDigits-1 {
				b.WriteByte(byte('1' + g.intn(9)))
				continue
			}
			b.WriteByte(byte('0' + g.intn(10)))
		}
	}
	s := b.String()
	if g.chance(0.1) {
		s += pick(g, []string{"e0", "e1", "E-2", "e+3", "0000"})
	}
	if g.chance(0.5) {
		s = `"` + s + `"`
	}
	g.raw(s)
}

// jsonValue writes a random JSON value for a JSON column.
func (g *docGen) jsonValue(depth int) {
	kinds := 6
	if depth == 0 {
		kinds = 4
	}
	switch g.intn(kinds) {
	case 0:
		g.raw(pick(g, []string{"0", "-1.5", "1e10", "3.14159", "1E-7", "12345678901234567890"}))
	case 1:
		g.stringOf(g.intn(6), false)
	case 2:
		g.raw(pick(g, []string{"true", "false"}))
	case 3:
		g.raw("null")
	case 4:
		n := g.intn(4)
		g.raw("[")
		for i := range n {
			if i > 0 {
				g.raw(",")
			}
			g.ws()
			g.jsonValue(depth - 1)
		}
		g.raw("]")
	default:
		n := g.intn(4)
		g.raw("{")
		for i := range n {
			if i > 0 {
				g.raw(",")
			}
			g.ws()
			g.raw(`"k` + strconv.Itoa(i) + pick(g, []string{"", "é", `\n`, `\u0041`}) + `":`)
			g.jsonValue(depth - 1)
		}
		g.raw("}")
	}
}

// anyValue writes a small random JSON value of any kind.
func (g *docGen) anyValue() { g.jsonValue(2) }

// mutate changes the document byte-wise, one to three times: what comes
// out is usually not JSON, and sometimes JSON that says something else.
func (g *docGen) mutate() {
	g.label("mutated")
	const alphabet = "{}[]\",:\\ 0123456789-+.eEtrufalsn\x00\x7f"
	for range 1 + g.intn(3) {
		if len(g.out) == 0 {
			g.out = append(g.out, alphabet[g.intn(len(alphabet))])
			continue
		}
		i := g.intn(len(g.out))
		switch g.intn(7) {
		case 0:
			g.out = append(g.out[:i], g.out[i+1:]...)
		case 1:
			c := alphabet[g.intn(len(alphabet))]
			g.out = append(g.out[:i], append([]byte{c}, g.out[i:]...)...)
		case 2:
			g.out[i] = alphabet[g.intn(len(alphabet))]
		case 3:
			j := min(len(g.out), i+1+g.intn(16))
			span := append([]byte(nil), g.out[i:j]...)
			k := g.intn(len(g.out) + 1)
			g.out = append(g.out[:k], append(span, g.out[k:]...)...)
		case 4:
			g.out = g.out[:i]
		case 5:
			if i+1 < len(g.out) {
				g.out[i], g.out[i+1] = g.out[i+1], g.out[i]
			}
		default:
			// Bytes that are not UTF-8, or multibyte characters.
			bad := pick(g, []string{"\xff", "\xc3", "\xed\xa0\x80", "é", "\u2028"})
			g.out = append(g.out[:i], append([]byte(bad), g.out[i:]...)...)
		}
	}
}
