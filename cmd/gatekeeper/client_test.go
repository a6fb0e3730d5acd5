package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// A service that pages GET /api/poison (next, cursor) is followed to the
// end, or to --limit; the filters travel as query parameters, and the
// admin key as Authorization: Bearer.
func TestPoisonListFollowsTheServicesPages(t *testing.T) {
	t.Parallel()
	const total, page = 7, 3
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/poison" || r.Header.Get("Authorization") != "Bearer k1" {
			http.Error(w, "unexpected "+r.URL.String(), http.StatusTeapot)
			return
		}
		asked = append(asked, r.URL.RawQuery)
		from, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		body := map[string]any{"count": min(page, total-from)}
		var items []map[string]any
		for i := from; i < min(from+page, total); i++ {
			items = append(items, map[string]any{"payload_id": fmt.Sprintf("p%d", i), "state": "poisoned"})
		}
		body["items"] = items
		if from+page < total {
			body["next"] = strconv.Itoa(from + page)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	}))
	defer srv.Close()

	r := runIn("poison", "list", "--json", "--server", srv.URL, "--admin-key", "k1", "--table", "t1")
	if got := poisoned(t, r.stdout); r.code != 0 || len(got) != total {
		t.Fatalf("exit %d, %d payloads, stderr %q; want %d", r.code, len(got), r.stderr, total)
	}
	if len(asked) != 3 || !strings.Contains(asked[0], "table=t1") || !strings.Contains(asked[2], "cursor=6") || !strings.Contains(asked[2], "table=t1") {
		t.Errorf("asked %q; want three pages, each with the filter", asked)
	}
	asked = nil
	r = runIn("poison", "list", "--json", "--server", srv.URL, "--admin-key", "k1", "--limit", "4")
	if got := poisoned(t, r.stdout); r.code != 0 || len(got) != 4 || len(asked) != 2 {
		t.Errorf("--limit 4: exit %d, %d payloads after %d pages, stderr %q; want 4 after 2", r.code, len(got), len(asked), r.stderr)
	}
}
