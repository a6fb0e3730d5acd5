package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/iterator"

	"github.com/gatekeeper/gatekeeper/loadgen"
	"github.com/gatekeeper/gatekeeper/pipeline"
)

// Every bad flag is a usage error (exit 2) that says what is wrong, before
// anything is sent.
func TestLoadgenFlagsAreChecked(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{nil, "--duration or --requests is required"},
		{[]string{"--rate", "10", "--requests", "5"}, "--rate needs --duration"},
		{[]string{"--duration", "2h"}, "--duration 2h0m0s: want more than 0 and at most 1h0m0s"},
		{[]string{"--requests", "20000000"}, "--requests 20000000: want 1 to 10000000"},
		{[]string{"--duration", "1s", "--rate", "1e6"}, "--rate 1e+06: want more than 0 and at most 100000"},
		{[]string{"--duration", "1s", "--connections", "5000"}, "--connections 5000: want 1 to 4096"},
		{[]string{"--duration", "1s", "--target", "http://example.com:8080"}, `--target "http://example.com:8080" is not a loopback address; pass --allow-remote`},
		{[]string{"--duration", "1s", "--target", "http://10.0.0.1:8080"}, "is not a loopback address"},
		{[]string{"--duration", "1s", "--target", "ftp://127.0.0.1"}, "want http://HOST:PORT"},
		{[]string{"--duration", "1s", "--mix", "locust,frob"}, `--mix "frob": want locust, insert, invalid or file:PATH`},
		{[]string{"--duration", "1s", "--mix", "locust=0"}, `weight "0": want 1 to 1000`},
		{[]string{"--duration", "1s", "--mix", "file:/nonexistent/x.jsonl"}, "--mix file:/nonexistent/x.jsonl: open /nonexistent/x.jsonl"},
		{[]string{"--duration", "1s", "--fail-if", "p99=50ms"}, `--fail-if "p99=50ms": want NAME>VALUE or NAME<VALUE`},
		{[]string{"--duration", "1s", "--fail-if", "p99>=50ms"}, `--fail-if "p99>=50ms": want NAME>VALUE or NAME<VALUE`},
		{[]string{"--duration", "1s", "--fail-if", "success<1.5"}, `"1.5" is not a ratio like 0.99 or 99%`},
		{[]string{"--duration", "1s", "--fail-if", "error_rate>x%"}, `"x%" is not a ratio like 0.99 or 99%`},
		{[]string{"--duration", "1s", "--fail-if", "p99>fast"}, `"fast" is not a duration like 50ms`},
		{[]string{"--duration", "1s", "--fail-if", "non2xx>-1"}, `"-1" is not a count`},
		{[]string{"--duration", "1s", "--fail-if", "p98>1ms"}, `unknown "p98"`},
		{[]string{"--duration", "1s", "extra"}, `unexpected argument "extra"`},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"loadgen"}, c.args...), &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.want) || stdout.Len() > 0 {
			t.Errorf("loadgen %v: exit %d, stderr %q, stdout %q; want 2 and %q", c.args, code, stderr.String(), stdout.String(), c.want)
		}
	}
	// --allow-remote lifts the loopback rule, and only that rule: a
	// request limit is still required.
	var stderr bytes.Buffer
	if code := run([]string{"loadgen", "--allow-remote", "--target", "http://example.com"}, &bytes.Buffer{}, &stderr); code != 2 ||
		strings.Contains(stderr.String(), "loopback") || !strings.Contains(stderr.String(), "--duration or --requests is required") {
		t.Errorf("--allow-remote: exit %d, %q", code, stderr.String())
	}
}

// A load run against nothing listening reports refused connections and
// exits 1: nothing was measured.
func TestLoadgenReportsRefusedConnections(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run([]string{"loadgen", "--target", "http://" + freeAddr(t), "--requests", "5", "--json"}, &stdout, &stderr)
	rep := decodeReport(t, stdout.String())
	if code != 1 || rep.Errors != 5 || rep.ErrorsByKind["refused"] != 5 || rep.Answered != 0 {
		t.Errorf("exit %d, report %+v, stderr %s", code, rep, stderr.String())
	}
}

func decodeReport(t *testing.T, out string) loadgen.Report {
	t.Helper()
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	return rep
}

// checkCounts requires the report's counts to add up.
func checkCounts(t *testing.T, name string, rep loadgen.Report) {
	t.Helper()
	var byStatus, byKind int64
	for _, n := range rep.Status {
		byStatus += n
	}
	for _, n := range rep.Kinds {
		byKind += n
	}
	if rep.Sent != rep.Answered+rep.Errors || byStatus != rep.Answered || byKind != rep.Sent {
		t.Errorf("%s: counts do not add up: sent %d, answered %d, errors %d, by status %d, by kind %d",
			name, rep.Sent, rep.Answered, rep.Errors, byStatus, byKind)
	}
	if rep.Model == "open" && rep.Sent+rep.Dropped != rep.Intended {
		t.Errorf("%s: sent %d + dropped %d != intended %d", name, rep.Sent, rep.Dropped, rep.Intended)
	}
}

// loadgen against a real service: a fixed rate for a bounded 2 s, counts
// that add up, the rate it promised, weights, --fail-if both ways, the
// invalid mix's 400s, every unique row landing, and --e2e latencies.
func TestLoadgenAgainstService(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startService(t, dir, nil)
	target := "http://" + s.addr

	// 1. Unique inserts at 50/s for 2 s, followed to applied.
	r := gk(t, dir, nil, "loadgen", "--target", target, "--rate", "50", "--duration", "2s", "--mix", "insert", "--unique",
		"--e2e", "--e2e-sample", "5", "--json", "--fail-if", "p99>30s,errors>0")
	rep := decodeReport(t, r.stdout)
	if r.code != 0 {
		t.Fatalf("unique inserts: exit %d, stderr %s", r.code, r.stderr)
	}
	checkCounts(t, "unique inserts", rep)
	if rep.Intended != 100 || rep.Status["200"] != rep.Sent || math.Abs(rep.AchievedRate-50) > 5 || rep.DurationS < 1.9 {
		t.Errorf("unique inserts: intended %d, status %v, achieved %.1f/s over %.2fs; want 100, all 200, 50/s over 2s",
			rep.Intended, rep.Status, rep.AchievedRate, rep.DurationS)
	}
	if rep.LatencyUS.P50 <= 0 || rep.LatencyUS.Max < rep.LatencyUS.P99 || rep.BytesSent == 0 || rep.BytesReceived == 0 {
		t.Errorf("unique inserts: latency %+v, bytes %d/%d", rep.LatencyUS, rep.BytesSent, rep.BytesReceived)
	}
	if e := rep.E2E; e == nil || e.Followed != rep.Status["200"]/5 || e.Applied != e.Followed || e.LatencyUS.P50 <= 0 || e.LatencyUS.Max < e.LatencyUS.P50 {
		t.Errorf("--e2e: %+v, want 1 in 5 of %d followed and all applied", e, rep.Status["200"])
	}
	if e := rep.E2E; e == nil || e.Via != "status" || e.LatencyFrom != "received_at" {
		t.Errorf("--e2e against a service that serves the status API: %+v, want via status, from received_at", e)
	}
	if !strings.Contains(r.stderr, "loadgen:   1s") {
		t.Errorf("no progress line on stderr:\n%s", r.stderr)
	}

	// Every accepted insert is a row of its own: as many distinct keys as 200s.
	distinct := func() int {
		rows := gk(t, dir, map[string]string{"ADMIN_ADDR": s.adminAddr}, "rows", "table1", "--limit", "1000")
		keys := map[any]bool{}
		for _, l := range lines(rows.stdout) {
			var row map[string]any
			if json.Unmarshal([]byte(l), &row) == nil {
				keys[row["a"]] = true
			}
		}
		return len(keys)
	}
	if !eventually(30*time.Second, 100*time.Millisecond, func() bool { return int64(distinct()) == rep.Status["200"] }) {
		t.Errorf("--unique: %d distinct keys in table1, want %d (one per accepted insert)", distinct(), rep.Status["200"])
	}

	// 1b. The same, read from the applied topic of the service's embedded
	// Pub/Sub, through the settings serve reads.
	viaTopic := map[string]string{"PUBSUB_EMBEDDED_ADDR": s.pubsubAddr}
	r = gk(t, dir, viaTopic, "loadgen", "--target", target, "--rate", "50", "--duration", "1s", "--mix", "insert", "--unique",
		"--e2e", "--e2e-sample", "5", "--e2e-via", "topic", "--json")
	rep = decodeReport(t, r.stdout)
	if e := rep.E2E; r.code != 0 || e == nil || e.Via != "topic" || e.Topic != "db-transaction-topic-applied" || e.LatencyFrom != "sent_at" ||
		e.Followed != rep.Status["200"]/5 || e.Followed == 0 || e.Applied != e.Followed || e.Unmeasured != 0 || e.LatencyUS.P50 <= 0 || e.LatencyUS.Max < e.LatencyUS.P50 {
		t.Errorf("--e2e-via topic: exit %d, %+v; want 1 in 5 of %d followed on the applied topic, all applied with a latency; stderr %s",
			r.code, e, rep.Status["200"], r.stderr)
	}
	// The text report says which way, and from when latency counts.
	r = gk(t, dir, viaTopic, "loadgen", "--target", target, "--requests", "4", "--mix", "insert", "--e2e", "--e2e-sample", "1", "--e2e-via", "topic")
	for _, want := range []string{"e2e         via the applied topic db-transaction-topic-applied: 4 followed: 4 applied, 0 poisoned, 0 not applied within 30s\n",
		"(send → applied event: from loadgen's send time, as the ingest answer carries no received time)\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text report of --e2e-via topic lacks %q:\n%s", want, r.stdout)
		}
	}
	r = gk(t, dir, viaTopic, "loadgen", "--target", target, "--requests", "4", "--mix", "insert", "--e2e", "--e2e-sample", "1")
	if !strings.Contains(r.stdout, "e2e         via the status API: 4 followed: 4 applied") || !strings.Contains(r.stdout, "(received → applied, from the status API)") {
		t.Errorf("text report of --e2e-via auto on a service with the status API:\n%s", r.stdout)
	}
	// Ctrl-C in topic mode: the report of what was sent, and nothing left
	// on the Pub/Sub.
	interrupted(t, dir, viaTopic, s.pubsubAddr, "db-transaction-topic-applied", "db-transaction-topic-poison",
		"loadgen", "--target", target, "--rate", "20", "--duration", "1m", "--mix", "insert", "--e2e", "--e2e-sample", "1", "--e2e-via", "topic", "--json")
	if left := loadgenSubscriptions(t, s.pubsubAddr, "gatekeeper-local", "db-transaction-topic-applied", "db-transaction-topic-poison"); len(left) > 0 {
		t.Errorf("loadgen left its subscriptions behind: %v", left)
	}

	// 2. The locust mix weighted 8:2 with invalid payloads: about a fifth
	// are 400s, and non2xx>0 and success<0.99 fail the run; p95>30s and
	// error_rate>0 do not.
	r = gk(t, dir, nil, "loadgen", "--target", target, "--rate", "100", "--duration", "2s", "--mix", "locust=8,invalid=2",
		"--json", "--fail-if", "non2xx>0,p99>30s,p95>30s,success<0.99,error_rate>0")
	rep = decodeReport(t, r.stdout)
	checkCounts(t, "locust=8,invalid=2", rep)
	share := float64(rep.Kinds["invalid"]) / float64(rep.Sent)
	if r.code != 1 || !strings.Contains(r.stderr, "threshold crossed: non2xx>0") || !strings.Contains(r.stderr, "threshold crossed: success<0.99") ||
		strings.Contains(r.stderr, "p99>30s") || strings.Contains(r.stderr, "p95>30s") || strings.Contains(r.stderr, "error_rate>0") {
		t.Errorf("locust=8,invalid=2 with --fail-if non2xx>0,success<0.99: exit %d, stderr %s", r.code, r.stderr)
	}
	if share < 0.1 || share > 0.3 || rep.Status["400"] != rep.Kinds["invalid"] || rep.Status["200"] != rep.Kinds["locust"] {
		t.Errorf("locust=8,invalid=2: kinds %v (invalid share %.2f), status %v", rep.Kinds, share, rep.Status)
	}
	if want := float64(rep.Status["200"]) / float64(rep.Sent); math.Abs(rep.Success-want) > 1e-9 || rep.ErrorRate != 0 {
		t.Errorf("locust=8,invalid=2: success %v error rate %v, want %v and 0", rep.Success, rep.ErrorRate, want)
	}

	// 3. The invalid mix, closed model: 400s only, and the text report.
	r = gk(t, dir, nil, "loadgen", "--target", target, "--connections", "2", "--requests", "90", "--mix", "invalid")
	if r.code != 0 || !strings.Contains(r.stdout, "requests    90 sent, 90 answered, 0 errors") ||
		!strings.Contains(r.stdout, "status      400 90\n") || !strings.Contains(r.stdout, "model       closed: 2 connections") {
		t.Errorf("invalid mix: exit %d, report:\n%s\nstderr %s", r.code, r.stdout, r.stderr)
	}
}

// The locust mix on a fresh service poisons nothing: its table is created
// before the load, so no delete finds it missing; every payload is
// followed to the end, and the report says none was poisoned. Its results
// file reports again exactly as the run did, and as buckets and .hgrm.
func TestLoadgenLocustMixPoisonsNothingAndReportsAgain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startService(t, dir, nil)
	out := filepath.Join(dir, "results.jsonl")
	args := []string{"loadgen", "--target", "http://" + s.addr, "--connections", "4", "--requests", "120", "--seed", "3",
		"--e2e", "--e2e-sample", "1", "--output", out}
	r := gk(t, dir, nil, args...)
	if r.code != 0 {
		t.Fatalf("locust mix: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"mix         locust, random seed 3; sent by component: locust 120\n",
		"e2e         via the status API: 120 followed: 120 applied, 0 poisoned, 0 not applied within 30s\n",
		"setup       table1 insert "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, r.stdout)
		}
	}
	// Asked of the service, which must answer: an empty answer from no
	// service would prove nothing.
	if summary := gk(t, dir, map[string]string{"ADMIN_ADDR": s.adminAddr}, "poison", "list"); summary.code != 0 || strings.Contains(summary.stdout, "table1") {
		t.Errorf("poison list after the locust mix: exit %d, want 0 and none of table1's poisoned:\n%s%s", summary.code, summary.stdout, summary.stderr)
	}

	again := gk(t, dir, nil, "loadgen", "report", out)
	if again.code != 0 || again.stdout != r.stdout {
		t.Errorf("loadgen report: exit %d, report\n%s\nwant the run's own\n%s%s", again.code, again.stdout, r.stdout, again.stderr)
	}
	j := gk(t, dir, nil, "loadgen", "report", out, "--format", "json")
	if rep := decodeReport(t, j.stdout); rep.Sent != 120 || rep.Status["200"] != 120 || rep.RandomSeed != 3 || rep.E2E == nil || rep.E2E.Poisoned != 0 ||
		rep.LatencyUS.Min <= 0 || rep.LatencyUS.Mean < rep.LatencyUS.Min || rep.LatencyUS.P95 < rep.LatencyUS.P90 || rep.LatencyUS.StdDev <= 0 {
		t.Errorf("loadgen report --format json: %+v", rep)
	}
	h := gk(t, dir, nil, "loadgen", "report", out, "--format", "hist", "--buckets", "0,10ms,1s")
	var total int64
	for _, l := range lines(h.stdout)[1:] {
		f := strings.Fields(strings.NewReplacer("[", "", ",", " ", ")", "").Replace(l))
		var n int64 // the count is before the share, which a bar may follow
		if strings.HasSuffix(f[len(f)-1], "%") {
			fmt.Sscan(f[len(f)-2], &n)
		} else {
			fmt.Sscan(f[len(f)-3], &n)
		}
		total += n
	}
	if h.code != 0 || !strings.Contains(h.stdout, "[0s,") || !strings.Contains(h.stdout, "+Inf)") || total != 120 {
		t.Errorf("loadgen report --format hist: exit %d, %d counted, want 120:\n%s%s", h.code, total, h.stdout, h.stderr)
	}
	g := gk(t, dir, nil, "loadgen", "report", out, "--format", "hgrm")
	if g.code != 0 || !strings.Contains(g.stdout, "Value") || !strings.Contains(g.stdout, "Percentile") || !strings.Contains(g.stdout, "Total count    =          120") {
		t.Errorf("loadgen report --format hgrm: exit %d\n%s%s", g.code, g.stdout, g.stderr)
	}
	if bad := gk(t, dir, nil, "loadgen", "report", filepath.Join(dir, "gatekeeper.db")); bad.code != 1 || !strings.Contains(bad.stderr, "gatekeeper loadgen report:") {
		t.Errorf("loadgen report on a file that is not results: exit %d, stderr %s", bad.code, bad.stderr)
	}
}

// Every --flag that docs/load-testing.md's loadgen section names is one of
// loadgen's.
func TestLoadgenDocNamesRealFlags(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/load-testing.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## gatekeeper loadgen\n")
	if !ok {
		t.Fatal(`docs/load-testing.md has no "## gatekeeper loadgen" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var help bytes.Buffer
	if code := run([]string{"loadgen", "--help"}, &help, &bytes.Buffer{}); code != 0 {
		t.Fatalf("loadgen --help: exit %d", code)
	}
	if code := run([]string{"loadgen", "report", "--help"}, &help, &bytes.Buffer{}); code != 0 || !strings.Contains(help.String(), "\n  --format FORMAT\n") {
		t.Fatalf("loadgen report --help: exit %d, or no --format:\n%s", code, help.String())
	}
	for _, m := range regexp.MustCompile(`--[a-z][a-z0-9-]+`).FindAllString(section, -1) {
		if !regexp.MustCompile(`\n  ` + m + `( [A-Z][^\n]*)?\n`).MatchString(help.String()) { // --rate N
			t.Errorf("docs/load-testing.md's loadgen section names %s, which neither loadgen --help nor loadgen report --help lists", m)
		}
	}
}

// Before anything is sent, --e2e refuses to run blind: a forced status
// API that is not there, and a service without it whose Pub/Sub loadgen
// cannot reach, are errors that say what to set.
func TestLoadgenE2EFailsBeforeTheLoadWhenNeitherWayWorks(t *testing.T) {
	t.Parallel()
	var gets, posts atomic.Int64
	older := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		} else {
			gets.Add(1)
		}
		http.NotFound(w, r)
	}))
	defer older.Close()
	noPubSub := map[string]string{"PUBSUB_EMBEDDED_ADDR": freeAddr(t)}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--e2e-via", "status"}, []string{"--e2e-via status, but " + older.URL + " does not serve the status API: GET /api/activities/ID answered 404 without a payload status; use --e2e-via topic"}},
		{nil, []string{"does not serve the status API (GET /api/activities/ID answered 404 without a payload status), and the applied topic cannot be read either",
			"db-transaction-topic-applied on the embedded Pub/Sub at " + noPubSub["PUBSUB_EMBEDDED_ADDR"], "connection refused", "set PUBSUB_EMULATOR_HOST"}},
		{[]string{"--e2e-via", "topic"}, []string{"cannot subscribe to the applied topic", "set PUBSUB_EMULATOR_HOST"}},
	}
	dir := t.TempDir()
	for _, c := range cases {
		gets.Store(0)
		args := append([]string{"loadgen", "--target", older.URL, "--requests", "5", "--e2e"}, c.args...)
		r := gk(t, dir, noPubSub, args...)
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%v: stderr %q, want it to say %q", c.args, r.stderr, w)
			}
		}
		if r.code != 1 || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q; want 1 and no report", c.args, r.code, r.stdout)
		}
		if probes := gets.Load(); (c.args == nil || c.args[1] == "status") && probes != 1 {
			t.Errorf("%v: %d status API probes, want 1", c.args, probes)
		}
	}
	if n := posts.Load(); n != 0 {
		t.Errorf("%d payloads sent; --e2e must fail before the load", n)
	}
	// An unreachable service cannot be probed: that is said too.
	r := gk(t, dir, noPubSub, "loadgen", "--target", "http://"+freeAddr(t), "--requests", "5", "--e2e")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot tell whether") || !strings.Contains(r.stderr, "connection refused") {
		t.Errorf("unreachable service: exit %d, stderr %q", r.code, r.stderr)
	}
}

// olderBuild stands in front of a real service as a build that predates
// the status API would: POST /api/activities reaches the service, and any
// other request gets what Go's mux answers for a route it does not serve.
func olderBuild(t *testing.T, addr string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("POST /api/activities", httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// loadgenSubscriptions lists the subscriptions loadgen made on topics of
// project, on the Pub/Sub at addr.
func loadgenSubscriptions(t *testing.T, addr, project string, topics ...string) []string {
	t.Helper()
	cfg := pipeline.Config{PubSubMode: pipeline.PubSubEmulator, EmulatorHost: addr, ProjectID: project}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := pubsub.NewClient(ctx, project, pipeline.ClientOptions(cfg)...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var subs []string
	for _, topic := range topics {
		it := client.TopicAdminClient.ListTopicSubscriptions(ctx, &pubsubpb.ListTopicSubscriptionsRequest{Topic: "projects/" + project + "/topics/" + topic})
		for {
			name, err := it.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				t.Fatalf("list the subscriptions of %s: %v", topic, err)
			}
			if strings.Contains(name, "/gatekeeper-loadgen-") {
				subs = append(subs, name)
			}
		}
	}
	return subs
}

// The applied topic, against a real service on the Pub/Sub emulator (the
// embedded Pub/Sub is TestLoadgenAgainstService's): behind a front that
// does not serve the status API, --e2e-via auto reads the applied topic,
// and the poison topic, through subscriptions it deletes at the end.
// Payloads alternate between an insert and a delete on a table that does
// not exist (poisoned at once), so both counts are known.
func TestLoadgenE2EViaAppliedTopicOnEmulator(t *testing.T) {
	t.Parallel()
	host := os.Getenv("PUBSUB_EMULATOR_HOST")
	if host == "" {
		t.Skip("PUBSUB_EMULATOR_HOST is not set: loadgen --e2e was not run against the applied topic on the Pub/Sub emulator")
	}
	dir := t.TempDir()
	unique := fmt.Sprintf("loadgen-%d-%d", os.Getpid(), time.Now().UnixNano())
	env := map[string]string{"PUBSUB_EMULATOR_HOST": host, "PUBSUB_EMBEDDED_ADDR": "", "TOPIC_ID": unique, "SUBSCRIPTION_ID": unique + "-sub"}
	s := startService(t, dir, env)
	if s.pubsubAddr != host {
		t.Fatalf("service uses Pub/Sub at %q, want the emulator %q", s.pubsubAddr, host)
	}
	mix := filepath.Join(dir, "mix.jsonl")
	var poisoned bytes.Buffer
	if err := json.Compact(&poisoned, []byte(stuck)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mix, []byte(fmt.Sprintf(seedInsert, "7")+"\n"+poisoned.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := map[string]string{"PUBSUB_EMULATOR_HOST": host, "TOPIC_ID": unique}
	r := gk(t, dir, cli, "loadgen", "--target", olderBuild(t, s.addr), "--requests", "20", "--mix", "file:"+mix,
		"--e2e", "--e2e-sample", "1", "--e2e-timeout", "30s", "--json")
	rep := decodeReport(t, r.stdout)
	if r.code != 0 || rep.Status["200"] != 20 {
		t.Fatalf("exit %d, status %v, stderr %s", r.code, rep.Status, r.stderr)
	}
	e := rep.E2E
	if e == nil || e.Via != "topic" || e.Topic != unique+"-applied" || e.PoisonTopic != unique+"-poison" || e.LatencyFrom != "sent_at" {
		t.Fatalf("--e2e: %+v; want the applied topic %s-applied read, latency from the send", e, unique)
	}
	if e.Followed != 20 || e.Applied != 10 || e.Poisoned != 10 || e.NotApplied != 0 || e.Unmeasured != 0 {
		t.Errorf("--e2e: %d followed, %d applied, %d poisoned, %d not applied, %d unmeasured; want 20, 10, 10, 0, 0",
			e.Followed, e.Applied, e.Poisoned, e.NotApplied, e.Unmeasured)
	}
	if e.LatencyUS.P50 <= 0 || e.LatencyUS.Max < e.LatencyUS.P50 || e.LatencyUS.Max > int64(time.Minute/time.Microsecond) {
		t.Errorf("--e2e latency %+v", e.LatencyUS)
	}
	if left := loadgenSubscriptions(t, host, "gatekeeper-local", unique+"-applied", unique+"-poison"); len(left) > 0 {
		t.Errorf("loadgen left its subscriptions behind: %v", left)
	}
}

// interrupted runs a gatekeeper command, sends it SIGINT after its first
// progress line (while its subscriptions on topics exist), and checks that
// it still reports, in JSON, and followed what it had accepted.
func interrupted(t *testing.T, dir string, env map[string]string, pubsubAddr string, appliedTopic, poisonTopic string, args ...string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Dir, cmd.Env = dir, childEnv(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	progressed := make(chan struct{})
	var log bytes.Buffer
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "loadgen:   1s") {
				close(progressed)
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-progressed:
	case <-exited:
		t.Fatalf("%v exited before its first progress line:\n%s", args, log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%v: no progress line after 30 s", args)
	}
	if subs := loadgenSubscriptions(t, pubsubAddr, "gatekeeper-local", appliedTopic, poisonTopic); len(subs) != 2 {
		t.Errorf("during the load, loadgen's subscriptions are %v; want one on each of %s and %s", subs, appliedTopic, poisonTopic)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("%v still running 20 s after SIGINT", args)
	}
	rep := decodeReport(t, stdout.String())
	if e := rep.E2E; rep.Sent == 0 || rep.DurationS > 30 || e == nil || e.Followed != rep.Status["200"] ||
		e.Applied+e.Poisoned+e.NotApplied != e.Followed {
		t.Errorf("after SIGINT: sent %d over %.1fs, status %v, e2e %+v; stderr:\n%s", rep.Sent, rep.DurationS, rep.Status, e, log.String())
	}
}

// seedInsert is loadgen's seed insert, with %s for the key in column a.
const seedInsert = `{"activities":[{"operation":"insert","table":"table1","col_names":["a","b","c","e"],"col_types":["INTEGER","TEXT","TEXT","TEXT"],"col_values":[%s,"Disaster Recovery","2019-04-28 10:24:30.183414","something"]}]}`
