package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Every bad flag is a usage error (exit 2) that says what is wrong, before
// anything is sent.
func TestLoadgenFlagsAreChecked(t *testing.T) {
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
		{[]string{"--duration", "1s", "--mix", "seed,frob"}, `--mix "frob": want seed, insert, invalid or file:PATH`},
		{[]string{"--duration", "1s", "--mix", "seed=0"}, `weight "0": want 1 to 1000`},
		{[]string{"--duration", "1s", "--mix", "file:/nonexistent/x.jsonl"}, "--mix file:/nonexistent/x.jsonl: open /nonexistent/x.jsonl"},
		{[]string{"--duration", "1s", "--fail-if", "p99<50ms"}, `--fail-if "p99<50ms": want NAME>VALUE`},
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
	var stdout, stderr bytes.Buffer
	code := run([]string{"loadgen", "--target", "http://" + freeAddr(t), "--requests", "5", "--json"}, &stdout, &stderr)
	rep := decodeReport(t, stdout.String())
	if code != 1 || rep.Errors != 5 || rep.ErrorsByKind["refused"] != 5 || rep.Answered != 0 {
		t.Errorf("exit %d, report %+v, stderr %s", code, rep, stderr.String())
	}
}

func decodeReport(t *testing.T, out string) loadReport {
	t.Helper()
	var rep loadReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	return rep
}

// checkCounts requires the report's counts to add up.
func checkCounts(t *testing.T, name string, rep loadReport) {
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
	if !strings.Contains(r.stderr, "loadgen:   1s") {
		t.Errorf("no progress line on stderr:\n%s", r.stderr)
	}
	// Every accepted insert is a row of its own: as many distinct keys as 200s.
	distinct := func() int {
		rows := gk(t, dir, map[string]string{"WAREHOUSE": s.env["WAREHOUSE"]}, "rows", "table1", "--limit", "1000")
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

	// 2. The seed mix weighted 8:2 with invalid payloads: about a fifth
	// are 400s, and non2xx>0 fails the run.
	r = gk(t, dir, nil, "loadgen", "--target", target, "--rate", "100", "--duration", "2s", "--mix", "seed=8,invalid=2",
		"--json", "--fail-if", "non2xx>0,p99>30s")
	rep = decodeReport(t, r.stdout)
	checkCounts(t, "seed=8,invalid=2", rep)
	share := float64(rep.Kinds["invalid"]) / float64(rep.Sent)
	if r.code != 1 || !strings.Contains(r.stderr, "threshold crossed: non2xx>0") || strings.Contains(r.stderr, "p99>30s") {
		t.Errorf("seed=8,invalid=2 with --fail-if non2xx>0: exit %d, stderr %s", r.code, r.stderr)
	}
	if share < 0.1 || share > 0.3 || rep.Status["400"] != rep.Kinds["invalid"] || rep.Status["200"] != rep.Kinds["seed"] {
		t.Errorf("seed=8,invalid=2: kinds %v (invalid share %.2f), status %v", rep.Kinds, share, rep.Status)
	}

	// 3. The invalid mix, closed model: 400s only, and the text report.
	r = gk(t, dir, nil, "loadgen", "--target", target, "--connections", "2", "--requests", "90", "--mix", "invalid")
	if r.code != 0 || !strings.Contains(r.stdout, "requests    90 sent, 90 answered, 0 errors") ||
		!strings.Contains(r.stdout, "status      400 90\n") || !strings.Contains(r.stdout, "model       closed: 2 connections") {
		t.Errorf("invalid mix: exit %d, report:\n%s\nstderr %s", r.code, r.stdout, r.stderr)
	}
}

// Every --flag README's "Load testing" section names is one of loadgen's.
func TestLoadgenREADMENamesRealFlags(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Load testing\n")
	if !ok {
		t.Fatal(`README has no "## Load testing" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var help bytes.Buffer
	if code := run([]string{"loadgen", "--help"}, &bytes.Buffer{}, &help); code != 0 {
		t.Fatalf("loadgen --help: exit %d", code)
	}
	for _, m := range regexp.MustCompile(`--[a-z][a-z0-9-]+`).FindAllString(section, -1) {
		if !strings.Contains(help.String(), "\n  "+m+"\n") {
			t.Errorf("README's Load testing section names %s, which loadgen --help does not list", m)
		}
	}
}
