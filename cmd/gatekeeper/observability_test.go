package main

// The dashboard and the alert rules in deploy/ are PromQL that no compiler
// checks: a renamed metric or label leaves a panel silently empty. This test
// runs the real thing: gatekeeper under a mixed load, a real Prometheus (and
// Pushgateway, when there is one) scraping it with the repository's
// prometheus.yml, and every expression of the dashboard and of alerts.yml
// evaluated there.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	_ "modernc.org/sqlite"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

func TestDashboardAndAlertsOnPrometheus(t *testing.T) {
	t.Parallel()
	promBin, promtool := os.Getenv("GATEKEEPER_TEST_PROMETHEUS"), os.Getenv("GATEKEEPER_TEST_PROMTOOL")
	if promBin == "" || promtool == "" {
		t.Skip("GATEKEEPER_TEST_PROMETHEUS and GATEKEEPER_TEST_PROMTOOL are unset: set them to the prometheus and " +
			"promtool binaries (Debian's prometheus package) to check the dashboard and alerts against a real Prometheus")
	}
	compose := readCompose(t)
	gkCompose := compose.Services["gatekeeper"]
	pushJob := gkCompose.Environment["PUSH_JOB"]
	if pushJob == "" {
		pushJob = pipeline.DefaultConfig().PushJob
	}
	dashboardPath := "../../deploy/grafana/dashboards/gatekeeper.json"
	alertsPath := "../../deploy/prometheus/alerts.yml"
	configPath := "../../deploy/prometheus/prometheus.yml"

	// Every selector of a gatekeeper series reads the scraped copy only
	// (prometheus.yml says why); checked before anything runs.
	panels := readDashboard(t, dashboardPath).targets
	alerts := readAlertRules(t, alertsPath)
	for _, e := range append(panelExprs(panels), alerts...) {
		for _, sel := range unscopedSelectors(e.expr) {
			t.Errorf("%s: %s does not select job=%q: it would also count the pushed copy", e.name, sel, gatekeeperScrapeJob)
		}
	}

	// promtool: the rules as they are in the repository, and their unit
	// tests (each alert fires on its condition, after its for, and not on a
	// near miss).
	if out, err := runTool(promtool, "check", "rules", alertsPath); err != nil {
		t.Errorf("promtool check rules %s: %v\n%s", alertsPath, err, out)
	}
	alertTests := "../../deploy/prometheus/alerts_test.yml"
	if out, err := runTool(promtool, "test", "rules", alertTests); err != nil {
		t.Errorf("promtool test rules %s: %v\n%s", alertTests, err, out)
	}

	dir := t.TempDir()
	svcEnv := map[string]string{
		"MAX_BODY_BYTES": "4096", // a small too_large payload
		"RETRY_INITIAL":  "50ms",
	}
	pushAddr := ""
	if bin := os.Getenv("GATEKEEPER_TEST_PUSHGATEWAY_BINARY"); bin != "" {
		pushAddr = freeAddr(t)
		// No persistence file: Debian's default is shared with every other
		// Pushgateway on the machine.
		startBackground(t, "pushgateway", bin, "--web.listen-address="+pushAddr, "--persistence.file=")
		waitHTTP200(t, "pushgateway", "http://"+pushAddr+"/-/ready", 30*time.Second)
		svcEnv["PUSHGATEWAY_PROMETHEUS_HOST"] = pushAddr
		svcEnv["PUSH_INTERVAL"] = "1s"
		svcEnv["PUSH_JOB"] = pushJob
	} else {
		t.Log("GATEKEEPER_TEST_PUSHGATEWAY_BINARY unset: no Pushgateway, so the double-counting check is skipped")
	}
	svc := startService(t, dir, svcEnv)

	// prometheus.yml with its targets turned into this test's processes and
	// 1 s intervals; alerts.yml beside it, as rule_files names it.
	promAddr := freeAddr(t)
	promDir := filepath.Join(dir, "prometheus")
	if err := os.MkdirAll(promDir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, httpPort, _ := net.SplitHostPort(gkCompose.Environment["HTTP_ADDR"])
	unreachable := freeAddr(t) // the Pushgateway's target, when there is none
	if pushAddr != "" {
		unreachable = pushAddr
	}
	targets := map[string]string{
		"gatekeeper:" + httpPort:                             svc.addr,
		gkCompose.Environment["PUSHGATEWAY_PROMETHEUS_HOST"]: unreachable,
		"localhost:9090":                                     promAddr,
	}
	testConfig := rewritePrometheusConfig(t, configPath, promDir, targets)
	if out, err := runTool(promtool, "check", "config", testConfig); err != nil {
		t.Errorf("promtool check config (the test's rewrite of %s): %v\n%s", configPath, err, out)
	}
	startBackground(t, "prometheus", promBin,
		"--config.file="+testConfig,
		"--storage.tsdb.path="+t.TempDir(),
		"--web.listen-address="+promAddr,
	)
	waitHTTP200(t, "prometheus", "http://"+promAddr+"/-/ready", 30*time.Second)
	prom := &promAPI{addr: promAddr}
	prom.waitValue(t, `max(up{job="gatekeeper-scrape"})`, 1, 30*time.Second)

	l := &loader{t: t, addr: svc.addr}
	// First a warehouse outage: SQLite's write lock held by another
	// connection past the apply stage's 5 s busy timeout pauses the
	// stage; released once gatekeeper reports the pause, the payload then
	// applies. First, so that the series it creates are old enough for
	// rate() when the panels are evaluated.
	release := warehousetest.HoldSQLiteLock(t, filepath.Join(dir, "warehouse.db"))
	l.valid()
	if !eventually(30*time.Second, 200*time.Millisecond, func() bool { return scrapeSum(t, svc.addr, "gatekeeper_apply_paused") == 1 }) {
		t.Fatalf("the apply stage did not report a pause in 30 s while the warehouse was locked; log:\n%s", svc.logs)
	}
	release()

	// The load, in phases Prometheus scrapes between, so that every series
	// has samples before and after an increase: rate() and
	// histogram_quantile() then have something to show.
	l.round(1)
	prom.waitValue(t, `sum(gatekeeper_payloads_total{job="gatekeeper-scrape",outcome="poisoned"})`, float64(l.poisoned), 30*time.Second)
	prom.waitValue(t, `sum(gatekeeper_payloads_total{job="gatekeeper-scrape",outcome="applied"})`, float64(l.applied), 30*time.Second)

	l.round(2)
	prom.waitValue(t, `sum(gatekeeper_payloads_total{job="gatekeeper-scrape",outcome="poisoned"})`, float64(l.poisoned), 30*time.Second)
	prom.waitValue(t, `sum(gatekeeper_payloads_total{job="gatekeeper-scrape",outcome="applied"})`, float64(l.applied), 30*time.Second)
	t.Logf("load: %d applied, %d poisoned, rejected by rule %v", l.applied, l.poisoned, l.rejected)

	if pushAddr != "" {
		// Both copies are in Prometheus; only the job filter keeps them apart.
		sel := fmt.Sprintf(`sum(gatekeeper_payloads_total{job=%q,outcome="poisoned"})`, pushJob)
		prom.waitValue(t, sel, float64(l.poisoned), 30*time.Second)
		if got := prom.scalar(t, `sum(gatekeeper_payloads_total{outcome="poisoned"})`); got != float64(2*l.poisoned) {
			t.Errorf("poisoned over both jobs = %v, want %d (scraped and pushed): the push did not arrive as expected", got, 2*l.poisoned)
		}
	}

	// Every alert expression parses (it may well be empty: nothing alarming
	// happened), every panel expression has data. A series that appeared in
	// the last round may need another scrape before rate() has two samples:
	// the panels are polled until each has data, for at most 15 s.
	for _, a := range alerts {
		res, err := prom.query(a.expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", a.name, err, a.expr)
			continue
		}
		t.Logf("%s: %d sample(s) %s", a.name, len(res), res)
	}
	pending := panelExprs(panels)
	deadline := time.Now().Add(15 * time.Second)
	for attempt := 0; len(pending) > 0 && attempt < 100; attempt++ {
		var still []namedExpr
		for _, p := range pending {
			res, err := prom.query(p.expr)
			if err != nil {
				t.Errorf("%s: %v\n%s", p.name, err, p.expr)
				continue
			}
			if !res.hasFinite() {
				still = append(still, p)
				continue
			}
			t.Logf("%s: %s", p.name, res)
		}
		pending = still
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond) // the poll's interval: Prometheus scrapes and evaluates on its own clock
	}
	for _, p := range pending {
		res, _ := prom.query(p.expr)
		t.Errorf("%s: no data (%d sample(s) %s) after the load:\n%s", p.name, len(res), res, p.expr)
	}
}

// namedExpr is one PromQL expression and where it comes from.
type namedExpr struct{ name, expr string }

func panelExprs(targets []dashboardTarget) []namedExpr {
	var out []namedExpr
	for _, tg := range targets {
		out = append(out, namedExpr{name: fmt.Sprintf("panel %q %s", tg.panel, tg.refID), expr: tg.expr})
	}
	return out
}

func readAlertRules(t *testing.T, path string) []namedExpr {
	t.Helper()
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, path, &rules)
	var out []namedExpr
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out = append(out, namedExpr{name: "alert " + r.Alert + r.Record, expr: r.Expr})
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", path)
	}
	return out
}

var gatekeeperSelector = regexp.MustCompile(`gatekeeper_[a-z_]+(\{[^}]*\})?`)

// unscopedSelectors are the selectors of gatekeeper series in expr that do
// not select the scrape job.
func unscopedSelectors(expr string) []string {
	var out []string
	for _, m := range gatekeeperSelector.FindAllStringSubmatch(expr, -1) {
		if !strings.Contains(m[1], `job="`+gatekeeperScrapeJob+`"`) {
			out = append(out, m[0])
		}
	}
	return out
}

// rewritePrometheusConfig writes path, with every static target mapped
// through targets (a target not in it fails the test: the test and the
// config must stay in step) and 1 s intervals, to dir, with its rule files
// copied beside it; it returns the written file.
func rewritePrometheusConfig(t *testing.T, path, dir string, targets map[string]string) string {
	t.Helper()
	var cfg map[string]any
	readYAML(t, path, &cfg)
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		global = map[string]any{}
	}
	global["scrape_interval"], global["evaluation_interval"] = "1s", "1s"
	cfg["global"] = global
	rules, _ := cfg["rule_files"].([]any)
	if len(rules) == 0 {
		t.Fatalf("%s loads no rule files", path)
	}
	for _, r := range rules {
		name, _ := r.(string)
		raw, err := os.ReadFile(filepath.Join(filepath.Dir(path), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	jobs, _ := cfg["scrape_configs"].([]any)
	for _, j := range jobs {
		job := j.(map[string]any)
		if _, ok := job["scrape_interval"]; ok {
			job["scrape_interval"] = "1s"
		}
		statics, _ := job["static_configs"].([]any)
		for _, s := range statics {
			sc := s.(map[string]any)
			list, _ := sc["targets"].([]any)
			for i, tg := range list {
				to, ok := targets[fmt.Sprint(tg)]
				if !ok {
					t.Fatalf("%s: job %v scrapes %v, which this test does not run", path, job["job_name"], tg)
				}
				list[i] = to
			}
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	written := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(written, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return written
}

// runTool runs a short command (at most 60 s) and returns its output.
func runTool(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// startBackground starts a helper process in its own process group, its
// output in a file, and kills the group in t.Cleanup (showing the output
// when the test failed).
func startBackground(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not die after SIGKILL", name, cmd.Process.Pid)
		}
		logFile.Close()
		if t.Failed() {
			raw, _ := os.ReadFile(logPath)
			if len(raw) > 8000 {
				raw = raw[len(raw)-8000:]
			}
			t.Logf("%s log (end):\n%s", name, raw)
		}
	})
}

var probeClient = &http.Client{Timeout: 5 * time.Second}

func waitHTTP200(t *testing.T, name, u string, timeout time.Duration) {
	t.Helper()
	if !eventually(timeout, 100*time.Millisecond, func() bool {
		resp, err := probeClient.Get(u)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}) {
		t.Fatalf("%s: %s did not answer 200 within %s", name, u, timeout)
	}
}

// promAPI queries a Prometheus's HTTP API.
type promAPI struct{ addr string }

// samples is an instant vector (or a scalar, as one unlabelled sample).
type samples []struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s samples) values() []float64 {
	var out []float64
	for _, x := range s {
		str, _ := x.Value[1].(string)
		f, err := strconv.ParseFloat(str, 64)
		if err != nil {
			f = math.NaN()
		}
		out = append(out, f)
	}
	return out
}

func (s samples) hasFinite() bool {
	for _, v := range s.values() {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			return true
		}
	}
	return false
}

func (s samples) String() string {
	var parts []string
	for i, x := range s {
		if i == 6 {
			parts = append(parts, fmt.Sprintf("… %d more", len(s)-i))
			break
		}
		var labels []string
		for k, v := range x.Metric {
			labels = append(labels, k+"="+v)
		}
		parts = append(parts, fmt.Sprintf("{%s} %v", strings.Join(labels, ","), x.Value[1]))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// query evaluates expr now; an error is a parse or evaluation failure.
func (p *promAPI) query(expr string) (samples, error) {
	resp, err := probeClient.Get("http://" + p.addr + "/api/v1/query?" + url.Values{"query": {expr}}.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var answer struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		return nil, fmt.Errorf("HTTP %d, not the API's JSON: %s", resp.StatusCode, raw)
	}
	if answer.Status != "success" {
		return nil, fmt.Errorf("status %s: %s: %s", answer.Status, answer.ErrorType, answer.Error)
	}
	var out samples
	switch answer.Data.ResultType {
	case "vector":
		err = json.Unmarshal(answer.Data.Result, &out)
	case "scalar":
		out = make(samples, 1)
		err = json.Unmarshal(answer.Data.Result, &out[0].Value)
	default:
		err = fmt.Errorf("result type %q, want an instant vector", answer.Data.ResultType)
	}
	return out, err
}

// scalar is the value of a query that must have exactly one sample.
func (p *promAPI) scalar(t *testing.T, expr string) float64 {
	t.Helper()
	res, err := p.query(expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	if len(res) != 1 {
		t.Fatalf("%s: %d samples %s, want 1", expr, len(res), res)
	}
	return res.values()[0]
}

// waitValue waits until expr's one sample is want.
func (p *promAPI) waitValue(t *testing.T, expr string, want float64, timeout time.Duration) {
	t.Helper()
	var last samples
	var lastErr error
	if !eventually(timeout, 250*time.Millisecond, func() bool {
		last, lastErr = p.query(expr)
		return lastErr == nil && len(last) == 1 && last.values()[0] == want
	}) {
		t.Fatalf("Prometheus: %s is %s (%v), want %v after %s", expr, last, lastErr, want, timeout)
	}
}

// scrapeSum is the sum of every sample of metric (any labels) on
// gatekeeper's /metrics.
func scrapeSum(t *testing.T, addr, metric string) float64 {
	t.Helper()
	resp, err := probeClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(raw), "\n") {
		rest, ok := strings.CutPrefix(line, metric)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// loader sends the test's payloads and counts what should become of them.
type loader struct {
	t        *testing.T
	addr     string
	n        int
	applied  int
	poisoned int
	rejected map[string]int
}

// send posts body and requires the status.
func (l *loader) send(contentType, body string, want int) {
	l.t.Helper()
	resp, err := http.Post("http://"+l.addr+"/api/activities", contentType, strings.NewReader(body))
	if err != nil {
		l.t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		l.t.Fatalf("POST %.200s: %d %s, want %d", body, resp.StatusCode, raw, want)
	}
}

func (l *loader) reject(rule, contentType, body string, want int) {
	l.t.Helper()
	l.send(contentType, body, want)
	if l.rejected == nil {
		l.rejected = map[string]int{}
	}
	l.rejected[rule]++
}

func (l *loader) valid() {
	l.t.Helper()
	l.n++
	l.send("application/json", fmt.Sprintf(`{"activities":[{"operation":"insert","table":"obs_ok",
		"col_names":["a","b"],"col_types":["INTEGER","TEXT"],"col_values":[%d,"row %d"]}]}`, l.n, l.n), 200)
	l.applied++
}

// round sends n of each kind: valid, rejected by five rules, poisoned.
func (l *loader) round(n int) {
	l.t.Helper()
	for i := 0; i < n; i++ {
		l.valid()
		l.reject("schema", "application/json", `{"activities":[{"operation":"upsert","table":"obs_ok",
			"col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}]}`, 400)
		l.reject("length_mismatch", "application/json", `{"activities":[{"operation":"insert","table":"obs_ok",
			"col_names":["a","b"],"col_types":["INTEGER"],"col_values":[1]}]}`, 400)
		l.reject("not_json", "application/json", `{"activities":[`, 400)
		l.reject("unsupported_media_type", "text/plain", `{"activities":[]}`, 415)
		l.reject("too_large", "application/json", `{"activities":[{"operation":"insert","table":"obs_ok",
			"col_names":["b"],"col_types":["TEXT"],"col_values":["`+strings.Repeat("x", 5000)+`"]}]}`, 413)
		// Accepted by the gate, poisoned by the apply stage: a delete needs
		// its table.
		l.n++
		l.send("application/json", fmt.Sprintf(`{"activities":[{"operation":"delete","table":"obs_missing_%d",
			"value_to_delete":{"col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}}]}`, l.n), 200)
		l.poisoned++
	}
}
