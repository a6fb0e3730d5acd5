package pipeline_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// After a run of known content, every counter moved by exactly what
// happened: N valid, one invalid payload per rule, K poisoned, and one
// transient failure retried once.
func TestMetricsCountExactly(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.MaxBodyBytes = 4096
	cfg.RetryInitial, cfg.RetryMaxInterval = 10*time.Millisecond, 10*time.Millisecond
	faulty, inner, withFaulty := faultyWarehouse(t, cfg)
	r := startServiceWith(t, cfg, withFaulty)
	started := time.Now()

	const n, k = 5, 2
	ins := func(names, types, values string) string {
		return `{"activities":[{"operation":"insert","table":"t","col_names":` + names + `,"col_types":` + types + `,"col_values":` + values + `}]}`
	}
	invalid := map[string]struct{ contentType, body string }{
		"schema":                 {"application/json", badOperation},
		"length_mismatch":        {"application/json", ins(`["a","b"]`, `["INTEGER"]`, `[1,2]`)},
		"identifier":             {"application/json", ins(`["a-b"]`, `["INTEGER"]`, `[1]`)},
		"duplicate_column":       {"application/json", ins(`["a","A"]`, `["INTEGER","INTEGER"]`, `[1,2]`)},
		"unknown_type":           {"application/json", ins(`["a"]`, `["BLOB9"]`, `[1]`)},
		"value_type":             {"application/json", ins(`["a"]`, `["INTEGER"]`, `["x"]`)},
		"limits":                 {"application/json", `{"activities":[` + strings.Repeat(`{},`, 1000) + `{}]}`},
		"not_json":               {"application/json", `{"activities":`},
		"too_large":              {"application/json", `{"activities":[],"pad":"` + strings.Repeat("x", 5000) + `"}`},
		"unsupported_media_type": {"text/plain", insertOnly},
	}
	before := scrape(t, r.base)

	var ids []string
	for i := range n {
		code, resp, _ := post(t, r.base, "application/json", insertBody(i))
		if code != 200 {
			t.Fatalf("valid POST: %d %+v", code, resp)
		}
		ids = append(ids, resp.ID)
	}
	for i := range k {
		code, resp, _ := post(t, r.base, "application/json", fmt.Sprintf(
			`{"activities":[{"operation":"delete","table":"missing%d","value_to_delete":{"col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}}]}`, i))
		if code != 200 {
			t.Fatalf("POST to be poisoned: %d %+v", code, resp)
		}
	}
	statuses := map[int]int{}
	for rule, c := range invalid {
		code := postRaw(t, r.base, c.contentType, c.body)
		if code < 400 || code >= 500 {
			t.Fatalf("invalid by %s: %d", rule, code)
		}
		statuses[code]++
	}
	for _, id := range ids {
		waitApplied(t, inner, id, 15*time.Second)
	}
	waitMetric(t, r.base, `gatekeeper_payloads_total{backend="",outcome="poisoned"}`, before, k)

	// One transient failure, retried once, then applied.
	faulty.FailNext(1, nil)
	code, resp, _ := post(t, r.base, "application/json", insertBody(99))
	if code != 200 {
		t.Fatalf("POST: %d", code)
	}
	waitApplied(t, inner, resp.ID, 15*time.Second)
	waitMetric(t, r.base, `gatekeeper_payloads_total{backend="",outcome="applied"}`, before, n+1)
	// The applied events are published after the commit that counts a
	// payload applied: wait for the last of them too before reading.
	waitMetric(t, r.base, `gatekeeper_publish_seconds_count{topic="applied"}`, before, n+1)
	after := scrape(t, r.base)

	want := map[string]float64{
		`gatekeeper_payloads_total{backend="",outcome="accepted"}`:                      n + k + 1,
		`gatekeeper_payloads_total{backend="",outcome="rejected"}`:                      float64(len(invalid)),
		`gatekeeper_payloads_total{backend="",outcome="failed"}`:                        0,
		`gatekeeper_payloads_total{backend="",outcome="applied"}`:                       n + 1,
		`gatekeeper_payloads_total{backend="",outcome="duplicate"}`:                     0,
		`gatekeeper_payloads_total{backend="",outcome="poisoned"}`:                      k,
		`gatekeeper_apply_retries_total{class="transient"}`:                             1,
		`gatekeeper_warehouse_errors_total{class="transient",reason="other"}`:           1,
		`gatekeeper_warehouse_errors_total{class="permanent",reason="table_not_found"}`: k,
		`gatekeeper_warehouse_jobs_total{result="error"}`:                               1,
		`gatekeeper_end_to_end_seconds_count`:                                           n + 1,
		`gatekeeper_publish_seconds_count{topic="accepted"}`:                            n + k + 1,
		`gatekeeper_publish_seconds_count{topic="applied"}`:                             n + 1,
		`gatekeeper_publish_seconds_count{topic="poison"}`:                              k,
		`gatekeeper_http_requests_total{backend="",code="200",route="/api/activities"}`: n + k + 1,
		`gatekeeper_http_requests_total{backend="",code="400",route="/api/activities"}`: float64(statuses[400]),
		`gatekeeper_http_requests_total{backend="",code="413",route="/api/activities"}`: 1,
		`gatekeeper_http_requests_total{backend="",code="415",route="/api/activities"}`: 1,
	}
	for rule := range invalid {
		want[`gatekeeper_payload_rejections_total{rule="`+rule+`"}`] = 1
	}
	for series, w := range want {
		if got := after[series] - before[series]; got != w {
			t.Errorf("%s moved by %v, want %v", series, got, w)
		}
	}
	// Every warehouse call is one job and one group.
	jobs := after[`gatekeeper_warehouse_jobs_total{result="ok"}`] + after[`gatekeeper_warehouse_jobs_total{result="error"}`] -
		before[`gatekeeper_warehouse_jobs_total{result="ok"}`] - before[`gatekeeper_warehouse_jobs_total{result="error"}`]
	if groups := after["gatekeeper_group_size_count"] - before["gatekeeper_group_size_count"]; jobs != groups || jobs < 2 {
		t.Errorf("%v warehouse jobs for %v groups", jobs, groups)
	}
	// The gauge reads the poison index, which takes the poison topic's
	// messages a moment after they are published.
	var poisoned float64
	if !eventually(10*time.Second, func() bool {
		poisoned = scrape(t, r.base)[`gatekeeper_poison_payloads{state="poisoned"}`]
		return poisoned == float64(k)
	}) {
		t.Errorf("gatekeeper_poison_payloads = %v, want %d", poisoned, k)
	}
	// The oldest poisoned payload has waited since it was poisoned, during
	// this test: more than 0, less than the test has run.
	if age := scrape(t, r.base)["gatekeeper_poison_oldest_seconds"]; age <= 0 || age > time.Since(started).Seconds() {
		t.Errorf("gatekeeper_poison_oldest_seconds = %v, want in (0, %.1f]", age, time.Since(started).Seconds())
	}
	if v := after["gatekeeper_oldest_unapplied_seconds"]; v != 0 {
		t.Errorf("gatekeeper_oldest_unapplied_seconds = %v with nothing held, want 0", v)
	}
	var build bool
	for series, v := range after {
		if strings.HasPrefix(series, "gatekeeper_build_info{") && strings.Contains(series, `go_version="go`) && v == 1 {
			build = true
		}
	}
	if !build {
		t.Error("no gatekeeper_build_info{version,go_version} 1")
	}
}

// postRaw posts body as is and returns the status.
func postRaw(t *testing.T, base, contentType, body string) int {
	t.Helper()
	resp, err := http.Post(base+pipeline.IngestPath, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// scrape reads every sample of /metrics, keyed by the series as printed.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// waitMetric waits until series has moved by delta since before.
func waitMetric(t *testing.T, base, series string, before map[string]float64, delta float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if got := scrape(t, base)[series] - before[series]; got >= delta {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not move by %v within 15s", series, delta)
		}
		time.Sleep(20 * time.Millisecond) // the poll's interval; the deadline bounds it
	}
}
