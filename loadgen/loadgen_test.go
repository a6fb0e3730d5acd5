package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
)

// The probe's decision, from the answers a service can give to GET
// /api/activities/<an id nobody posted>: the status API's own "unknown"
// means it is there; a 404 or 405 without a payload status (a build
// before the API, a process without the ingest stage) means it is not;
// anything else cannot decide and is an error that says what came back.
func TestLoadgenStatusAPIProbeDecides(t *testing.T) {
	// The status API's answer for an id nobody posted.
	unknown := `{"id":"x","status":"unknown","received_at":null,"applied_at":null,"tables":[],"rows_affected":null,"error":null,"replays":0}`
	cases := []struct {
		name    string
		code    int
		body    string
		there   bool
		wantErr string
	}{
		{"the status API's unknown", 404, unknown, true, ""},
		{"a status for the id", 200, `{"id":"x","status":"applied"}`, true, ""},
		{"Go's mux: no such route", 404, "404 page not found\n", false, ""},
		{"only POST on the path", 405, "Method Not Allowed\n", false, ""},
		{"the ingest edge's own 404 shape", 404, `{"status":404,"message":"Not Found"}`, false, ""},
		{"a 404 JSON without a status", 404, `{"error":"no such thing"}`, false, ""},
		{"a status other than unknown with 404", 404, `{"status":"applied"}`, false, ""},
		{"no key", 401, `{"error":"missing API key"}`, false, "answered 401: pass a key of BACKENDS_FILE with --key or GATEKEEPER_KEY"},
		{"forbidden", 403, "", false, "answered 403"},
		{"the warehouse is down", 503, `{"error":"cannot look the payload up now; retry"}`, false, "answered 503: {\"error\":\"cannot look the payload up now; retry\"}"},
		{"a proxy's error page", 502, "<html>bad gateway</html>", false, "answered 502"},
	}
	for _, c := range cases {
		there, why, err := statusAPIAnswered(c.code, []byte(c.body))
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: err %v, want one containing %q", c.name, err, c.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case there != c.there:
			t.Errorf("%s: there = %v, want %v (%s)", c.name, there, c.there, why)
		case !there && !strings.Contains(why, fmt.Sprintf("answered %d without a payload status", c.code)):
			t.Errorf("%s: why %q does not say what was answered", c.name, why)
		}
	}
}

// The applied topic's bookkeeping, event by event: a redelivery's
// duplicate event is not counted again (nor is its applied_at a
// latency), an event that comes before its payload's 200 answer is kept
// for it, a payload whose only event is a duplicate is applied without a
// latency, and events for payloads never sampled are forgotten.
func TestLoadgenTopicFollowerCountsEachPayloadOnce(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := &topicFollower{
		topic: "applied", poison: "poison", keepUnsampled: 10 * time.Second, registered: make(chan struct{}),
		seen: map[string]*topicEvents{}, followed: map[string]time.Time{}, changed: make(chan struct{}, 1),
	}
	ids := make(chan sampled, 10)
	f.watch(ids)
	applied := func(id string, at time.Duration, dup bool) {
		f.observe(id, false, messages.AppliedEvent{PayloadID: id, AppliedAt: t0.Add(at), Duplicate: dup}, t0.Add(at))
	}
	// "early" is applied before loadgen read its answer.
	applied("early", 30*time.Millisecond, false)
	ids <- sampled{"early", t0.Add(10 * time.Millisecond)}
	ids <- sampled{"twice", t0}
	ids <- sampled{"dup-first", t0}
	ids <- sampled{"only-dup", t0}
	ids <- sampled{"poisoned", t0}
	ids <- sampled{"never", t0}
	close(ids)
	<-f.registered
	applied("twice", 5*time.Millisecond, false)
	applied("twice", 900*time.Millisecond, true)
	applied("dup-first", 700*time.Millisecond, true)
	applied("dup-first", 40*time.Millisecond, false)
	applied("only-dup", 50*time.Millisecond, true)
	f.observe("poisoned", true, messages.AppliedEvent{}, t0)
	applied("stranger", 0, false) // never sampled: forgotten once old
	applied("other", 20*time.Second, false)
	if _, kept := f.seen["stranger"]; kept {
		t.Errorf("an event for a payload never sampled is kept past keepUnsampled")
	}
	rep := f.wait(context.Background(), Options{E2ESample: 1, E2ETimeout: 50 * time.Millisecond})
	want := E2EReport{Via: "topic", Topic: "applied", PoisonTopic: "poison", LatencyFrom: "sent_at", Sample: 1, TimeoutS: 0.05,
		Followed: 6, Applied: 4, Poisoned: 1, NotApplied: 1, DuplicateEvents: 3, Unmeasured: 1}
	got := *rep
	got.LatencyUS = Latencies{}
	if got != want {
		t.Errorf("report %+v\nwant   %+v", got, want)
	}
	// Latencies: early 20ms, twice 5ms, dup-first 40ms; never a duplicate's.
	if l := rep.LatencyUS; us(l.P50) < 19*time.Millisecond || us(l.P50) > 21*time.Millisecond || us(l.Max) < 39*time.Millisecond || us(l.Max) > 41*time.Millisecond {
		t.Errorf("Latencies %+v; want p50 20ms and max 40ms", l)
	}
}

// --fail-if's conditions, both ways: durations, counts and ratios (as a
// fraction or a percentage), each crossed only past its limit.
func TestLoadgenFailIfBothWays(t *testing.T) {
	conds, err := parseFailIf("p95>20ms, min<1ms, success<0.99, error_rate>1%, errors>0, stddev>5ms")
	if err != nil {
		t.Fatal(err)
	}
	rep := &Report{Success: 0.985, ErrorRate: 0.01, Errors: 0,
		LatencyUS: Latencies{Min: 1500, P95: 20_000, StdDev: 5001}}
	var crossed []string
	for _, c := range conds {
		if _, x := c.check(rep); x {
			crossed = append(crossed, c.text)
		}
	}
	if want := []string{"success<0.99", "stddev>5ms"}; fmt.Sprint(crossed) != fmt.Sprint(want) {
		t.Errorf("crossed %v, want %v (p95 at its limit, min above it, error rate at 1%%, no errors)", crossed, want)
	}
}

// A results file whose run was killed (no last line) still reports: the
// window ends at the last send, and the report says why.
func TestLoadgenReportOfAKilledRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.jsonl")
	lines := `{"run":{"target":"http://127.0.0.1:1/api/activities","rate":10,"connections":4,"mix":"insert","random_seed":9}}
{"at_us":0,"kind":"insert","code":200,"latency_us":2000,"bytes_out":10,"bytes_in":20}
{"at_us":100000,"kind":"insert","code":503,"latency_us":4000,"bytes_out":10,"bytes_in":20}
{"at_us":200000,"kind":"insert","code":0,"error":"reset","late":true,"bytes_out":10,"bytes_in":0}
`
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errs strings.Builder
	if code := ReportFile(path, ReportOptions{Format: "json"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var rep Report
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 3 || rep.Answered != 2 || rep.Errors != 1 || rep.Late != 1 || rep.Status["503"] != 1 || rep.RandomSeed != 9 ||
		rep.DurationS != 0.2 || rep.LatencyUS.Min != 2000 || rep.LatencyUS.Max < 4000 || !strings.Contains(rep.Setup, "killed") {
		t.Errorf("report of a killed run: %+v", rep)
	}
	if math.Abs(rep.Success-1.0/3) > 1e-9 || math.Abs(rep.ErrorRate-1.0/3) > 1e-9 {
		t.Errorf("success %v, error rate %v; want a third each", rep.Success, rep.ErrorRate)
	}
	out.Reset()
	if code := ReportFile(path, ReportOptions{Format: "hist", Buckets: "0,3ms"}, &out, &errs); code != 0 ||
		!regexp.MustCompile(`\[0s, +3ms\) +1 +33\.33%`).MatchString(out.String()) || !regexp.MustCompile(`no answer +1 +33\.33%`).MatchString(out.String()) {
		t.Errorf("hist: exit %d\n%s", code, out.String())
	}
	if code := ReportFile(path, ReportOptions{Format: "hist", Buckets: "5ms,1ms"}, &out, &errs); code != 2 {
		t.Errorf("descending buckets: exit %d, want 2", code)
	}
}
