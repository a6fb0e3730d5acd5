package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// canonicalViaEncoder is Canonical as it is defined: encoding/json's
// Encoder without HTML escaping, on p.Wire(). Canonical writes the same
// bytes by hand; the differential tests compare the two.
func canonicalViaEncoder(p Payload) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p.Wire()); err != nil {
		return nil
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// agreement runs the fast path and the checked path (the definition) on
// body and describes how they disagree, "" when they do not. accepted is
// the checked path's verdict.
func agreement(body []byte) (accepted bool, disagreement string) {
	var fast Payload
	fastOK := false
	if utf8.Valid(body) { // Parse runs the fast path only on UTF-8
		fast, fastOK = parseFast(body)
	}
	want, err := parseChecked(body)
	switch {
	case fastOK && err != nil:
		return false, fmt.Sprintf("the fast path accepted what the checked path refuses with %v", err)
	case !fastOK && err == nil:
		return true, "the fast path refused what the checked path accepts"
	case err != nil:
		return false, ""
	}
	if !reflect.DeepEqual(fast, want) {
		return true, fmt.Sprintf("the paths accept different payloads:\nfast    %#v\nchecked %#v", fast, want)
	}
	if got, def := fast.Canonical(), canonicalViaEncoder(want); !bytes.Equal(got, def) {
		return true, fmt.Sprintf("Canonical differs from the Encoder's:\n%s\n%s", got, def)
	}
	return true, ""
}

// differentialCorpus is every document the package's tests and fuzz seeds
// hold, and the fuzz corpora under testdata/fuzz.
func differentialCorpus(t testing.TB) [][]byte {
	valid := insertJSON(`"t"`, `["a"]`, `["TEXT"]`, `["x"]`)
	docs := []string{
		examplePayload, warmGood, warmBad, warmInsert, warmDelete,
		`{"activities":[{"operation":"upsert"}]}`, `[[[[`, `{}`, `[]`, `null`, `{"activities":[]}`, `{"activities":{}}`,
		`{"activities":[],"activities":[]`, `{"activities":[],"\ud800":1}`, `{"activities":[],"\u0061ctivities":[` + valid + `]}`,
		payloadJSON(valid, valid, insertJSON(`"t"`, `["j"]`, `["JSON"]`, `[{"a":{"a":1},"b":[{"a":1},{"a":2}]}]`)),
		payloadJSON(insertJSON(`"t"`, `["j"]`, `["JSON"]`, `[{"\ud800":"\udc00"}]`)),
		payloadJSON(deleteJSON(`"t"`, `["a","j"]`, `["TEXT","JSON"]`, `["x","\ud800"]`)),
		payloadJSON(insertJSON(`"t"`, `["a","b"]`, `["TEXT","TEXT"]`, `["\ud83d\ude00","\uD83D\uDE00x"]`)),
		payloadJSON(insertJSON(`"t"`, `["a","j"]`, `["TEXT","TEXT"]`, `["\ud800",{"k":1,"k":2}]`)),
		payloadJSON(insertJSON(`"t"`, `["i","n","ts","s","j","b"]`, `["INTEGER","DECIMAL(5,2)","TIMESTAMP","VARCHAR(3)","JSON","BLOB"]`,
			`[1.0, 1.50, "2024-01-01 12:00:00+02:00", "a<b", {"k": "<v>"}, "AA=="]`)),
		payloadJSON(insertJSON(`"t"`, `["i","f","n","bn","b","s","v","d","dt","tm","ts","j","by","nul"]`,
			`["BIGINT","DOUBLE","NUMERIC","DECIMAL(40,10)","BOOLEAN","LONGTEXT","CHAR(4)","DATE","DATETIME","TIME","TIMESTAMP","JSON","BYTES","JSON"]`,
			`[-9223372036854775808, -0.0, "-0.000000001", "123456789012345678901234567890.0123456789", false, "\u2028<&>\"\\", "ñaña",
			  "2000-02-29", "1999-12-31T23:59:59.999999", "12:00:00.10", "1970-01-01T00:00:00.000001-00:01",
			  [{"a":"\u003c"}, 1e400, "\ud800"], "", null]`)),
		payloadJSON(deleteJSON(`"t"`, `["f"]`, `["FLOAT"]`, `[1e-320]`), deleteJSON(`"u"`, `["f"]`, `["FLOAT"]`, `[123456789e300]`)),
		`{"activities":[` + valid + `],"ordering_key":"` + strings.Repeat("é", MaxOrderingKeyLen) + `"}`,
		`{"activities":[` + valid + `],"ordering_key":"` + strings.Repeat("é", MaxOrderingKeyLen+1) + `"}`,
		`{"activities":[` + valid + `],"ordering_key":""}`,
		`{"activities":[` + valid + `],"ordering_key":null}`,
		payloadJSON(manyTables(MaxTables)...), payloadJSON(manyTables(MaxTables + 1)...),
		payloadJSON(slicesRepeat(valid, MaxActivities)...), payloadJSON(slicesRepeat(valid, MaxActivities+1)...),
		payloadJSON(insertJSON(`"t"`, manyNames(40, "C5"), repeatJSON(`"INTEGER"`, 41), repeatJSON(`1`, 41))),
		payloadJSON(insertJSON(`"t"`, manyNames(40, "c40"), repeatJSON(`"INTEGER"`, 41), repeatJSON(`1`, 41))),
		payloadJSON(insertJSON(`"t"`, manyNames(9999, "c9999"), repeatJSON(`"INTEGER"`, 10000), repeatJSON(`1`, 10000))),
		payloadJSON(insertJSON(`"t"`, manyNames(10000, "c10000"), repeatJSON(`"INTEGER"`, 10001), repeatJSON(`1`, 10001))),
		payloadJSON(insertJSON(`"t"`, `["j"]`, `["JSON"]`, "["+strings.Repeat("[", 9996)+strings.Repeat("]", 9996)+"]")),
		payloadJSON(insertJSON(`"t"`, `["j"]`, `["JSON"]`, "["+strings.Repeat("[", 9997)+strings.Repeat("]", 9997)+"]")),
		payloadJSON(deleteJSON(`"t"`, `["j"]`, `["JSON"]`, "["+strings.Repeat("[", 9995)+strings.Repeat("]", 9995)+"]")),
		payloadJSON(deleteJSON(`"t"`, `["j"]`, `["JSON"]`, "["+strings.Repeat("[", 9996)+strings.Repeat("]", 9996)+"]")),
		" \t\r\n" + examplePayload + " \n", "\xef\xbb\xbf{}", `{"activities":[]}x`, "",
	}
	docs = append(docs, concurrencyDocs...)
	for _, seed := range [][2]string{
		{"INTEGER", "1e3"}, {"FLOAT", "-0.0"}, {"DECIMAL(10,2)", `"-0012.50"`}, {"BIGNUMERIC", "1e-38"},
		{"NUMERIC", `"+.5e1"`}, {"TIMESTAMP", `"2024-01-01 10:00:00.5-08:30"`}, {"DATETIME", `"2024-02-29T10:11:12.000100"`},
		{"TIME", `"23:59:59.5"`}, {"DATE", `"2000-02-29"`}, {"JSON", `{"a":[1,"\u003c",null]}`}, {"BLOB", `"AA=="`},
		{"VARCHAR(3)", `"ñañ"`}, {"TEXT", `"\ud800"`}, {"BOOL", "true"}, {"JSON", "null"},
	} {
		typ, _ := json.Marshal(seed[0])
		docs = append(docs, payloadJSON(
			insertJSON(`"t"`, `["c"]`, "["+string(typ)+"]", "["+seed[1]+"]"),
			deleteJSON(`"t"`, `["c"]`, "["+string(typ)+"]", "["+seed[1]+"]"),
		))
	}
	out := make([][]byte, 0, len(docs))
	for _, d := range docs {
		out = append(out, []byte(d))
	}
	// The fuzz corpora: go test -fuzz writes what it finds here.
	for _, target := range []string{"FuzzParse", "FuzzParseValue", "FuzzDecodeForSchema", "FuzzFastPathAgrees"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		for _, f := range files {
			if body, ok := readCorpusBytes(t, f); ok {
				out = append(out, body)
			}
		}
	}
	return out
}

// readCorpusBytes reads the first []byte of a "go test fuzz v1" file.
func readCorpusBytes(t testing.TB, path string) ([]byte, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		if v, ok := strings.CutPrefix(line, "[]byte("); ok {
			s, err := strconv.Unquote(strings.TrimSuffix(v, ")"))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return []byte(s), true
		}
	}
	return nil, false
}

// TestFastPathAgreesOnTheCorpus holds Parse to parseChecked, the gate as
// documented, on every document the tests know: the same Payload, or the
// same error, to the message and the JSON Pointer.
func TestFastPathAgreesOnTheCorpus(t *testing.T) {
	t.Parallel() // CPU-bound and pure: it runs beside the other slow ones
	accepted := 0
	for i, body := range differentialCorpus(t) {
		ok, problem := agreement(body)
		if problem != "" {
			t.Errorf("corpus document %d %.300q: %s", i, body, problem)
			continue
		}
		if ok {
			accepted++
		}
		got, gotErr := Parse(body)
		want, wantErr := parseChecked(body)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotErr, wantErr) {
			t.Errorf("corpus document %d %.300q: Parse = %v, %v; parseChecked = %v, %v", i, body, got, gotErr, want, wantErr)
		}
	}
	if accepted == 0 {
		t.Fatal("no corpus document was accepted: the comparison proves nothing")
	}
}

// differentialDocs is how many generated documents the differential test
// checks: GATEKEEPER_DIFF_DOCS, which .ci/run sets to a million (a few
// minutes on two cores, without -race), else a number that keeps go test
// -race ./... quick.
func differentialDocs(t *testing.T) int {
	if s := os.Getenv("GATEKEEPER_DIFF_DOCS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("GATEKEEPER_DIFF_DOCS=%q is not a positive number", s)
		}
		return n
	}
	if testing.Short() || raceEnabled {
		return 3000
	}
	return 20000
}

// differentialSeed picks the generator's seed: GATEKEEPER_DIFF_SEED, or a
// fixed one, so that a run is repeatable and a failure names its document.
func differentialSeed(t *testing.T) uint64 {
	s := os.Getenv("GATEKEEPER_DIFF_SEED")
	if s == "" {
		return 20260901
	}
	seed, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("GATEKEEPER_DIFF_SEED=%q: %v", s, err)
	}
	return seed
}

// requiredLabels are the edges the generator must have crossed in a run of
// at least labelRunDocs documents; each names a schema keyword, a strict
// decoder rule or a semantic rule (see docGen).
var requiredLabels = []string{
	"root.type", "root.required", "root.propertyNames", "dup-key.root",
	"activities.type", "activities.minItems", "activities.max", "activities.maxItems",
	"activity.type", "activity.required", "activity.propertyNames", "activity.otherBranch", "dup-key.activity",
	"operation.enum", "operation.type", "table.type", "table.minLength", "table.edge",
	"ordering_key.type", "ordering_key.minLength", "ordering_key.max", "ordering_key.maxLength",
	"row.type", "row.required", "row.propertyNames", "dup-key.row",
	"cols.type", "cols.items.type", "cols.minItems", "cols.max", "cols.maxItems", "cols.many", "values.type",
	"key.escaped", "surrogate.key", "surrogate.identifier", "surrogate.value.JSON", "surrogate.value.notJSON",
	"dup-key.value", "dup-key.value.many", "depth.limit", "ws", "ws.invalid", "mutated",
	"names.edge", "names.duplicate", "types.edge", "lengths.mismatch", "tables.max", "tables.over", "value.wrongType",
	"value.INT64.edge", "value.FLOAT64.edge", "value.NUMERIC.edge", "value.BIGNUMERIC.edge", "value.BOOL.edge",
	"value.STRING.edge", "value.BYTES.edge", "value.DATE.edge", "value.DATETIME.edge", "value.TIME.edge",
	"value.TIMESTAMP.edge", "value.JSON.edge",
}

const labelRunDocs = 100_000

// TestFastPathAgreesWithSchema is the differential test: on generated
// documents near every boundary (docGen), and byte-wise mutations of them,
// the fast path accepts exactly what schema.json and the semantic rules
// (parseChecked) accept, with the same Payload and the same canonical
// bytes. It spreads the documents over every core.
func TestFastPathAgreesWithSchema(t *testing.T) {
	t.Parallel() // CPU-bound and pure: it runs beside the other slow ones
	n, seed := differentialDocs(t), differentialSeed(t)
	workers := runtime.GOMAXPROCS(0)
	var (
		next, accepted, mutatedAccepted atomic.Int64
		failures                        atomic.Int32
		mu                              sync.Mutex
		labels                          = map[string]int{}
	)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[string]int{}
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || failures.Load() >= 5 {
					break
				}
				body, docLabels := generateDoc(seed, uint64(i))
				ok, problem := agreement(body)
				if problem != "" {
					failures.Add(1)
					t.Errorf("generated document %d (GATEKEEPER_DIFF_SEED=%d), %d bytes, labels %v: %s\nbody: %.4000q",
						i, seed, len(body), docLabels, problem, body)
				}
				if ok {
					accepted.Add(1)
					if docLabels["mutated"] > 0 {
						mutatedAccepted.Add(1)
					}
				}
				for l, c := range docLabels {
					local[l] += c
				}
			}
			mu.Lock()
			for l, c := range local {
				labels[l] += c
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	keys := make([]string, 0, len(labels))
	for l := range labels {
		keys = append(keys, l)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, l := range keys {
		fmt.Fprintf(&b, " %s=%d", l, labels[l])
	}
	t.Logf("%d documents (seed %d) in %v on %d workers: %d accepted (%d of them mutated), %d refused; edges crossed:%s",
		n, seed, elapsed.Round(time.Millisecond), workers, accepted.Load(), mutatedAccepted.Load(), int64(n)-accepted.Load(), b.String())

	// A generator that stopped producing valid documents, or invalid ones,
	// would make the comparison vacuous.
	if share := float64(accepted.Load()) / float64(n); share < 0.2 || share > 0.8 {
		t.Errorf("%.0f%% of the documents were accepted; the generator should keep it between 20%% and 80%%", 100*share)
	}
	if n >= labelRunDocs {
		for _, l := range requiredLabels {
			if labels[l] == 0 {
				t.Errorf("no document crossed the edge %q; the generator no longer reaches it", l)
			}
		}
	}
}

// TestDifferentialGeneratorCoversTheEdges checks, without parsing, that a
// run of labelRunDocs documents crosses every required edge: the
// differential test's default run is too short to see the rare ones, and
// this keeps the generator honest in every go test run.
func TestDifferentialGeneratorCoversTheEdges(t *testing.T) {
	if testing.Short() || raceEnabled {
		// It is deterministic and single-threaded: the race detector
		// would only make it slow. .ci/run runs it without -race.
		t.Skip("generates 100,000 documents")
	}
	seed := differentialSeed(t)
	labels := map[string]int{}
	for i := range uint64(labelRunDocs) {
		_, docLabels := generateDoc(seed, i)
		for l, c := range docLabels {
			labels[l] += c
		}
	}
	for _, l := range requiredLabels {
		if labels[l] == 0 {
			t.Errorf("no document crossed the edge %q", l)
		}
	}
	for l := range labels {
		if !slices.Contains(requiredLabels, l) {
			t.Errorf("the generator crosses edge %q, which requiredLabels does not list", l)
		}
	}
}

// FuzzFastPathAgrees is the differential property for go test -fuzz: on any
// body, the fast path and the checked path agree. The seeds are the corpus
// and a spread of generated documents.
func FuzzFastPathAgrees(f *testing.F) {
	for _, body := range differentialCorpus(f) {
		f.Add(body)
	}
	for i := range uint64(200) {
		body, _ := generateDoc(1, i)
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, problem := agreement(body); problem != "" {
			t.Fatalf("%.2000q: %s", body, problem)
		}
	})
}

// TestCanonicalMatchesTheEncoder compares Canonical with its definition on
// payloads Parse never produces but a caller may build: the Encoder's
// output for odd values is what Canonical must copy.
func TestCanonicalMatchesTheEncoder(t *testing.T) {
	str, js := ColumnType{Base: TypeString}, ColumnType{Base: TypeJSON}
	type custom struct{ A int }
	payloads := []Payload{
		{},
		{Activities: []Activity{}},
		{Activities: []Activity{{Op: OpInsert, Table: "t"}, {Op: OpDelete, Table: "u"}, {Op: "", Table: ""}, {Op: "upsert", Table: "x"}}},
		{OrderingKey: "k\u2028\"<>&\x01", Activities: []Activity{{Op: OpInsert, Table: "t\xff", Columns: []Column{
			{Name: "a\x7f\u2029", Type: str, Value: "\x00\x1f\b\f\n\r\t\\\"/<>&\u2028\u2029\xff\xc3é😀"},
			{Name: "f", Type: ColumnType{Base: TypeFloat64}, Value: math.NaN()},
			{Name: "g", Type: ColumnType{Base: TypeFloat64}, Value: math.Inf(-1)},
			{Name: "h", Type: ColumnType{Base: TypeFloat64}, Value: 1e21},
			{Name: "i", Type: ColumnType{Base: TypeFloat64}, Value: 1e-7},
			{Name: "i2", Type: ColumnType{Base: TypeFloat64}, Value: -0.000001},
			{Name: "i3", Type: ColumnType{Base: TypeFloat64}, Value: 123456789e300},
			{Name: "i4", Type: ColumnType{Base: TypeFloat64}, Value: math.Copysign(0, -1)},
			{Name: "j", Type: js, Value: `{ "a" : [1, 2] , "b":"<\u2028>" }`},
			{Name: "k", Type: js, Value: `not json <>`},
			{Name: "l", Type: ColumnType{Base: TypeBytes}, Value: []byte{0, 0xff, 0xfe}},
			{Name: "m", Type: ColumnType{Base: TypeInt64}, Value: int64(math.MinInt64)},
			{Name: "n", Type: ColumnType{Base: TypeInt64}, Value: 7},
			{Name: "o", Type: ColumnType{Base: TypeBool}, Value: true},
			{Name: "p", Type: str, Value: custom{A: 1}},
			{Name: "q", Type: str, Value: json.RawMessage(` { "x" : "<" } `)},
			{Name: "r", Type: str, Value: json.RawMessage(`{bad`)},
			{Name: "s", Type: ColumnType{Base: TypeString, MaxLength: 3}, Value: nil},
			{Name: "u", Type: ColumnType{Base: TypeNumeric, Precision: 10, Scale: 2}, Value: "1.5"},
			{Name: "v", Type: ColumnType{Base: TypeFloat64}, Value: float32(0.1)},
			{Name: "w", Type: str, Value: []string{"<"}},
			{Name: "x", Type: js, Value: 12},
		}}}},
	}
	for i, p := range payloads {
		if got, want := p.Canonical(), canonicalViaEncoder(p); !bytes.Equal(got, want) {
			t.Errorf("payload %d: Canonical\n%s\nEncoder\n%s", i, got, want)
		}
	}
}

// TestFastPathIsOn guards the benchmark and the differential test against
// a fast path that silently turned itself off: both would still pass.
func TestFastPathIsOn(t *testing.T) {
	if _, err := loadFastSchema(); err != nil {
		t.Fatalf("the fast path is off: %v", err)
	}
	if _, ok := parseFast([]byte(examplePayload)); !ok {
		t.Fatal("the fast path refuses the example payload")
	}
}

// TestParseFastHoldsNoBody checks that the fast path copies what it keeps:
// a caller may reuse the body's buffer once Parse returns.
func TestParseFastHoldsNoBody(t *testing.T) {
	body := []byte(`{"activities":[` + insertJSON(`"t\u0061"`, `["a","b"]`, `["TEXT","JSON"]`, `["x",{"k":"v"}]`) +
		`],"ordering_key":"key"}`)
	p, ok := parseFast(body)
	if !ok {
		t.Fatalf("refused %s", body)
	}
	want, err := parseChecked(bytes.Clone(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'X'
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("after the body changed: %+v, want %+v", p, want)
	}
}

// TestParseErrorsUnchanged spot-checks that a refused payload gets the
// checked path's error itself, not a summary from the fast path.
func TestParseErrorsUnchanged(t *testing.T) {
	for _, body := range []string{`{`, `{"a":1,"a":2}`, payloadJSON(`{"operation":"merge"}`), payloadJSON(insertJSON(`"t"`, `["a"]`, `["INTEGER"]`, `["x"]`))} {
		_, got := Parse([]byte(body))
		_, want := parseChecked([]byte(body))
		if got == nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%s) = %v, want %v", body, got, want)
		}
		var se *SyntaxError
		var ve *ValidationError
		if !errors.As(got, &se) && !errors.As(got, &ve) {
			t.Errorf("Parse(%s) = %T", body, got)
		}
	}
}
