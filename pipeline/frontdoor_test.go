package pipeline_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/pipeline/frontdoor"
	"github.com/gatekeeper/gatekeeper/pipeline/operator"
)

// keyFile writes a backends file of the given entries, each with a fresh
// key, and returns the keys by entry name.
func keyFile(t *testing.T, path string, entries ...frontdoor.Entry) map[string]string {
	t.Helper()
	keys := map[string]string{}
	var file []byte
	for _, e := range entries {
		key, k, err := frontdoor.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		e.Keys = []frontdoor.Key{k}
		out, err := frontdoor.EntryYAML(e)
		if err != nil {
			t.Fatal(err)
		}
		file = append(file, out...)
		keys[e.Name] = key
	}
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return keys
}

func ordersPayload(table string) string {
	return `{"activities":[{"operation":"insert","table":"` + table + `","col_names":["n"],"col_types":["INTEGER"],"col_values":[1]}]}`
}

// request sends one request with headers as pairs and returns the status,
// the headers and the raw body.
func request(t *testing.T, method, url, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

// Every answer of the front door, in one table: the ingestion API, the
// status API and the admin API, with the headers and bodies clients see.
// Not in parallel: the quota cases need three requests within a second.
func TestFrontDoor(t *testing.T) {
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.BackendsFile = filepath.Join(t.TempDir(), "backends.yaml")
	keys := keyFile(t, cfg.BackendsFile,
		frontdoor.Entry{Name: "billing", Tables: []string{"orders_*", "typed"}},
		frontdoor.Entry{Name: "shop", Rate: 1, Burst: 2},
		frontdoor.Entry{Name: "ops", Admin: true})
	r := startService(t, cfg)
	admin := "http://" + r.svc.AdminAddr().String()
	bearer := func(name string) []string { return []string{"Authorization", "Bearer " + keys[name]} }
	before := scrape(t, r.base)

	// An accepted payload of billing's, for the status cases.
	code, accepted, _ := post(t, r.base, "application/json", ordersPayload("orders_eu"), bearer("billing")...)
	if code != 200 {
		t.Fatalf("billing's payload: %d %+v", code, accepted)
	}
	waitApplied(t, r.svc.Store, accepted.ID, 15*time.Second)

	type want struct {
		code    int
		message string   // the ingestion body's message, when the route is the ingestion API
		problem string   // a substring of the first problem, or of the admin API's error
		headers []string // pairs that must be exact
	}
	for _, c := range []struct {
		name, method, url, body string
		header                  []string
		want                    want
	}{
		{"no key", "POST", r.base + pipeline.IngestPath, ordersPayload("orders"), nil,
			want{401, "Unauthorized", "missing API key", []string{"WWW-Authenticate", "Bearer"}}},
		{"wrong key", "POST", r.base + pipeline.IngestPath, ordersPayload("orders"), []string{"Authorization", "Bearer gk_00000000_nope"},
			want{401, "Unauthorized", "unknown API key", []string{"WWW-Authenticate", "Bearer"}}},
		{"malformed header", "POST", r.base + pipeline.IngestPath, ordersPayload("orders"), []string{"Authorization", "Basic " + keys["billing"]},
			want{401, "Unauthorized", "malformed Authorization header", []string{"WWW-Authenticate", "Bearer"}}},
		{"X-API-Key", "POST", r.base + pipeline.IngestPath, ordersPayload("orders_us"), []string{"X-API-Key", keys["billing"]},
			want{200, "Valid Schema", "", []string{"RateLimit", "", "RateLimit-Policy", ""}}},
		{"table not allowed", "POST", r.base + pipeline.IngestPath,
			`{"activities":[{"operation":"insert","table":"orders_eu","col_names":["n"],"col_types":["INTEGER"],"col_values":[1]},` +
				`{"operation":"insert","table":"users","col_names":["n"],"col_types":["INTEGER"],"col_values":[1]}]}`, bearer("billing"),
			want{403, "Forbidden", `backend billing may not write table "users"`, nil}},
		{"admin key posts", "POST", r.base + pipeline.IngestPath, ordersPayload("orders"), bearer("ops"),
			want{403, "Forbidden", "an admin key opens the admin API only", nil}},
		{"quota 1/2", "POST", r.base + pipeline.IngestPath, ordersPayload("shop_a"), bearer("shop"), want{200, "Valid Schema", "", []string{
			"RateLimit-Policy", `"default";q=2;w=2`, "RateLimit", `"default";r=1;t=1`}}},
		{"quota 2/2", "POST", r.base + pipeline.IngestPath, ordersPayload("shop_a"), bearer("shop"), want{200, "Valid Schema", "", nil}},
		{"over quota", "POST", r.base + pipeline.IngestPath, ordersPayload("shop_a"), bearer("shop"),
			want{429, "Too Many Requests", "backend shop is over its quota of 1 payloads/s (burst 2); retry after 1 s", []string{
				"Retry-After", "1", "RateLimit-Policy", `"default";q=2;w=2`, "RateLimit", `"default";r=0;t=1`}}},
		{"own status", "GET", r.base + "/api/activities/" + accepted.ID, "", bearer("billing"), want{200, "", "", nil}},
		{"another's status", "GET", r.base + "/api/activities/" + accepted.ID, "", bearer("shop"), want{404, "", "", nil}},
		{"status without key", "GET", r.base + "/api/activities/" + accepted.ID, "", nil,
			want{401, "", "missing API key", []string{"WWW-Authenticate", "Bearer"}}},
		{"status, admin key", "GET", r.base + "/api/activities/" + accepted.ID, "", bearer("ops"), want{200, "", "", nil}},
		{"admin API, backend key", "GET", admin + operator.AdminPoisonPath, "", bearer("billing"),
			want{403, "", "it needs an admin key", nil}},
		{"admin API, no key", "GET", admin + operator.AdminPoisonPath, "", nil,
			want{401, "", "missing API key", []string{"WWW-Authenticate", "Bearer"}}},
		{"admin API, wrong key", "GET", admin + operator.AdminPoisonPath, "", []string{"X-API-Key", "gk_12345678_x"},
			want{401, "", "unknown API key", nil}},
		{"admin API, admin key", "GET", admin + operator.AdminPoisonPath, "", bearer("ops"), want{200, "", "", nil}},
		{"admin status, backend key", "GET", admin + "/api/activities/" + accepted.ID, "", bearer("billing"), want{403, "", "admin key", nil}},
		{"admin page needs no key", "GET", admin + operator.AdminPagePath, "", nil, want{200, "", "", nil}},
		{"profiles, no key", "GET", admin + operator.PprofPath + "heap", "", nil,
			want{401, "", "missing API key", []string{"WWW-Authenticate", "Bearer"}}},
		{"profiles, backend key", "GET", admin + operator.PprofPath, "", bearer("billing"), want{403, "", "admin key", nil}},
		{"profiles, admin key", "GET", admin + operator.PprofPath + "goroutine?debug=1", "", bearer("ops"), want{200, "", "goroutine profile: total", nil}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, h, raw := request(t, c.method, c.url, c.body, c.header...)
			if code != c.want.code {
				t.Fatalf("status %d, want %d: %s", code, c.want.code, raw)
			}
			for i := 0; i+1 < len(c.want.headers); i += 2 {
				if got := h.Get(c.want.headers[i]); got != c.want.headers[i+1] {
					t.Errorf("%s: %q, want %q", c.want.headers[i], got, c.want.headers[i+1])
				}
			}
			switch {
			case c.want.message != "":
				var resp edge.Response
				if err := json.Unmarshal(raw, &resp); err != nil {
					t.Fatalf("not the ingestion body: %s", raw)
				}
				if resp.Status != code || resp.Message != c.want.message {
					t.Errorf("body %s, want status %d and message %q", raw, code, c.want.message)
				}
				if c.want.problem != "" && (len(resp.Error) == 0 || !strings.Contains(resp.Error[0].Message, c.want.problem)) {
					t.Errorf("problems %+v, want %q", resp.Error, c.want.problem)
				}
			case c.want.problem != "":
				if !strings.Contains(string(raw), c.want.problem) {
					t.Errorf("body %s, want %q", raw, c.want.problem)
				}
			}
		})
	}
	// Nothing refused was published: two of billing's and two of shop's.
	after := scrape(t, r.base)
	for series, delta := range map[string]float64{
		`gatekeeper_payloads_total{backend="billing",outcome="accepted"}`:                      2,
		`gatekeeper_payloads_total{backend="shop",outcome="accepted"}`:                         2,
		`gatekeeper_payloads_total{backend="",outcome="accepted"}`:                             0,
		`gatekeeper_payloads_total{backend="",outcome="unauthenticated"}`:                      3,
		`gatekeeper_payloads_total{backend="billing",outcome="forbidden"}`:                     1,
		`gatekeeper_payloads_total{backend="ops",outcome="forbidden"}`:                         1,
		`gatekeeper_payloads_total{backend="shop",outcome="throttled"}`:                        1,
		`gatekeeper_http_requests_total{backend="shop",code="429",route="/api/activities"}`:    1,
		`gatekeeper_http_requests_total{backend="",code="401",route="/api/activities"}`:        3,
		`gatekeeper_http_requests_total{backend="billing",code="200",route="/api/activities"}`: 2,
	} {
		if got := after[series] - before[series]; got != delta {
			t.Errorf("%s moved by %v, want %v", series, got, delta)
		}
	}
}

// A payload's backend is on its applied event and on its poison message,
// and the poison filters select by it.
func TestBackendTravelsWithThePayload(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.BackendsFile = filepath.Join(t.TempDir(), "backends.yaml")
	keys := keyFile(t, cfg.BackendsFile, frontdoor.Entry{Name: "billing"}, frontdoor.Entry{Name: "shop"}, frontdoor.Entry{Name: "ops", Admin: true})
	r := startService(t, cfg)
	applied := r.watch(t, cfg.AppliedTopicID)
	code, resp, _ := post(t, r.base, "application/json", typedTable, "X-API-Key", keys["billing"])
	if code != 200 {
		t.Fatalf("post: %d", code)
	}
	select {
	case m := <-applied:
		var ev struct {
			PayloadID string `json:"payload_id"`
			Backend   string `json:"backend"`
		}
		_ = json.Unmarshal(m.Data, &ev)
		if ev.PayloadID != resp.ID || ev.Backend != "billing" || m.Attributes["backend"] != "billing" {
			t.Errorf("applied event %s, attributes %v: want billing's", m.Data, m.Attributes)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no applied event")
	}
	// A type conflict from each backend is poisoned with its backend.
	ids := map[string]string{}
	for _, b := range []string{"billing", "shop"} {
		code, resp, _ := post(t, r.base, "application/json", typeConflict, "X-API-Key", keys[b])
		if code != 200 {
			t.Fatalf("%s: %d", b, code)
		}
		ids[b] = resp.ID
	}
	admin := "http://" + r.svc.AdminAddr().String() + operator.AdminPoisonPath
	list := func(query string) []string {
		code, _, raw := request(t, "GET", admin+query, "", "X-API-Key", keys["ops"])
		var out struct {
			Items []struct {
				ID string `json:"payload_id"`
			} `json:"items"`
		}
		if code != 200 || json.Unmarshal(raw, &out) != nil {
			t.Fatalf("list %s: %d %s", query, code, raw)
		}
		var got []string
		for _, it := range out.Items {
			got = append(got, it.ID)
		}
		return got
	}
	if !eventually(30*time.Second, func() bool { return len(list("")) == 2 }) {
		t.Fatalf("the poison index holds %v, want 2", list(""))
	}
	for b, id := range ids {
		if got := list("?backend=" + b); len(got) != 1 || got[0] != id {
			t.Errorf("backend=%s lists %v, want %s", b, got, id)
		}
		code, _, raw := request(t, "GET", admin+"/"+id, "", "X-API-Key", keys["ops"])
		if code != 200 || !strings.Contains(string(raw), `"backend":"`+b+`"`) {
			t.Errorf("show %s: %d %s, want the backend attribute %s", id, code, raw, b)
		}
		// The poisoned payload's status is its backend's alone, read from
		// the index's attributes.
		if code, _, raw := request(t, "GET", r.base+"/api/activities/"+id, "", "X-API-Key", keys[b]); code != 200 || !strings.Contains(string(raw), `"poisoned"`) {
			t.Errorf("own poisoned status: %d %s", code, raw)
		}
	}
	if code, _, _ := request(t, "GET", r.base+"/api/activities/"+ids["billing"], "", "X-API-Key", keys["shop"]); code != 404 {
		t.Errorf("shop reads billing's poisoned status: %d, want 404", code)
	}
}

// Past MAX_IN_FLIGHT_PUBLISHES the gate sheds: 503 with Retry-After at
// once, instead of a queue. pstest holds the one publish let through until
// the test answers it.
func TestLoadShedding(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.MaxInFlightPublishes = 1
	r := startService(t, cfg)
	before := scrape(t, r.base)
	ps := r.svc.PubSub.Embedded.PSTest()
	ps.SetAutoPublishResponse(false)
	const n = 5
	type answer struct {
		code int
		resp edge.Response
		h    http.Header
	}
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			code, resp, h := post(t, r.base, "application/json", typedTable)
			answers <- answer{code, resp, h}
		})
	}
	// n-1 are shed while one publish is held.
	for range n - 1 {
		select {
		case a := <-answers:
			if a.code != 503 || a.h.Get("Retry-After") != "1" || a.resp.Message != "Service Unavailable" ||
				len(a.resp.Error) == 0 || !strings.Contains(a.resp.Error[0].Message, "too many payloads are being published at once") {
				t.Errorf("shed: %d %+v %v", a.code, a.resp, a.h)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("fewer than n-1 were shed while a publish was held")
		}
	}
	// The held publish fails: its client gets 503 too, and nothing waits
	// to be applied.
	ps.AddPublishResponse(&pubsubpb.PublishResponse{}, status.Error(codes.InvalidArgument, "held by the test"))
	wg.Wait()
	ps.SetAutoPublishResponse(true)
	if a := <-answers; a.code != 503 {
		t.Errorf("the held publish: %d", a.code)
	}
	after := scrape(t, r.base)
	if got := after[`gatekeeper_payloads_total{backend="",outcome="shed"}`] - before[`gatekeeper_payloads_total{backend="",outcome="shed"}`]; got != n-1 {
		t.Errorf("shed counted %v, want %d", got, n-1)
	}
	if code, _, _ := post(t, r.base, "application/json", typedTable); code != 200 {
		t.Errorf("after the shed: %d", code)
	}
}

// Secure by default: the emulator without keys and without AUTH=none
// does not start, and says how to configure keys.
func TestEmulatorWithoutKeysRefusesToStart(t *testing.T) {
	t.Parallel()
	cfg := pipeline.DefaultConfig()
	cfg.PubSubMode, cfg.EmulatorHost = pipeline.PubSubEmulator, "127.0.0.1:1"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "gatekeeper keys new BACKEND >> backends.yaml") || !strings.Contains(err.Error(), "BACKENDS_FILE") {
		t.Fatalf("Validate: %v", err)
	}
	cfg.Auth = pipeline.AuthNone
	if err := cfg.Validate(); err != nil {
		t.Errorf("AUTH=none: %v", err)
	}
	cfg.Auth, cfg.Stages = "", []pipeline.Stage{pipeline.StageApply}
	if err := cfg.Validate(); err != nil {
		t.Errorf("an apply-only process takes no payloads: %v", err)
	}
}
