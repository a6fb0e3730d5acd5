package faults_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// binary is the gatekeeper built once for the whole suite.
var binary string

func TestMain(m *testing.M) {
	if os.Getenv("GATEKEEPER_FAULTS") != "1" {
		// Every test skips itself, so the output shows the tier did not run.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "gatekeeper-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gatekeeper")
	build := exec.Command("go", "build", "-o", binary, "../cmd/gatekeeper")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build gatekeeper:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func needFaults(t *testing.T) {
	t.Helper()
	if os.Getenv("GATEKEEPER_FAULTS") != "1" {
		t.Skip("fault suite: set GATEKEEPER_FAULTS=1 (.ci/run does)")
	}
}

func needEmulator(t *testing.T) string {
	t.Helper()
	needFaults(t)
	host := os.Getenv("PUBSUB_EMULATOR_HOST")
	if host == "" {
		t.Skip("needs PUBSUB_EMULATOR_HOST")
	}
	return host
}

// probeClient bounds every health probe: a hung service fails the test
// instead of hanging it.
var probeClient = &http.Client{Timeout: 5 * time.Second}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// env is one scenario's configuration: its own topics, warehouse, outbox.
type env struct {
	t    *testing.T
	dir  string
	vars map[string]string
}

func newEnv(t *testing.T, pubsubHost string) *env {
	t.Helper()
	// Kept when the test fails, for its processes' logs.
	dir, err := os.MkdirTemp("", "gatekeeper-fault-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs and databases kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	vars := map[string]string{
		"TOPIC_ID":         "faults-" + suffix,
		"SUBSCRIPTION_ID":  "faults-apply-" + suffix,
		"WAREHOUSE":        "sqlite:" + filepath.Join(dir, "warehouse.db"),
		"OUTBOX_PATH":      filepath.Join(dir, "outbox.db"),
		"LOG_LEVEL":        "info",
		"SHUTDOWN_TIMEOUT": "10s",
	}
	if pubsubHost != "" {
		vars["PUBSUB_EMULATOR_HOST"] = pubsubHost
		vars["PROJECT_ID"] = "test"
		vars["AUTH"] = "none" // these tests count payloads, not keys
	} else {
		vars["PUBSUB_MODE"] = "embedded"
		vars["PUBSUB_EMBEDDED_ADDR"] = freeAddr(t)
	}
	return &env{t: t, dir: dir, vars: vars}
}

func (e *env) with(kv ...string) *env {
	c := &env{t: e.t, dir: e.dir, vars: map[string]string{}}
	for k, v := range e.vars {
		c.vars[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		c.vars[kv[i]] = kv[i+1]
	}
	return c
}

func (e *env) warehousePath() string { return strings.TrimPrefix(e.vars["WAREHOUSE"], "sqlite:") }

// environ is the process environment: the test's, without anything of
// gatekeeper's that would leak in, plus the scenario's.
func (e *env) environ() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if _, ours := e.vars[name]; ours || name == "PUBSUB_EMULATOR_HOST" || name == "BIGQUERY_EMULATOR_HOST" {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range e.vars {
		out = append(out, k+"="+v)
	}
	return out
}

// proc is one gatekeeper process, in its own process group.
type proc struct {
	t    *testing.T
	name string
	base string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs `gatekeeper serve` and waits until /readyz answers 200.
func (e *env) start(name string, kv ...string) *proc {
	e.t.Helper()
	p := e.startNoWait(name, kv...)
	p.waitReady(60 * time.Second)
	return p
}

func (e *env) startNoWait(name string, kv ...string) *proc {
	e.t.Helper()
	addr := freeAddr(e.t)
	c := e.with(append([]string{"HTTP_ADDR", addr, "ADMIN_ADDR", "127.0.0.1:0"}, kv...)...)
	logPath := filepath.Join(e.dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	logFile, err := os.Create(logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve")
	cmd.Env = c.environ()
	cmd.Dir = e.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &proc{t: e.t, name: name, base: "http://" + addr, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		if e.t.Failed() {
			// A Go process dumps its goroutines on SIGQUIT: the log then
			// shows where a payload that never settled is waiting.
			p.signal(syscall.SIGQUIT)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
			}
		}
		p.signal(syscall.SIGKILL)
		<-p.done
		if e.t.Failed() {
			p.dumpLog(30)
		}
	})
	return p
}

func (p *proc) waitReady(within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.dumpLog(40)
			p.t.Fatalf("%s exited before it was ready: %v", p.name, p.err)
		default:
		}
		resp, err := probeClient.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond) // the poll's interval
	}
	p.dumpLog(40)
	p.t.Fatalf("%s not ready within %s", p.name, within)
}

// signal sends sig to the process group: only what this test started,
// and never after it was reaped (its pid may belong to another by then).
func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

func (p *proc) kill9() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// term sends SIGTERM and returns the exit code.
func (p *proc) term(within time.Duration) int {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(within):
		p.dumpLog(40)
		p.t.Fatalf("%s did not exit within %s of SIGTERM", p.name, within)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func (p *proc) dumpLog(lines int) {
	all := strings.Split(strings.TrimRight(p.logText(), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	p.t.Logf("last lines of %s's log (%s):\n%s", p.name, p.log, strings.Join(all, "\n"))
}

// load is a client that posts insert payloads, each with a distinct key,
// and records every answer. It is bounded in count and time and stops by
// itself.
type load struct {
	mu       sync.Mutex
	accepted map[string]string // payload id → key
	answers  map[int]int       // status → count
	errors   int
	next     int
	prefix   string
	stop     chan struct{}
	wg       sync.WaitGroup
}

// startLoad runs workers concurrent clients against target() (which may
// change as processes restart) until stopped, maxRequests are sent, or
// maxDuration passes.
func startLoad(target func() string, workers, maxRequests int, maxDuration time.Duration) *load {
	l := &load{
		accepted: map[string]string{}, answers: map[int]int{},
		prefix: fmt.Sprintf("k%d", time.Now().UnixNano()), stop: make(chan struct{}),
	}
	client := &http.Client{Timeout: 30 * time.Second}
	deadline := time.Now().Add(maxDuration)
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for time.Now().Before(deadline) {
				select {
				case <-l.stop:
					return
				default:
				}
				l.mu.Lock()
				if l.next >= maxRequests {
					l.mu.Unlock()
					return
				}
				key := fmt.Sprintf("%s-%d", l.prefix, l.next)
				l.next++
				l.mu.Unlock()
				l.postOne(client, target(), key)
			}
		}()
	}
	return l
}

func insertPayload(key string) string {
	return fmt.Sprintf(`{"activities":[{"operation":"insert","table":"faults","col_names":["k"],"col_types":["STRING"],"col_values":[%q]}]}`, key)
}

func (l *load) postOne(client *http.Client, base, key string) {
	resp, err := client.Post(base+"/api/activities", "application/json", strings.NewReader(insertPayload(key)))
	if err != nil {
		l.mu.Lock()
		l.errors++
		l.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // the process is down; do not spin
		return
	}
	defer resp.Body.Close()
	var body struct {
		ID string `json:"id"`
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &body)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answers[resp.StatusCode]++
	if resp.StatusCode == http.StatusOK {
		l.accepted[body.ID] = key
	} else {
		time.Sleep(5 * time.Millisecond) // a refused request: pace the retry, do not spin
	}
}

// post sends one payload now and returns its id when answered 200.
func (l *load) post(base string) (string, int) {
	l.mu.Lock()
	key := fmt.Sprintf("%s-%d", l.prefix, l.next)
	l.next++
	before := len(l.accepted)
	l.mu.Unlock()
	l.postOne(&http.Client{Timeout: 30 * time.Second}, base, key)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.accepted) > before {
		for id, k := range l.accepted {
			if k == key {
				return id, 200
			}
		}
	}
	return "", 0
}

func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	codes := make([]int, 0, len(l.answers))
	for c := range l.answers {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var b strings.Builder
	fmt.Fprintf(&b, "%d sent:", l.next)
	for _, c := range codes {
		fmt.Fprintf(&b, " %d×%d", l.answers[c], c)
	}
	fmt.Fprintf(&b, ", %d transport errors", l.errors)
	return b.String()
}

func (l *load) acceptedIDs() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, len(l.accepted))
	for k, v := range l.accepted {
		out[k] = v
	}
	return out
}

// settle waits until every payload answered 200 is in the ledger, then
// checks that no key was applied twice. It fails listing what is missing
// when within runs out. It returns the time it took.
func settle(t *testing.T, warehousePath string, accepted map[string]string, within time.Duration) time.Duration {
	t.Helper()
	started := time.Now()
	db, err := sql.Open("sqlite", warehousePath+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var missing []string
	for {
		inLedger, err := ledgerIDs(db)
		if err == nil {
			missing = missing[:0]
			for id := range accepted {
				if !inLedger[id] {
					missing = append(missing, id)
				}
			}
			if len(missing) == 0 {
				break
			}
		}
		if time.Since(started) > within {
			sort.Strings(missing)
			if len(missing) > 20 {
				missing = append(missing[:20], "…")
			}
			t.Fatalf("LOST: %d of %d payloads answered 200 are not in the ledger after %s (err %v): %s",
				len(missing), len(accepted), within, err, strings.Join(missing, " "))
		}
		time.Sleep(200 * time.Millisecond) // the poll's interval
	}
	took := time.Since(started)

	rows, err := db.Query(`SELECT k, count(*) FROM faults GROUP BY k HAVING count(*) > 1`)
	if err != nil {
		t.Fatalf("read duplicates: %v", err)
	}
	defer rows.Close()
	var dups []string
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		dups = append(dups, fmt.Sprintf("%s×%d", k, n))
	}
	if len(dups) > 0 {
		t.Fatalf("DUPLICATED: %d keys applied more than once: %v", len(dups), dups)
	}
	var rowsTotal int
	if err := db.QueryRow(`SELECT count(*) FROM faults`).Scan(&rowsTotal); err != nil {
		t.Fatal(err)
	}
	if rowsTotal < len(accepted) {
		t.Fatalf("faults holds %d rows for %d payloads answered 200", rowsTotal, len(accepted))
	}
	return took
}

func ledgerIDs(db *sql.DB) (map[string]bool, error) {
	rows, err := db.Query(`SELECT payload_id FROM _gatekeeper_ledger`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids[id] = true
	}
	return ids, rows.Err()
}

// record appends one scenario's counts to the file named by
// GATEKEEPER_FAULTS_REPORT, for the fault table in docs/reliability.md.
func record(t *testing.T, format string, args ...any) {
	line := fmt.Sprintf("%s: %s", t.Name(), fmt.Sprintf(format, args...))
	t.Log(line)
	if path := os.Getenv("GATEKEEPER_FAULTS_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
}

// scrape returns the text of base's /metrics.
func scrape(base string) (string, error) {
	resp, err := probeClient.Get(base + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return string(raw), err
}

// seriesValue reads the value of series (its name, with its labels if it
// has any, as the exposition writes them) from a /metrics text.
func seriesValue(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return f, true
			}
		}
	}
	return 0, false
}

// readyzBody returns /readyz's status and body.
func readyzBody(base string) (int, string) {
	resp, err := probeClient.Get(base + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// runTool runs a gatekeeper subcommand in the scenario's environment.
func (e *env) runTool(args ...string) (string, string, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = e.environ()
	cmd.Dir = e.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}
