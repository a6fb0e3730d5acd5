package pipeline_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/pipeline/frontdoor"
)

// Every error of the ingestion listener answers in one body shape, the
// routes net/http answers itself (404, 405) included; a 403 points at the
// refused table; and a client that asks for RFC 9457 problems gets them,
// while every other client keeps the replaced service's body.
func TestErrorsShareOneShape(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.BackendsFile = filepath.Join(t.TempDir(), "backends.yaml")
	keys := keyFile(t, cfg.BackendsFile, frontdoor.Entry{Name: "billing", Tables: []string{"orders_*"}})
	r := startService(t, cfg)
	key := []string{"X-API-Key", keys["billing"]}
	forbidden := `{"activities":[` +
		`{"operation":"insert","table":"orders_eu","col_names":["n"],"col_types":["INTEGER"],"col_values":[1]},` +
		`{"operation":"insert","table":"users","col_names":["n"],"col_types":["INTEGER"],"col_values":[1]},` +
		`{"operation":"insert","table":"users","col_names":["n"],"col_types":["INTEGER"],"col_values":[2]}]}`

	type want struct {
		code          int
		message, path string
		allow         string
	}
	cases := []struct {
		name, method, url, body string
		header                  []string
		want                    want
	}{
		{"unknown path", "GET", r.base + "/api/nothing", "", key, want{404, "Not Found", "", ""}},
		{"unknown path, no key", "POST", r.base + "/", "{}", nil, want{404, "Not Found", "", ""}},
		{"GET on the ingestion route", "GET", r.base + pipeline.IngestPath, "", key, want{405, "Method Not Allowed", "", "POST"}},
		{"DELETE on the schema", "DELETE", r.base + edge.SchemaPath, "", key, want{405, "Method Not Allowed", "", "GET, HEAD"}},
		{"refused table", "POST", r.base + pipeline.IngestPath, forbidden, key, want{403, "Forbidden", "/activities/1/table", ""}},
		{"not JSON", "POST", r.base + pipeline.IngestPath, "{", key, want{400, "Invalid JSON", "", ""}},
		{"no key", "POST", r.base + pipeline.IngestPath, ordersPayload("orders"), nil, want{401, "Unauthorized", "", ""}},
		{"status, not an id", "GET", r.base + "/api/activities/no%20id", "", key, want{400, "Bad Request", "", ""}},
		{"status, no key", "GET", r.base + "/api/activities/0193a3b4-0000-7000-8000-000000000000", "", nil, want{401, "Unauthorized", "", ""}},
	}
	for _, c := range cases {
		for _, accept := range []string{"", "*/*", "application/json", "application/json, application/problem+json;q=0.5"} {
			t.Run(c.name+"/accept "+accept, func(t *testing.T) {
				code, h, raw := request(t, c.method, c.url, c.body, append([]string{"Accept", accept}, c.header...)...)
				var resp edge.Response
				if code != c.want.code || h.Get("Content-Type") != "application/json" || json.Unmarshal(raw, &resp) != nil {
					t.Fatalf("%d %s %s, want %d in the ingestion body", code, h.Get("Content-Type"), raw, c.want.code)
				}
				if resp.Status != code || resp.Message != c.want.message || len(resp.Error) == 0 || string(resp.Payload) == "" {
					t.Errorf("body %s, want status %d, message %q and a problem", raw, code, c.want.message)
				}
				if len(resp.Error) > 0 && resp.Error[0].Path != c.want.path {
					t.Errorf("path %q, want %q: %s", resp.Error[0].Path, c.want.path, raw)
				}
				if got := h.Get("Allow"); got != c.want.allow {
					t.Errorf("Allow %q, want %q", got, c.want.allow)
				}
			})
		}
		for _, accept := range []string{"application/problem+json", "application/json;q=0.9, application/problem+json"} {
			t.Run(c.name+"/accept "+accept, func(t *testing.T) {
				code, h, raw := request(t, c.method, c.url, c.body, append([]string{"Accept", accept}, c.header...)...)
				var p edge.Problem
				if code != c.want.code || h.Get("Content-Type") != edge.ProblemType || json.Unmarshal(raw, &p) != nil {
					t.Fatalf("%d %s %s, want %d as a problem", code, h.Get("Content-Type"), raw, c.want.code)
				}
				if p.Type != "about:blank" || p.Status != code || p.Title == "" || p.Detail == "" || p.Message != c.want.message ||
					len(p.Errors) == 0 || p.Errors[0].Path != c.want.path {
					t.Errorf("problem %s, want status %d, message %q, path %q", raw, code, c.want.message, c.want.path)
				}
				if c.method == "POST" && c.want.code != 404 && (h.Get("X-Correlation-ID") == "" || p.CorrelationID != h.Get("X-Correlation-ID")) {
					t.Errorf("correlation_id %q, header %q", p.CorrelationID, h.Get("X-Correlation-ID"))
				}
			})
		}
	}
	// One problem per refused table, at its first activity.
	_, _, raw := request(t, "POST", r.base+pipeline.IngestPath, forbidden, key...)
	var resp edge.Response
	if err := json.Unmarshal(raw, &resp); err != nil || len(resp.Error) != 1 {
		t.Errorf("403 body %s, want one problem for users", raw)
	}
	// A success is the same for every Accept.
	code, h, raw := request(t, "POST", r.base+pipeline.IngestPath, ordersPayload("orders_eu"), append(key, "Accept", edge.ProblemType)...)
	if code != 200 || h.Get("Content-Type") != "application/json" || json.Unmarshal(raw, &resp) != nil || resp.ID == "" {
		t.Errorf("accepted with Accept: problem: %d %s %s", code, h.Get("Content-Type"), raw)
	}
}

// The OpenAPI document is served as it is in the repository, with an ETag
// a client revalidates against.
func TestOpenAPIIsServed(t *testing.T) {
	t.Parallel()
	r := startService(t, testConfig(t, pipeline.PubSubEmbedded))
	code, h, raw := request(t, "GET", r.base+edge.OpenAPIPath, "")
	if code != 200 || h.Get("Content-Type") != "application/json" || !bytes.Equal(raw, edge.OpenAPIJSON()) || h.Get("ETag") == "" {
		t.Fatalf("GET %s: %d %q, the document: %v", edge.OpenAPIPath, code, h.Get("Content-Type"), bytes.Equal(raw, edge.OpenAPIJSON()))
	}
	if code, _, _ := request(t, "GET", r.base+edge.OpenAPIPath, "", "If-None-Match", h.Get("ETag")); code != http.StatusNotModified {
		t.Errorf("revalidated: %d, want 304", code)
	}
}

// The start says who can write through the ingestion API.
func TestStartSaysWhoCanWrite(t *testing.T) {
	t.Parallel()
	open := startService(t, testConfig(t, pipeline.PubSubEmbedded))
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.BackendsFile = filepath.Join(t.TempDir(), "backends.yaml")
	keyFile(t, cfg.BackendsFile, frontdoor.Entry{Name: "billing"})
	keyed := startService(t, cfg)
	for r, want := range map[*running]string{
		open:  `level=INFO msg="Ingestion API unauthenticated, on loopback only`,
		keyed: `level=INFO msg="Ingestion API open to the keys of BACKENDS_FILE"`,
	} {
		if !eventually(10*time.Second, func() bool { return strings.Contains(r.logs.String(), want) }) {
			t.Errorf("the start's log lacks %s:\n%s", want, r.logs.String())
		}
	}
}
