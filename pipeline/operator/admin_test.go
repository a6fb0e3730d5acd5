package operator_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gatekeeper/gatekeeper/pipeline/operator"
	"github.com/gatekeeper/gatekeeper/warehouse/sqlite"
)

// noPublishers publishes nothing: the tests here replay nothing.
type noPublishers struct{}

func (noPublishers) Publisher(string) *pubsub.Publisher { return nil }

// newAdmin serves the admin API over an empty SQLite warehouse.
func newAdmin(t *testing.T) *httptest.Server {
	t.Helper()
	srv, _ := newAdminOver(t)
	return srv
}

// newAdminOver is newAdmin, and the warehouse under it.
func newAdminOver(t *testing.T) (*httptest.Server, *sqlite.Warehouse) {
	t.Helper()
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "warehouse.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	console, err := operator.NewConsole(operator.ConsoleConfig{
		Store: store, Publishers: noPublishers{}, TopicID: "accepted", OrderedTopicID: "accepted-ordered",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	consoleOf := func(context.Context) (*operator.Console, error) { return console, nil }
	status, err := operator.NewStatus(operator.StatusConfig{Console: consoleOf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := operator.NewAdmin(operator.AdminConfig{Console: consoleOf, Status: status}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin)
	t.Cleanup(srv.Close)
	return srv, store
}

// A write a browser could be tricked into sending from another site is
// refused; the same writes from the console's own page, and from a client
// that is no browser (the CLI, curl: no Sec-Fetch-Site, no Origin), pass.
func TestAdminRefusesCrossOriginWrites(t *testing.T) {
	t.Parallel()
	srv := newAdmin(t)
	const body = `{"payload":{"activities":[{"operation":"insert","table":"t","col_names":["n"],"col_types":["INTEGER"],"col_values":[1]}]}}`
	for _, c := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site fetch from another origin", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"another origin, from a browser without Sec-Fetch-Site", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"form post", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusForbidden},
		{"text/plain post", map[string]string{"Content-Type": "text/plain"}, http.StatusForbidden},
		{"the console's own page", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": srv.URL}, http.StatusOK},
		{"this origin, from a browser without Sec-Fetch-Site", map[string]string{"Origin": srv.URL}, http.StatusOK},
		{"typed by the user", map[string]string{"Sec-Fetch-Site": "none"}, http.StatusOK},
		{"the CLI", nil, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+operator.AdminPoisonPath+"/validate", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, raw, c.want)
		}
		if c.want == http.StatusForbidden && !strings.Contains(string(raw), `"error":"console writes must be same-origin`) {
			t.Errorf("%s: body %s, want the admin API's error naming the rule", c.name, raw)
		}
	}
	// Reads change nothing: a cross-site one is not refused (the browser's
	// same-origin policy keeps its answer from the other site).
	req, _ := http.NewRequest(http.MethodGet, srv.URL+operator.AdminPoisonPath, nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("cross-site read: %d, want 200", resp.StatusCode)
	}
}
