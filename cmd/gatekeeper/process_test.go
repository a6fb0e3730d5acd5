package main

// Helpers for tests that run gatekeeper as a real process: the binary is
// built once per test binary (lazily, so `go test -run` of an in-process
// test does not pay for it), every process gets a clean environment (only
// what the test sets, none of the caller's gatekeeper variables), its own
// process group, and is killed in t.Cleanup.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binDir   string
	buildBin sync.Once
	binPath  string
	binErr   error
)

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "gatekeeper-cmdtests-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(binDir)
	os.Exit(code)
}

// binary builds ./cmd/gatekeeper once, with the race detector when this
// test binary has it (the race-built packages are then already cached).
func binary(t *testing.T) string {
	t.Helper()
	buildBin.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("the go tool is not on PATH: %w", err)
			return
		}
		binPath = filepath.Join(binDir, "gatekeeper")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command(goTool, append(args, ".")...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out.String())
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// gatekeeperVars are every variable gatekeeper reads; a child process gets
// none of them from the test's own environment (CI sets
// PUBSUB_EMULATOR_HOST, a developer may have anything).
func gatekeeperVars() map[string]bool {
	vars := map[string]bool{}
	for _, f := range settingFlags("info") {
		vars[f.Tag.Get("envvar")] = true
	}
	vars[adminKeyVar] = true
	return vars
}

// childEnv is the test's environment without gatekeeper's variables, plus
// env (an empty value leaves the variable out).
func childEnv(env map[string]string) []string {
	drop := gatekeeperVars()
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			if _, set := env[k]; !set {
				out = append(out, kv)
			}
		}
	}
	for k, v := range env {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// result is what a finished command left.
type result struct {
	code           int
	stdout, stderr string
}

// gk runs one gatekeeper command to its end (at most 60 s) in dir.
func gk(t *testing.T, dir string, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Dir = dir
	cmd.Env = childEnv(env)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("gatekeeper %s: still running after 60 s; stderr:\n%s", strings.Join(args, " "), r.stderr)
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("gatekeeper %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// lines splits output into its lines, without the final newline.
func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// logLines collects a process's stderr line by line.
type logLines struct {
	mu    sync.Mutex
	lines []string
	added chan struct{} // closed and replaced on every line
}

func newLogLines() *logLines { return &logLines{added: make(chan struct{})} }

func (l *logLines) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	close(l.added)
	l.added = make(chan struct{})
}

func (l *logLines) snapshot() ([]string, chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...), l.added
}

func (l *logLines) String() string {
	ls, _ := l.snapshot()
	return strings.Join(ls, "\n")
}

// service is a running `gatekeeper serve`.
type service struct {
	cmd        *exec.Cmd
	dir        string
	env        map[string]string
	addr       string // HTTP host:port
	adminAddr  string // the operators' console's host:port
	pubsubAddr string // the embedded Pub/Sub's host:port, or the emulator's
	logs       *logLines
	exited     chan struct{}
	exitCode   int
}

// serviceEnv is what every test service runs with unless the test says
// otherwise: loopback ports the kernel picks, its own SQLite files, JSON logs.
func serviceEnv(dir string) map[string]string {
	return map[string]string{
		"HTTP_ADDR":            "127.0.0.1:0",
		"ADMIN_ADDR":           "127.0.0.1:0",
		"PUBSUB_EMBEDDED_ADDR": "127.0.0.1:0",
		"WAREHOUSE":            "sqlite:" + filepath.Join(dir, "warehouse.db"),
		"OUTBOX_PATH":          filepath.Join(dir, "outbox.db"),
		"SQLITE_SYNC":          "normal",
		"SHUTDOWN_TIMEOUT":     "20s",
		"LOG_FORMAT":           "json",
	}
}

// startService starts `gatekeeper serve` in dir with serviceEnv(dir)
// overridden by env, and waits (at most 30 s) until it logs that it serves.
func startService(t *testing.T, dir string, env map[string]string, args ...string) *service {
	t.Helper()
	full := serviceEnv(dir)
	for k, v := range env {
		full[k] = v
	}
	if full["PUBSUB_EMULATOR_HOST"] != "" && full["BACKENDS_FILE"] == "" && full["AUTH"] == "" {
		// Secure by default refuses an emulator without keys; these tests
		// are not about keys.
		full["AUTH"] = "none"
	}
	s := &service{dir: dir, env: full, logs: newLogLines(), exited: make(chan struct{})}
	s.cmd = exec.Command(binary(t), append([]string{"serve"}, args...)...)
	s.cmd.Dir = dir
	s.cmd.Env = childEnv(full)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			s.logs.add(sc.Text())
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-scanned // Wait closes the pipe: read it to the end first
		_ = s.cmd.Wait()
		s.exitCode = s.cmd.ProcessState.ExitCode()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
			return
		default:
		}
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("gatekeeper serve (pid %d) did not die after SIGKILL", s.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("gatekeeper serve log:\n%s", s.logs)
		}
	})

	serving := s.waitLog(t, 30*time.Second, func(line string) bool { return logField(line, "msg") == "Serving" })
	s.addr = logField(serving, "addr")
	s.adminAddr = logField(serving, "admin_addr")
	if s.addr == "" {
		t.Fatalf("no addr in %q", serving)
	}
	mode := s.waitLog(t, time.Second, func(line string) bool { return logField(line, "msg") == "Pub/Sub mode" })
	s.pubsubAddr = logField(mode, "endpoint")
	return s
}

// waitLog waits for a log line that matches and returns it; it fails the
// test when the process exits first or after timeout.
func (s *service) waitLog(t *testing.T, timeout time.Duration, match func(string) bool) string {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		ls, added := s.logs.snapshot()
		for ; seen < len(ls); seen++ {
			if match(ls[seen]) {
				return ls[seen]
			}
		}
		select {
		case <-added:
		case <-s.exited:
			// the scanner has finished: one more pass sees every line
			if ls, _ := s.logs.snapshot(); len(ls) > seen {
				continue
			}
			t.Fatalf("gatekeeper serve exited (%d) before the awaited log line; log:\n%s", s.exitCode, s.logs)
		case <-deadline:
			t.Fatalf("no awaited log line after %s; log:\n%s", timeout, s.logs)
		}
	}
}

// terminate sends SIGTERM and waits (at most 40 s) for the exit code.
func (s *service) terminate(t *testing.T) int {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
		return s.exitCode
	case <-time.After(40 * time.Second):
		t.Fatalf("gatekeeper serve still running 40 s after SIGTERM; log:\n%s", s.logs)
		return -1
	}
}

var textField = regexp.MustCompile(`(?:^| )([A-Za-z_.]+)=("(?:[^"\\]|\\.)*"|\S*)`)

// logField reads key from a slog line, JSON or text.
func logField(line, key string) string {
	var obj map[string]any
	if json.Unmarshal([]byte(line), &obj) == nil {
		if v, ok := obj[key].(string); ok {
			return v
		}
		return ""
	}
	for _, m := range textField.FindAllStringSubmatch(line, -1) {
		if m[1] == key {
			v := m[2]
			if strings.HasPrefix(v, `"`) {
				var s string
				if json.Unmarshal([]byte(v), &s) == nil {
					return s
				}
			}
			return v
		}
	}
	return ""
}

// accepted is the gate's answer to a payload it accepted.
type accepted struct {
	ID            string
	CorrelationID string
}

// post sends one payload and requires a 200.
func (s *service) post(t *testing.T, body string) accepted {
	t.Helper()
	resp, err := http.Post("http://"+s.addr+"/api/activities", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var answer struct {
		ID      string `json:"id"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil || resp.StatusCode != 200 || answer.ID == "" {
		t.Fatalf("POST %s: %d %s (%v)", body, resp.StatusCode, raw, err)
	}
	return accepted{ID: answer.ID, CorrelationID: resp.Header.Get("X-Correlation-ID")}
}

// freeAddr is a loopback address nothing listens on (the kernel picked it
// and it was closed again).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// eventually calls try every interval until it returns true or timeout
// passes; it returns whether it succeeded. At most 1,000 attempts.
func eventually(timeout, interval time.Duration, try func() bool) bool {
	deadline := time.Now().Add(timeout)
	for i := 0; i < 1000; i++ {
		if try() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval) // the poll's interval
	}
	return false
}
