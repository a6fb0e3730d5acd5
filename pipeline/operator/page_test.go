package operator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
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

func postTo(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func summaryOf(t *testing.T, base string) []operator.SummaryGroup {
	t.Helper()
	var s struct {
		Groups []operator.SummaryGroup `json:"groups"`
	}
	resp, err := http.Get(base + operator.AdminPoisonPath + "/summary")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&s)
	return s.Groups
}

// A cause is acknowledged, and counts as new only what fails after; a bulk
// action does nothing when the selection is no longer the count the
// operator confirmed; a background replay reports its progress and end;
// validate asks the warehouse as well as the gate.
func TestAdminCausesJobsAndValidate(t *testing.T) {
	t.Parallel()
	srv, store := newAdminOver(t)
	ctx := context.Background()
	now := time.Now().UTC()
	var events []warehouse.Event
	for i := range 30 {
		events = append(events, warehousetest.Poisoned(fmt.Sprintf("p%02d", i), 0, now.Add(-time.Minute), "permanent", "table \"gone\" not found", "gone"))
	}
	if err := store.AppendEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	g := summaryOf(t, srv.URL)
	if len(g) != 1 || g[0].New != 30 || g[0].AcknowledgedAt != nil {
		t.Fatalf("summary: %+v, want one open cause, 30 new", g)
	}
	cause := g[0].Cause
	if code, out := postTo(t, srv.URL+operator.AdminPoisonPath+"/causes/"+cause+"/ack", `{}`); code != 200 {
		t.Fatalf("ack: %d %v", code, out)
	}
	if g = summaryOf(t, srv.URL); g[0].New != 0 || g[0].AcknowledgedAt == nil {
		t.Errorf("after the ack: %+v, want acknowledged, 0 new", g[0])
	}
	late := warehousetest.Poisoned("late", 0, time.Now().UTC().Add(time.Minute), "permanent", "table \"gone\" not found", "gone")
	late.LastFailureAt = late.At
	if err := store.AppendEvents(ctx, []warehouse.Event{late}); err != nil {
		t.Fatal(err)
	}
	if g = summaryOf(t, srv.URL); g[0].New != 1 || g[0].Count != 31 {
		t.Errorf("after a new failure: %+v, want 31, 1 new", g[0])
	}

	sel := func(expect int) string {
		return fmt.Sprintf(`{"all":true,"filter":{"cause":%q},"expect":%d,"dry_run":true,"background":true,"rate":1000}`, cause, expect)
	}
	if code, out := postTo(t, srv.URL+operator.AdminPoisonPath+"/replay", sel(30)); code != 409 || out["count"] != float64(31) {
		t.Errorf("replay confirming 30 of 31: %d %v, want 409 with the count", code, out)
	}
	if code, out := postTo(t, srv.URL+operator.AdminPoisonPath+"/purge", fmt.Sprintf(`{"filter":{"cause":%q},"expect":5}`, cause)); code != 409 {
		t.Errorf("purge confirming 5 of 31: %d %v, want 409", code, out)
	}
	code, out := postTo(t, srv.URL+operator.AdminPoisonPath+"/replay", sel(31))
	if code != 202 || out["total"] != float64(31) {
		t.Fatalf("background replay: %d %v", code, out)
	}
	var job operator.ReplayJob
	deadline := time.Now().Add(10 * time.Second)
	for !job.Finished && time.Now().Before(deadline) {
		resp, err := http.Get(srv.URL + operator.AdminPoisonPath + "/jobs/" + out["id"].(string))
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&job)
		resp.Body.Close()
	}
	// The stored payloads are not valid payloads: the gate refuses them all.
	if !job.Finished || job.Done != 31 || job.Report == nil || len(job.Report.Refused) != 31 || job.Error != "" || job.Cause != cause {
		t.Errorf("job: %+v, want cause %s finished with 31 done, all refused", job, cause)
	}

	if _, err := store.Apply(ctx, []warehouse.Payload{warehousetest.Payload("typed", warehousetest.Insert("typed", warehousetest.Col("n", messages.ColumnType{Base: messages.TypeInt64}, int64(1))))}); err != nil {
		t.Fatal(err)
	}
	validate := func(payload string) map[string]any {
		code, out := postTo(t, srv.URL+operator.AdminPoisonPath+"/validate", `{"payload":`+payload+`}`)
		if code != 200 {
			t.Fatalf("validate: %d %v", code, out)
		}
		return out
	}
	conflict := validate(`{"activities":[{"operation":"insert","table":"typed","col_names":["n"],"col_types":["TEXT"],"col_values":["two"]}]}`)
	wh, _ := conflict["warehouse"].(map[string]any)
	if conflict["valid"] != true || wh["checked"] != true || wh["valid"] != false || !strings.Contains(fmt.Sprint(wh["problem"]), `"n"`) {
		t.Errorf("validate a type conflict: %v, want the gate's yes and the warehouse's no naming n", conflict)
	}
	fine := validate(`{"activities":[{"operation":"insert","table":"typed","col_names":["n"],"col_types":["INTEGER"],"col_values":[2]}]}`)
	if wh, _ := fine["warehouse"].(map[string]any); fine["valid"] != true || wh["valid"] != true {
		t.Errorf("validate a good payload: %v", fine)
	}
	if names, _ := store.Tables(ctx); len(names) != 1 {
		t.Errorf("tables after validating: %v, want only typed (validate writes nothing)", names)
	}
}
