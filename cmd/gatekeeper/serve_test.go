package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var textLogLine = regexp.MustCompile(`^time=\S+ level=(DEBUG|INFO|WARN|ERROR) msg=`)

// checkJSONLog requires every line to be one JSON object with slog's time,
// level and msg.
func checkJSONLog(t *testing.T, logs []string) {
	t.Helper()
	for i, line := range logs {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Errorf("log line %d is not a JSON object: %q", i, line)
			continue
		}
		ts, _ := obj["time"].(string)
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("log line %d: time %v: %v", i, obj["time"], err)
		}
		switch obj["level"] {
		case "DEBUG", "INFO", "WARN", "ERROR":
		default:
			t.Errorf("log line %d: level %v", i, obj["level"])
		}
		if msg, _ := obj["msg"].(string); msg == "" {
			t.Errorf("log line %d: no msg: %q", i, line)
		}
	}
}

func checkTextLog(t *testing.T, logs []string) {
	t.Helper()
	for i, line := range logs {
		if !textLogLine.MatchString(line) || json.Valid([]byte(line)) {
			t.Errorf("log line %d is not a slog text line: %q", i, line)
		}
	}
}

// serveAndStop runs a service through a poisoned payload and a SIGTERM
// and returns its whole stderr.
func serveAndStop(t *testing.T, dir string, env map[string]string) []string {
	t.Helper()
	s := startService(t, dir, env)
	p := s.post(t, stuck)
	s.waitLog(t, 15*time.Second, func(line string) bool {
		return logField(line, "msg") == "Payload poisoned" && logField(line, "payload_id") == p.ID
	})
	if code := s.terminate(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, s.logs)
	}
	logs, _ := s.logs.snapshot()
	last := logs[len(logs)-1]
	if logField(last, "msg") != "Stopped cleanly" {
		t.Errorf("last log line %q, want Stopped cleanly", last)
	}
	return logs
}

// LOG_FORMAT=json: every line serve writes on stderr is a JSON object with
// time, level and msg; otherwise (unset, or text) slog's text lines.
func TestLogFormat(t *testing.T) {
	t.Parallel()
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		logs := serveAndStop(t, t.TempDir(), map[string]string{"LOG_FORMAT": "json"})
		checkJSONLog(t, logs)
		var warned bool
		for _, line := range logs {
			var obj map[string]any
			if json.Unmarshal([]byte(line), &obj) == nil && obj["msg"] == "Payload poisoned" {
				warned = obj["level"] == "WARN" && obj["class"] == "permanent" && obj["payload_id"] != "" &&
					obj["tables"] == "missing_forever" && strings.Contains(obj["reason"].(string), "table not found")
			}
		}
		if !warned {
			t.Errorf("no WARN payload poisoned line with class, payload_id, tables and reason as fields")
		}
	})
	for _, format := range []string{"", "text"} {
		t.Run("text/LOG_FORMAT="+format, func(t *testing.T) {
			t.Parallel()
			logs := serveAndStop(t, t.TempDir(), map[string]string{"LOG_FORMAT": format})
			checkTextLog(t, logs)
		})
	}
}

// readyStubs are two fake services: one whose /readyz answers 200, one 503.
func readyStubs(t *testing.T) (ready, unready string) {
	okSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(okSrv.Close)
	badSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "stub says no", http.StatusServiceUnavailable)
	}))
	t.Cleanup(badSrv.Close)
	return strings.TrimPrefix(okSrv.URL, "http://"), strings.TrimPrefix(badSrv.URL, "http://")
}

// A .env file in the working directory sets what the environment lacks;
// the environment wins over it; flags win over both. Seen through
// healthcheck (HTTP_ADDR, a configuration setting) and serve's log format
// (LOG_FORMAT, read on its own).
func TestDotEnv(t *testing.T) {
	t.Parallel()
	ready, unready := readyStubs(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("# test\nHTTP_ADDR="+ready+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := gk(t, dir, nil, "healthcheck"); r.code != 0 {
		t.Errorf(".env HTTP_ADDR=ready stub, environment without it: exit %d, stderr %q; want 0 (the .env value)", r.code, r.stderr)
	}
	r := gk(t, dir, map[string]string{"HTTP_ADDR": unready}, "healthcheck")
	if r.code != 1 || !strings.Contains(r.stderr, "503 stub says no") {
		t.Errorf(".env ready, environment unready: exit %d, stderr %q; want 1 and the 503 (the environment wins)", r.code, r.stderr)
	}
	if r := gk(t, dir, map[string]string{"HTTP_ADDR": unready}, "healthcheck", "--http-addr", ready); r.code != 0 {
		t.Errorf("flag ready over environment unready: exit %d, stderr %q; want 0", r.code, r.stderr)
	}
	// the working directory's .env, not the binary's or the test's
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, ".env"), []byte("HTTP_ADDR="+unready+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := gk(t, other, nil, "healthcheck"); r.code != 1 || !strings.Contains(r.stderr, "503 stub says no") {
		t.Errorf("another directory's .env: exit %d, stderr %q; want its own HTTP_ADDR (1, 503)", r.code, r.stderr)
	}

	t.Run("LOG_FORMAT", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("LOG_FORMAT=json\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// serviceEnv sets LOG_FORMAT=json; "" leaves it out of the environment
		checkJSONLog(t, serveAndStop(t, dir, map[string]string{"LOG_FORMAT": ""}))
		checkTextLog(t, serveAndStop(t, dir, map[string]string{"LOG_FORMAT": "text"}))
	})
}

// series is one sample of a Prometheus text exposition.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

var labelPair = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

func parseExposition(t *testing.T, body string) []series {
	t.Helper()
	var out []series
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("exposition line %q: %v", line, err)
		}
		s := series{labels: map[string]string{}, value: v}
		head := line[:i]
		if j := strings.IndexByte(head, '{'); j >= 0 {
			s.name = head[:j]
			for _, m := range labelPair.FindAllStringSubmatch(head[j:], -1) {
				s.labels[m[1]] = m[2]
			}
		} else {
			s.name = head
		}
		out = append(out, s)
	}
	return out
}

// find returns the value of the one series with name and at least labels.
func find(ss []series, name string, labels map[string]string) (float64, bool) {
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for k, v := range labels {
			if s.labels[k] != v {
				continue next
			}
		}
		return s.value, true
	}
	return 0, false
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(body)
}

// With PUSHGATEWAY_PROMETHEUS_HOST set, metrics are pushed once at exit:
// with a push interval of an hour, the only push a SIGTERMed process can
// have made is that one, and it carries the final counts.
//
// The service pushes as job PUSH_JOB, instance = the host name. The job is
// this test's own, so no other test's pushes land in its group, and this
// process is told apart from earlier runs by its process_start_time_seconds,
// read from its own /metrics before it stops.
func TestMetricsArePushedAtExit(t *testing.T) {
	t.Parallel()
	gateway := os.Getenv("GATEKEEPER_TEST_PUSHGATEWAY")
	if gateway == "" {
		t.Skip("GATEKEEPER_TEST_PUSHGATEWAY is not set (host:port of a Prometheus Pushgateway): the push at exit was not tested")
	}
	instance, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	job := "gatekeeper-cmdtest-exit"
	group := map[string]string{"job": job, "instance": instance}
	s := startService(t, t.TempDir(), map[string]string{"PUSHGATEWAY_PROMETHEUS_HOST": gateway, "PUSH_INTERVAL": "1h", "PUSH_JOB": job})
	s.post(t, `{"activities":[{"operation":"insert","table":"pushed","col_names":["n"],"col_types":["INTEGER"],"col_values":[1]}]}`)

	var own []series
	if !eventually(15*time.Second, 50*time.Millisecond, func() bool {
		own = parseExposition(t, getBody(t, "http://"+s.addr+"/metrics"))
		v, _ := find(own, "gatekeeper_payloads_total", map[string]string{"outcome": "applied"})
		return v == 1
	}) {
		t.Fatal("the payload was not applied")
	}
	started, ok := find(own, "process_start_time_seconds", nil)
	if !ok {
		t.Fatal("the service's /metrics has no process_start_time_seconds")
	}
	ours := func(ss []series) bool {
		v, ok := find(ss, "process_start_time_seconds", group)
		return ok && v == started
	}
	if ours(parseExposition(t, getBody(t, "http://"+gateway+"/metrics"))) {
		t.Fatal("the Pushgateway has this process's metrics before it stopped, with PUSH_INTERVAL=1h")
	}

	stoppedAt := time.Now()
	if code := s.terminate(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, s.logs)
	}
	var pushed []series
	var body string
	if !eventually(10*time.Second, 100*time.Millisecond, func() bool {
		body = getBody(t, "http://"+gateway+"/metrics")
		pushed = parseExposition(t, body)
		return ours(pushed)
	}) {
		t.Fatalf("no push from this process (process_start_time_seconds %v) in group %v after its exit; Pushgateway:\n%s\nservice log:\n%s",
			started, group, body, s.logs)
	}
	for outcome, want := range map[string]float64{"accepted": 1, "applied": 1, "rejected": 0, "poisoned": 0} {
		labels := map[string]string{"job": job, "instance": instance, "outcome": outcome}
		if v, ok := find(pushed, "gatekeeper_payloads_total", labels); !ok || v != want {
			t.Errorf("pushed gatekeeper_payloads_total%v = %v (present %v), want %v", labels, v, ok, want)
		}
	}
	if at, ok := find(pushed, "push_time_seconds", group); !ok || at < float64(stoppedAt.UnixMilli())/1000-1 {
		t.Errorf("push_time_seconds%v = %v, want at or after the SIGTERM (%v)", group, at, float64(stoppedAt.Unix()))
	}
}
