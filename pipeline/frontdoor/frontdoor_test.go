package frontdoor_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/frontdoor"
)

func entry(t *testing.T, e frontdoor.Entry) (string, []byte) {
	t.Helper()
	key, k, err := frontdoor.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	e.Keys = append(e.Keys, k)
	out, err := frontdoor.EntryYAML(e)
	if err != nil {
		t.Fatal(err)
	}
	return key, out
}

func request(header ...string) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, "/", nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

// Entries appended one after another make one valid file, and each key
// opens its own entry, by either header.
func TestAppendedEntriesLoadAndAuthenticate(t *testing.T) {
	billingKey, billing := entry(t, frontdoor.Entry{Name: "billing", Tables: []string{"orders_*", "items"}})
	opsKey, ops := entry(t, frontdoor.Entry{Name: "ops", Admin: true})
	set, err := frontdoor.Parse("backends.yaml", append(billing, ops...))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		r     *http.Request
		want  string
		admin bool
	}{
		{request("Authorization", "Bearer "+billingKey), "billing", false},
		{request("Authorization", "bearer "+billingKey), "billing", false},
		{request("X-API-Key", billingKey), "billing", false},
		{request("X-API-Key", opsKey), "ops", true},
	} {
		b, err := set.Authenticate(c.r)
		if err != nil || b.Name != c.want || b.Admin != c.admin {
			t.Errorf("%v: got %+v, %v; want %s", c.r.Header, b, err, c.want)
		}
	}
	for _, c := range []struct {
		r    *http.Request
		want error
	}{
		{request(), frontdoor.ErrNoKey},
		{request("Authorization", "Basic abc"), frontdoor.ErrMalformedKey},
		{request("Authorization", "Bearer"), frontdoor.ErrMalformedKey},
		{request("Authorization", "Bearer "+billingKey+"x"), frontdoor.ErrUnknownKey},
		{request("X-API-Key", strings.ToUpper(billingKey)), frontdoor.ErrUnknownKey},
	} {
		if _, err := set.Authenticate(c.r); err != c.want {
			t.Errorf("%v: got %v, want %v", c.r.Header, err, c.want)
		}
	}
	b := set.Backend("billing")
	if got := b.Refused([]string{"orders_eu", "items", "users", "items_x", "orders"}); strings.Join(got, ",") != "items_x,orders,users" {
		t.Errorf("refused %v", got)
	}
}

// Every problem of the file is reported at once, each with the file and
// the entry it is in.
func TestParseReportsEveryProblem(t *testing.T) {
	_, k, _ := frontdoor.NewKey()
	file := `
- name: Billing
  keys: []
  burst: 3
  tables: ["orders-*", "x*y"]
- name: shop
  keys:
    - {prefix: gk_1234, sha256: "` + k.SHA256 + `"}
    - {prefix: ` + k.Prefix + `, sha256: "` + k.SHA256 + `"}
    - {prefix: ` + k.Prefix + `, sha256: "abc"}
  rate: -1
- name: shop
  admin: true
  rate: 2
  keys: [{prefix: ` + k.Prefix + `, sha256: "` + strings.Repeat("a", 64) + `"}]
`
	_, err := frontdoor.Parse("backends.yaml", []byte(file))
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		`backends.yaml: entry 1 (Billing): name "Billing": want 1-64 of a-z, 0-9, - and _`,
		`backends.yaml: entry 1 (Billing): 0 keys: want 1 or 2`,
		`backends.yaml: entry 1 (Billing): burst needs a rate`,
		`backends.yaml: entry 1 (Billing): table "orders-*"`,
		`backends.yaml: entry 1 (Billing): table "x*y"`,
		`backends.yaml: entry 2 (shop): 3 keys`,
		`backends.yaml: entry 2 (shop): key 1: prefix "gk_1234"`,
		`backends.yaml: entry 2 (shop): key 2 (` + k.Prefix + `) is also shop's`,
		`backends.yaml: entry 2 (shop): key 3: sha256: want 64 lowercase hex digits`,
		`backends.yaml: entry 2 (shop): rate -1 must not be negative`,
		`backends.yaml: entry 3 (shop): name "shop" is already entry 2's`,
		`backends.yaml: entry 3 (shop): an admin entry opens the admin API only`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// A misspelt field is named with its line and what is allowed, beside
	// the other problems, one per line.
	_, err = frontdoor.Parse("b.yaml", []byte("- name: X\n  key: []\n  rat: 5\n"))
	for _, want := range []string{
		"b.yaml: line 2: unknown field key (want name, keys, admin, rate, burst, tables; a key: prefix, sha256)\n",
		"b.yaml: line 3: unknown field rat (want",
		`b.yaml: entry 1 (X): name "X": want`,
		"b.yaml: entry 1 (X): 0 keys",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("misspelt fields: missing %q in:\n%v", want, err)
		}
	}
	// JSON is YAML too; an empty file is no backends.
	if _, err := frontdoor.Parse("b.json", []byte(`[{"name":"x","keys":[{"prefix":"`+k.Prefix+`","sha256":"`+k.SHA256+`"}]}]`)); err != nil {
		t.Errorf("JSON: %v", err)
	}
	if _, err := frontdoor.Parse("empty.yaml", nil); err != nil {
		t.Errorf("empty: %v", err)
	}
}

// The bucket holds burst tokens and refills at rate; a refusal says how
// long until the next token.
func TestQuota(t *testing.T) {
	_, out := entry(t, frontdoor.Entry{Name: "b", Rate: 2, Burst: 3})
	set, err := frontdoor.Parse("f", out)
	if err != nil {
		t.Fatal(err)
	}
	b := set.Backend("b")
	now := time.Now()
	for i := range 3 {
		if v := b.Take(now); !v.Allowed || v.Remaining != 2-i {
			t.Fatalf("take %d: %+v", i, v)
		}
	}
	v := b.Take(now)
	if v.Allowed || v.Remaining != 0 || v.Wait <= 0 || v.Wait > 500*time.Millisecond {
		t.Fatalf("over the burst: %+v", v)
	}
	if !b.Take(now.Add(500 * time.Millisecond)).Allowed {
		t.Fatal("a token after 1/rate s")
	}
	if b.Window() != 2 {
		t.Errorf("window %d, want ceil(3/2)", b.Window())
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	key, k, _ := frontdoor.NewKey()
	out, _ := frontdoor.EntryYAML(frontdoor.Entry{Name: "billing", Keys: []frontdoor.Key{k}})
	set, err := frontdoor.Parse("f", out)
	if err != nil {
		b.Fatal(err)
	}
	r := request("Authorization", "Bearer "+key)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := set.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}
