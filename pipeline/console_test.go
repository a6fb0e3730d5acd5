package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/chromedp/chromedp"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/frontdoor"
	"github.com/gatekeeper/gatekeeper/pipeline/operator"
)

// Payloads the warehouse cannot apply, each for its own reason, and what
// the operator does about the one in typed.
const (
	typedTable   = `{"activities":[{"operation":"insert","table":"typed","col_names":["n"],"col_types":["INTEGER"],"col_values":[1]}]}`
	typeConflict = `{"activities":[{"operation":"insert","table":"typed","col_names":["n"],"col_types":["TEXT"],"col_values":["two"]}]}`
	typeFixed    = `{"activities":[{"operation":"insert","table":"typed","col_names":["n"],"col_types":["INTEGER"],"col_values":[2]}]}`
	missingAlpha = `{"activities":[{"operation":"delete","table":"alpha","value_to_delete":{"col_names":["id"],"col_types":["INTEGER"],"col_values":[1]}}]}`
	missingBeta  = `{"activities":[{"operation":"delete","table":"beta","value_to_delete":{"col_names":["id"],"col_types":["INTEGER"],"col_values":[2]}}]}`
)

// poisonThree starts a service and has three payloads poisoned and indexed.
func poisonThree(t *testing.T, mode pipeline.PubSubMode) (*running, map[string]string) {
	t.Helper()
	return poisonThreeWith(t, testConfig(t, mode), nil, nil)
}

// poisonThreeWith is poisonThree on cfg, posting with the header pairs
// post and reading the admin API with admin (for BACKENDS_FILE).
func poisonThreeWith(t *testing.T, cfg pipeline.Config, post_, admin []string) (*running, map[string]string) {
	t.Helper()
	r := startService(t, cfg)
	if code, resp, _ := post(t, r.base, "application/json", typedTable, post_...); code != 200 {
		t.Fatalf("typed: %d", code)
	} else {
		waitApplied(t, r.svc.Store, resp.ID, 15*time.Second)
	}
	ids := map[string]string{}
	for name, body := range map[string]string{"typed": typeConflict, "alpha": missingAlpha, "beta": missingBeta} {
		code, resp, _ := post(t, r.base, "application/json", body, post_...)
		if code != 200 {
			t.Fatalf("%s: %d", name, code)
		}
		ids[name] = resp.ID
	}
	var list struct {
		Count int `json:"count"`
	}
	if !eventually(30*time.Second, func() bool {
		_, _, raw := request(t, "GET", "http://"+r.svc.AdminAddr().String()+operator.AdminPoisonPath, "", admin...)
		_ = json.Unmarshal(raw, &list)
		return list.Count == 3
	}) {
		t.Fatalf("the poison index holds %d payloads, want 3; log:\n%s", list.Count, r.logs)
	}
	return r, ids
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("GET %s: %d %s: %v", url, resp.StatusCode, raw, err)
	}
	return resp.StatusCode
}

func postJSON(t *testing.T, url, body string, header ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// The admin API mirrors the CLI, refuses writes a browser could be tricked
// into sending from another site, and the status API follows a payload
// from poisoned to applied.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	for _, mode := range pubsubModes() {
		t.Run(string(mode), func(t *testing.T) {
			skipWithoutEmulator(t, mode)
			r, ids := poisonThree(t, mode)
			admin := "http://" + r.svc.AdminAddr().String()

			var list struct {
				Items []operator.PoisonRecord `json:"items"`
			}
			getJSON(t, admin+operator.AdminPoisonPath+"?table=alpha", &list)
			if len(list.Items) != 1 || list.Items[0].PayloadID != ids["alpha"] || list.Items[0].ErrorClass != "permanent" {
				t.Errorf("?table=alpha: %+v", list.Items)
			}
			var bad map[string]string
			if code := getJSON(t, admin+operator.AdminPoisonPath+"?class=fatal&limit=x", &bad); code != 400 ||
				!strings.Contains(bad["error"], `class "fatal"`) || !strings.Contains(bad["error"], `limit "x"`) {
				t.Errorf("bad filters: %d %v; want 400 naming both", code, bad)
			}
			var summary struct {
				Groups []operator.SummaryGroup `json:"groups"`
			}
			getJSON(t, admin+operator.AdminPoisonPath+"/summary", &summary)
			if len(summary.Groups) != 3 {
				t.Errorf("summary: %+v, want 3 causes", summary.Groups)
			}
			var detail operator.PoisonDetail
			if code := getJSON(t, admin+operator.AdminPoisonPath+"/"+ids["beta"], &detail); code != 200 ||
				len(detail.History) != 1 || detail.History[0].Kind != "poisoned" || detail.Metadata["reason_poisoned"] == "" {
				t.Errorf("detail: %d %+v", code, detail)
			}
			var status operator.PayloadStatus
			if code := getJSON(t, r.base+"/api/activities/"+ids["beta"], &status); code != 200 || status.Status != "poisoned" ||
				status.Error == nil || status.Error.Class != "permanent" || len(status.Tables) != 1 {
				t.Errorf("status of a poisoned payload: %d %+v", code, status)
			}
			if code := getJSON(t, r.base+"/api/activities/00000000-0000-0000-0000-000000000000", &status); code != 404 || status.Status != "unknown" {
				t.Errorf("status of an unknown payload: %d %+v", code, status)
			}

			// CSRF: a write must be JSON and same-origin.
			for _, c := range []struct {
				name   string
				header []string
			}{
				{"cross-site fetch", []string{"Sec-Fetch-Site", "cross-site"}},
				{"other origin", []string{"Origin", "http://evil.example"}},
				{"form post", []string{"Content-Type", "application/x-www-form-urlencoded"}},
			} {
				if code, _ := postJSON(t, admin+operator.AdminPoisonPath+"/purge", `{"all":true}`, c.header...); code != 403 {
					t.Errorf("%s: purge answered %d, want 403", c.name, code)
				}
			}
			if code, out := postJSON(t, admin+operator.AdminPoisonPath+"/purge", `{}`); code != 400 {
				t.Errorf("purge of nothing: %d %v, want 400", code, out)
			}
			// An edit the gate refuses: 422, nothing published.
			edit := func(payload string) string {
				return fmt.Sprintf(`{"items":[{"payload_id":%q,"payload":%s}]}`, ids["typed"], payload)
			}
			if code, out := postJSON(t, admin+operator.AdminPoisonPath+"/replay", edit(strings.Replace(typeFixed, "INTEGER", "INTEGRAL", 1))); code != 422 || out["replayed"] != float64(0) {
				t.Errorf("refused edit: %d %v, want 422 and nothing replayed", code, out)
			}
			if code, out := postJSON(t, admin+operator.AdminPoisonPath+"/replay", edit(typeFixed)); code != 200 || out["replayed"] != float64(1) {
				t.Fatalf("replay of the fixed edit: %d %v", code, out)
			}
			waitApplied(t, r.svc.Store, ids["typed"], 15*time.Second)
			if !eventually(10*time.Second, func() bool {
				getJSON(t, r.base+"/api/activities/"+ids["typed"], &status)
				return status.Status == "applied"
			}) || status.Replays != 1 || status.AppliedAt == nil || status.RowsAffected == nil || *status.RowsAffected != 1 {
				t.Errorf("status after the replay: %+v", status)
			}
			if code, out := postJSON(t, admin+operator.AdminPoisonPath+"/purge", fmt.Sprintf(`{"ids":[%q]}`, ids["alpha"])); code != 200 || out["purged"] != float64(1) {
				t.Errorf("purge alpha: %d %v", code, out)
			}
			getJSON(t, admin+operator.AdminPoisonPath, &list)
			if len(list.Items) != 1 || list.Items[0].PayloadID != ids["beta"] {
				t.Errorf("left poisoned: %+v, want only beta", list.Items)
			}
		})
	}
}

// chromium finds the browser for the console's test: GATEKEEPER_TEST_CHROMIUM,
// else chromium on PATH.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("GATEKEEPER_TEST_CHROMIUM"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium (set GATEKEEPER_TEST_CHROMIUM): the console page was not tested in a browser")
	}
	return p
}

// The operator's page, in a real headless browser: three poisoned
// payloads, filter by table, open one, fix it in the edit box, replay it
// (after a confirmation), and it leaves the list and is applied.
func TestConsolePageInBrowser(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
	// With BACKENDS_FILE: the page asks for the admin key once.
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.BackendsFile = filepath.Join(t.TempDir(), "backends.yaml")
	keys := keyFile(t, cfg.BackendsFile, frontdoor.Entry{Name: "billing"}, frontdoor.Entry{Name: "ops", Admin: true})
	r, ids := poisonThreeWith(t, cfg, []string{"X-API-Key", keys["billing"]}, []string{"X-API-Key", keys["ops"]})
	page := "http://" + r.svc.AdminAddr().String() + operator.AdminPagePath

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 900))...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	rowsIn := func(sel string) int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("`+sel+` tbody tr").length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitRows := func(sel string, want int) {
		t.Helper()
		if !eventually(15*time.Second, func() bool { return rowsIn(sel) == want }) {
			t.Fatalf("%s shows %d rows, want %d", sel, rowsIn(sel), want)
		}
	}
	filter := func(table string) {
		t.Helper()
		// SetValue refuses an empty value (chromedp v0.23 compares the
		// result), so the field is typed into by script.
		quoted, _ := json.Marshal(table)
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById("f-table").value = `+string(quoted)),
			chromedp.Click(chromedp.CSS("#apply-filters"))); err != nil {
			t.Fatal(err)
		}
	}
	text := func(sel string) string {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A wrong key is refused and asked again; the admin key opens the page.
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`#login`)),
		chromedp.SendKeys(chromedp.CSS(`#admin-key`), keys["billing"]), chromedp.Click(chromedp.CSS(`#login-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#login`))); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool { return strings.Contains(text("#login-msg"), "admin key") }) {
		t.Errorf("a backend's key: the page says %q", text("#login-msg"))
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(`#admin-key`), keys["ops"]), chromedp.Click(chromedp.CSS(`#login-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#list tbody tr`))); err != nil {
		t.Fatal(err)
	}
	waitRows("#list", 3)
	waitRows("#summary", 3)
	if total := text("#total"); total != "3 payloads, 3 causes" {
		t.Errorf("header: %q", total)
	}

	// Filter by table, open the one payload.
	filter("typed")
	waitRows("#list", 1)
	// The list re-renders when an answer arrives; a row clicked in that
	// moment is gone before it can be seen, so each try is bounded.
	if !eventually(20*time.Second, func() bool {
		try, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return chromedp.Do(try, chromedp.Click(chromedp.CSS(`#list tbody tr`)), chromedp.WaitVisible(chromedp.CSS("#detail-body"))) == nil
	}) {
		t.Fatal("clicking the payload's row never opened its detail")
	}
	editor, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#editor")))
	if err != nil || !strings.Contains(editor, `"two"`) {
		t.Fatalf("the edit box holds %q (%v), want the poisoned payload", editor, err)
	}
	if shot := os.Getenv("GATEKEEPER_CONSOLE_SCREENSHOT"); shot != "" {
		filter("")
		waitRows("#list", 3)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		filter("typed")
		waitRows("#list", 1)
	}

	// An edit the gate refuses shows the gate's errors.
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#editor"), strings.Replace(typeFixed, "INTEGER", "INTEGRAL", 1)),
		chromedp.Click(chromedp.CSS("#validate")), chromedp.WaitVisible(chromedp.CSS("#problems li"))); err != nil {
		t.Fatal(err)
	}
	if problems := text("#problems"); !strings.Contains(problems, "/activities/0/col_types/0") {
		t.Errorf("problems shown: %q, want the gate's path", problems)
	}

	// Fix it and replay, confirming the question the page asks.
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#editor"), typeFixed),
		chromedp.Evaluate[chromedp.Void](`window.confirm = (q) => { window.asked = q; return true; }`),
		chromedp.Click(chromedp.CSS("#replay")),
		chromedp.Poll[chromedp.Void](`document.getElementById("detail-msg").textContent.startsWith("Replayed")`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("replay: %v (message %q)", err, text("#detail-msg"))
	}
	if asked, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.asked`)); err != nil || !strings.Contains(asked, ids["typed"]) {
		t.Errorf("the page asked %q (%v) before replaying, want a question naming the payload", asked, err)
	}
	if !eventually(15*time.Second, func() bool {
		filter("typed")
		// The page fetches the list again after the click: count its rows
		// once that answer is in, not the old rows, nor none mid-render.
		time.Sleep(200 * time.Millisecond)
		return rowsIn("#list") == 0
	}) {
		t.Errorf("the replayed payload is still listed")
	}
	var status operator.PayloadStatus
	if !eventually(15*time.Second, func() bool {
		// Its backend's key reads its status.
		_, _, raw := request(t, "GET", r.base+"/api/activities/"+ids["typed"], "", "X-API-Key", keys["billing"])
		_ = json.Unmarshal(raw, &status)
		return status.Status == "applied"
	}) {
		t.Errorf("status after the page's replay: %+v, want applied", status)
	}
	if got := rows(t, r.svc.Store, "typed"); len(got) != 2 {
		t.Errorf("rows of typed: %v, want the first and the fixed one", got)
	}
}

// With DEAD_LETTER_MAX_ATTEMPTS, the apply subscription gatekeeper creates
// dead-letters to the poison topic; what Pub/Sub moves there carries the
// accepted message's attributes and its own, not gatekeeper's failure
// metadata, and the index takes it as class unknown, with Pub/Sub's
// delivery count as the reason.
func TestDeadLetteredMessagesAreIndexedAsUnknown(t *testing.T) {
	t.Parallel()
	for _, mode := range pubsubModes() {
		t.Run(string(mode), func(t *testing.T) {
			skipWithoutEmulator(t, mode)
			cfg := testConfig(t, mode)
			cfg.DeadLetterMaxAttempts = 5
			r := startService(t, cfg)
			ctx := context.Background()
			sub, err := r.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{
				Subscription: "projects/" + cfg.ProjectID + "/subscriptions/" + cfg.SubscriptionID,
			})
			if err != nil {
				t.Fatal(err)
			}
			if p := sub.GetDeadLetterPolicy(); p.GetMaxDeliveryAttempts() != 5 || !strings.HasSuffix(p.GetDeadLetterTopic(), "/topics/"+cfg.PoisonTopicID) {
				t.Errorf("apply subscription's dead-letter policy: %v; want 5 attempts to %s", p, cfg.PoisonTopicID)
			}
			// What Pub/Sub publishes to the dead-letter topic, as Google does.
			id := "5b8e3f0e-1d7c-4a7e-9a39-0c6f2b1d4e55"
			res := r.client.Publisher(cfg.PoisonTopicID).Publish(ctx, &pubsub.Message{
				Data: []byte(missingAlpha),
				Attributes: map[string]string{
					"_watermill_message_uuid":                  id,
					"received_at":                              time.Now().UTC().Format(time.RFC3339Nano),
					"correlation_id":                           "c-1",
					"CloudPubSubDeadLetterSourceDeliveryCount": "5",
					"CloudPubSubDeadLetterSourceSubscription":  cfg.SubscriptionID,
				},
			})
			if _, err := res.Get(ctx); err != nil {
				t.Fatal(err)
			}
			admin := "http://" + r.svc.AdminAddr().String()
			var detail operator.PoisonDetail
			if !eventually(15*time.Second, func() bool {
				return getJSON(t, admin+operator.AdminPoisonPath+"/"+id, &detail) == 200
			}) {
				t.Fatalf("the dead-lettered message is not in the index; log:\n%s", r.logs)
			}
			if detail.ErrorClass != "unknown" || detail.Attempts != 5 || !strings.Contains(detail.Reason, "after 5 delivery attempts on "+cfg.SubscriptionID) ||
				len(detail.Tables) != 1 || detail.Tables[0] != "alpha" || detail.Metadata["CloudPubSubDeadLetterSourceDeliveryCount"] != "5" {
				t.Errorf("dead-lettered entry: %+v", detail)
			}
			var list struct {
				Items []operator.PoisonRecord `json:"items"`
			}
			getJSON(t, admin+operator.AdminPoisonPath+"?class=unknown", &list)
			if len(list.Items) != 1 || list.Items[0].PayloadID != id {
				t.Errorf("?class=unknown: %+v", list.Items)
			}
		})
	}
}
