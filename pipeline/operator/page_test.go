package operator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/operator"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

func getPage(t *testing.T, base string, q url.Values) (int, operator.PoisonPage, string) {
	t.Helper()
	resp, err := http.Get(base + operator.AdminPoisonPath + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	var page operator.PoisonPage
	_ = json.Unmarshal(raw, &page)
	return resp.StatusCode, page, string(raw)
}

// GET /api/poison?limit=N&cursor=… walks every payload once, with the
// total, while new payloads arrive; the same holds within one cause, and
// search finds payloads by the start of their id or correlation id.
func TestAdminPagesWithACursor(t *testing.T) {
	t.Parallel()
	srv, store := newAdminOver(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	var events []warehouse.Event
	for i := range 250 {
		reason := fmt.Sprintf("column \"n\" is INT64, the payload gives STRING at activities[%d]", i%3)
		if i%5 == 0 {
			reason = "table \"gone\" not found"
		}
		events = append(events, warehousetest.Poisoned(fmt.Sprintf("0193a1b2-%04d", i), 0, now.Add(time.Duration(i%50)*time.Millisecond), "permanent", reason, "t"))
	}
	if err := store.AppendEvents(ctx, events); err != nil {
		t.Fatal(err)
	}

	walk := func(q url.Values, wantTotal int) map[string]int {
		t.Helper()
		seen := map[string]int{}
		for page := 0; ; page++ {
			code, p, raw := getPage(t, srv.URL, q)
			if code != 200 || p.Total != wantTotal {
				t.Fatalf("page %d: %d, total %d, want 200 and %d: %s", page, code, p.Total, wantTotal, raw)
			}
			for _, it := range p.Items {
				seen[it.PayloadID]++
			}
			// Arrivals between pages come before the walk's start.
			if err := store.AppendEvents(ctx, []warehouse.Event{warehousetest.Poisoned(fmt.Sprintf("late-%s-%d", q.Get("cause"), page), 0, time.Now().Add(time.Hour), "permanent", "table \"gone\" not found", "t")}); err != nil {
				t.Fatal(err)
			}
			wantTotal++
			if p.Next == "" {
				return seen
			}
			if page > 10 {
				t.Fatal("the walk does not end")
			}
			q.Set("cursor", p.Next)
		}
	}
	seen := walk(url.Values{"limit": {"40"}}, 250)
	if len(seen) != 250 {
		t.Errorf("the walk read %d payloads, want 250", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("the walk read %s %d times", id, n)
		}
	}

	// One cause: the 50 payloads whose table is gone (and the arrivals
	// of the walk above, which share it).
	var summary struct {
		Groups []operator.SummaryGroup `json:"groups"`
	}
	resp, err := http.Get(srv.URL + operator.AdminPoisonPath + "/summary")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&summary)
	resp.Body.Close()
	if len(summary.Groups) != 2 || summary.Groups[0].Count != 200 || summary.Groups[1].Count != 57 {
		t.Fatalf("summary: %+v, want causes of 200 and 57", summary.Groups)
	}
	gone := summary.Groups[1]
	if h := gone.Hourly; len(h) != 24 || h[23] != 50 {
		t.Errorf("hourly of %q: %v, want 24 hours, 50 in the last", gone.Reason, h)
	}
	seen = walk(url.Values{"limit": {"20"}, "cause": {gone.Cause}}, 57)
	if len(seen) != 57 {
		t.Errorf("the walk of one cause read %d payloads, want 57", len(seen))
	}

	_, p, raw := getPage(t, srv.URL, url.Values{"search": {"0193a1b2-012"}})
	if p.Total != 10 || p.Count != 10 || p.Next != "" {
		t.Errorf("search by prefix: %s; want the 10 of 0193a1b2-012x", raw)
	}
	_, p, raw = getPage(t, srv.URL, url.Values{"search": {"corr-0193a1b2-0007"}})
	if p.Total != 1 || p.Items[0].PayloadID != "0193a1b2-0007" {
		t.Errorf("search by correlation id: %s", raw)
	}
	if code, _, raw := getPage(t, srv.URL, url.Values{"cursor": {"nonsense!"}}); code != 400 {
		t.Errorf("a bad cursor: %d %s, want 400", code, raw)
	}
}
