package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runIn calls run in-process, for commands that fail on their arguments
// before they read anything but flags.
func runIn(args ...string) result {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// Bad invocations exit 2 with a message naming what is wrong, and print
// nothing on stdout.
func TestCommandsRejectBadArguments(t *testing.T) {
	t.Parallel()
	wh := "sqlite:" + filepath.Join(t.TempDir(), "warehouse.db")
	cases := []struct {
		args []string
		want string // the first line of stderr
	}{
		{[]string{"frob"}, `gatekeeper: unknown command "frob" (want serve, tables, rows, poison, status, outbox, keys, loadgen, check, healthcheck, version, help); see gatekeeper --help`},
		{[]string{"outbox"}, "gatekeeper: outbox needs a command (salvage); see gatekeeper outbox --help"},
		{[]string{"outbox", "frob"}, "gatekeeper: outbox needs a command (salvage); see gatekeeper outbox --help"},
		{[]string{"keys"}, "gatekeeper: keys needs a command (new BACKEND); see gatekeeper keys --help"},
		{[]string{"help", "frob"}, `gatekeeper: unknown command "frob"`},
		{[]string{"outbox", "salvage", "extra"}, "gatekeeper: outbox salvage takes no arguments (got [extra]); the file is --outbox-path"},
		{[]string{"rows", "--warehouse", wh}, "gatekeeper: rows takes one table name; see gatekeeper rows --help"},
		{[]string{"rows", "t1", "t2", "--warehouse", wh}, "gatekeeper: rows takes one table name; see gatekeeper rows --help"},
		{[]string{"rows", "--warehouse", wh, "t1", "t2"}, "gatekeeper: rows takes one table name; see gatekeeper rows --help"},
		{[]string{"tables", "--warehouse", wh, "extra"}, "gatekeeper: tables takes no arguments; see gatekeeper tables --help"},
		{[]string{"tables", "--max-body-bytes", "5"}, "gatekeeper: unknown flag --max-body-bytes"},
		{[]string{"rows", "t1", "--limit", "many", "--warehouse", wh}, `gatekeeper: --limit "many": want a whole number, such as 100; see gatekeeper rows --help`},
		{[]string{"poison"}, "gatekeeper: poison needs a command (list, summary, show, replay, export, purge); see gatekeeper poison --help"},
		{[]string{"poison", "frob"}, `gatekeeper: unknown poison command "frob" (want list, summary, show, replay, export, purge); see gatekeeper poison --help`},
		{[]string{"poison", "list", "--limit", "x"}, `gatekeeper: --limit "x": want a whole number, such as 100; see gatekeeper poison list --help`},
		{[]string{"poison", "list", "--id", "x"}, "gatekeeper: unknown flag --id; see gatekeeper poison list --help"},
		{[]string{"poison", "list", "--warehouse", wh, "some-id"}, "gatekeeper: poison list takes no payload ids (got some-id); use the filters"},
		{[]string{"poison", "list", "--warehouse", wh, "--class", "fatal", "--since", "soon"}, `gatekeeper: --class "fatal": want one of invalid, transient, permanent, unknown`},
		{[]string{"poison", "list", "--warehouse", wh, "--state", "gone"}, `gatekeeper: --state "gone": want one of poisoned, replayed, purged`},
		{[]string{"poison", "show", "--warehouse", wh}, "gatekeeper: usage: gatekeeper poison show ID [--json]"},
		{[]string{"poison", "replay", "--warehouse", wh}, "gatekeeper: poison replay: name payload ids, a filter, or --all"},
		{[]string{"poison", "purge", "--warehouse", wh}, "gatekeeper: poison purge: name payload ids, a filter, or --all"},
		{[]string{"poison", "replay", "--warehouse", wh, "--rate", "0", "--all"}, "gatekeeper: --rate 0: want payloads per second above 0"},
		{[]string{"poison", "replay", "--warehouse", wh, "--from", "f.jsonl", "some-id"}, "gatekeeper: replay --from FILE takes no ids and no --all"},
		{[]string{"status", "--warehouse", wh}, "gatekeeper: status takes one payload id; see gatekeeper status --help"},
		{[]string{"healthcheck", "--http-addr", "no-port"}, "gatekeeper: HTTP_ADDR=no-port: want HOST:PORT or :PORT, such as :8080 (address no-port: missing port in address)"},
		{[]string{"tables", "--warehouse", "postgres:x"}, `gatekeeper: WAREHOUSE: "postgres:x": want sqlite:PATH or bigquery`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			r := runIn(c.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
			}
			if first, _, _ := strings.Cut(r.stderr, "\n"); !strings.HasPrefix(first, c.want) {
				t.Errorf("stderr starts %q, want %q", first, c.want)
			}
			if ls := lines(r.stderr); len(ls) != 1 && !strings.HasPrefix(c.want, "gatekeeper: --") {
				t.Errorf("stderr is %d lines, want one:\n%s", len(ls), r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

// help, --help and -h list every command of the table with its summary,
// on stdout; each command's --help is on stdout too, and exits 0.
func TestHelpCommand(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		r := runIn(args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "usage: gatekeeper [COMMAND] [flags]") || r.stderr != "" {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q", args[0], r.code, r.stdout, r.stderr)
		}
		for _, c := range commands() {
			if !regexp.MustCompile(`(?m)^  ` + c.name + `\b.*  ` + regexp.QuoteMeta(c.summary) + `$`).MatchString(r.stdout) {
				t.Errorf("%s does not list %s: %s", args[0], c.name, c.summary)
			}
		}
	}
	for _, cmd := range [][]string{{"serve"}, {"tables"}, {"rows"}, {"poison"}, {"poison", "list"}, {"poison", "summary"}, {"poison", "show"},
		{"poison", "replay"}, {"poison", "export"}, {"poison", "purge"}, {"status"}, {"outbox"}, {"outbox", "salvage"}, {"keys"},
		{"keys", "new"}, {"loadgen"}, {"healthcheck"}} {
		r := runIn(append(cmd, "--help")...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "usage: gatekeeper "+strings.Join(cmd, " ")) || r.stderr != "" {
			t.Errorf("%s --help: exit %d, stdout starts %.60q, stderr %.60q", strings.Join(cmd, " "), r.code, r.stdout, r.stderr)
		}
	}
}

// A bad flag is one line on stderr that names it and points at --help,
// not the whole manual.
func TestBadFlagIsOneLine(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--no-such-flag"}, "gatekeeper: unknown flag --no-such-flag; see gatekeeper serve --help\n"},
		{[]string{"rows", "t", "--limit", "many"}, `gatekeeper: --limit "many": want a whole number, such as 100; see gatekeeper rows --help` + "\n"},
		{[]string{"keys", "new", "b", "--rate", "fast"}, `gatekeeper keys new: --rate "fast": want a number, such as 0.5 or 2; see gatekeeper keys new --help` + "\n"},
	} {
		r := runIn(c.args...)
		if r.code != 2 || r.stderr != c.want || r.stdout != "" {
			t.Errorf("%s: exit %d, stderr %q, stdout %q; want 2 and %q", strings.Join(c.args, " "), r.code, r.stderr, r.stdout, c.want)
		}
	}
}

// healthcheck asks /readyz on HTTP_ADDR: 0 only for a 200.
// Every command's --help lists the flags that command has, each with a
// placeholder for its value (--rate N), and serve's --help-all lists
// LOG_LEVEL and LOG_FORMAT, which docs/configuration.md's table has. The
// commands that ask the service list none of serve's tuning.
func TestHelpListsEveryFlag(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args  []string
		flags []string
	}{
		{[]string{"rows", "--help"}, []string{"limit", "log-level"}},
		{[]string{"poison", "list", "--help"}, []string{"limit", "json", "table", "class", "since", "reason", "state"}},
		{[]string{"poison", "summary", "--help"}, []string{"json", "table", "class", "since", "reason", "state"}},
		{[]string{"poison", "show", "--help"}, []string{"json"}},
		{[]string{"poison", "replay", "--help"}, []string{"all", "yes", "dry-run", "rate", "from", "table", "state"}},
		{[]string{"poison", "export", "--help"}, []string{"output", "table", "class"}},
		{[]string{"poison", "purge", "--help"}, []string{"all", "yes", "table", "reason"}},
		{[]string{"status", "--help"}, []string{"json"}},
		{[]string{"outbox", "salvage", "--help"}, []string{"dry-run", "outbox-path"}},
		{[]string{"serve", "--help-all"}, []string{"log-level"}},
		{[]string{"help", "rows"}, []string{"limit", "server", "admin-key", "direct", "warehouse"}},
	} {
		r := runIn(c.args...)
		if r.code != 0 {
			t.Errorf("%s: exit %d", strings.Join(c.args, " "), r.code)
		}
		for _, f := range c.flags {
			if !regexp.MustCompile(`(?m)^\s*(-., )?--?` + f + `(\s|$)`).MatchString(r.stdout) {
				t.Errorf("%s does not list --%s", strings.Join(c.args, " "), f)
			}
		}
		if c.args[0] == "serve" && !strings.Contains(r.stdout, "LOG_FORMAT") {
			t.Errorf("serve --help-all does not mention LOG_FORMAT")
		}
	}
	for _, args := range [][]string{{"tables", "--help"}, {"rows", "--help"}, {"status", "--help"}, {"healthcheck", "--help"},
		{"help", "poison", "list"}, {"poison", "replay", "--help"}, {"outbox", "salvage", "--help"}, {"serve", "--help"}} {
		r := runIn(args...)
		for _, tuning := range []string{"MAX_BODY_BYTES", "RETRY_MAX", "GROUP_MAX_SIZE", "SHUTDOWN_TIMEOUT"} {
			if strings.Contains(r.stdout, tuning) {
				t.Errorf("%s lists %s, a setting of serve's tuning", strings.Join(args, " "), tuning)
			}
		}
		// A flag that takes a value shows a placeholder for it.
		for _, name := range []string{"limit", "rate", "server", "warehouse", "http-addr", "since", "output"} {
			if m := regexp.MustCompile(`(?m)^  (-., )?--` + name + `( [A-Z][^ \n]*)?( \[|$)`).FindStringSubmatch(r.stdout); m != nil && m[2] == "" {
				t.Errorf("%s: --%s has no placeholder for its value", strings.Join(args, " "), name)
			}
		}
	}
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer ready.Close()
	unready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "warehouse: locked", http.StatusServiceUnavailable)
	}))
	defer unready.Close()
	readyAddr := strings.TrimPrefix(ready.URL, "http://")
	_, readyPort, _ := net.SplitHostPort(readyAddr)

	t.Run("ready", func(t *testing.T) {
		if r := runIn("healthcheck", "--http-addr", readyAddr); r.code != 0 || r.stderr != "" || r.stdout != "" {
			t.Errorf("exit %d, stderr %q, stdout %q; want 0 and silence", r.code, r.stderr, r.stdout)
		}
	})
	t.Run("ready, listen address without host", func(t *testing.T) {
		// HTTP_ADDR=":PORT" (the default form) is asked on 127.0.0.1
		if r := runIn("healthcheck", "--http-addr", ":"+readyPort); r.code != 0 {
			t.Errorf("exit %d, stderr %q; want 0", r.code, r.stderr)
		}
		if r := runIn("healthcheck", "--http-addr", "0.0.0.0:"+readyPort); r.code != 0 {
			t.Errorf("0.0.0.0: exit %d, stderr %q; want 0", r.code, r.stderr)
		}
	})
	t.Run("unready", func(t *testing.T) {
		r := runIn("healthcheck", "--http-addr", strings.TrimPrefix(unready.URL, "http://"))
		if r.code != 1 || r.stderr != "gatekeeper: not ready: 503 warehouse: locked\n\n" {
			t.Errorf("exit %d, stderr %q; want 1 and the reason", r.code, r.stderr)
		}
	})
	t.Run("nothing listens", func(t *testing.T) {
		start := time.Now()
		r := runIn("healthcheck", "--http-addr", freeAddr(t))
		if r.code != 1 || !strings.HasPrefix(r.stderr, "gatekeeper: not ready: ") || !strings.Contains(r.stderr, "connection refused") {
			t.Errorf("exit %d, stderr %q; want 1, not ready: … connection refused", r.code, r.stderr)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %s; a refused connection should fail at once", d)
		}
	})
}

// Against a real service: `healthcheck` is 0 while it serves, 1 once it
// is gone (a real process, so exit codes are the binary's).
func TestHealthcheckAgainstService(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startService(t, dir, nil)
	env := map[string]string{"HTTP_ADDR": s.addr}
	// ready is /readyz 200; right after "serving" it may still be checking
	var last result
	if !eventually(15*time.Second, 50*time.Millisecond, func() bool {
		last = gk(t, dir, env, "healthcheck")
		return last.code == 0
	}) {
		t.Fatalf("healthcheck against a serving service: exit %d, stderr %q", last.code, last.stderr)
	}
	if last.stdout != "" || last.stderr != "" {
		t.Errorf("healthcheck printed %q %q; want silence", last.stdout, last.stderr)
	}
	if code := s.terminate(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, s.logs)
	}
	r := gk(t, dir, env, "healthcheck")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "gatekeeper: not ready: ") {
		t.Errorf("healthcheck after the service stopped: exit %d, stderr %q; want 1", r.code, r.stderr)
	}
}

// tables lists user tables, sorted, one per line, never gatekeeper's own;
// rows prints JSON lines, a column a row lacks as null, --limit (default
// 100) bounding them; an unknown table is exit 1 naming it.
func TestTablesAndRows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startService(t, dir, nil)
	wh := map[string]string{"ADMIN_ADDR": s.adminAddr}
	// --direct reads the same warehouse itself; the service's WAREHOUSE
	// in the environment does not make a command read it directly.
	direct := map[string]string{"WAREHOUSE": s.env["WAREHOUSE"], "ADMIN_ADDR": "off"}

	r := gk(t, dir, wh, "tables")
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("tables of an empty warehouse: exit %d, stdout %q, stderr %q; want 0 and nothing", r.code, r.stdout, r.stderr)
	}

	s.post(t, `{"activities":[
	  {"operation":"insert","table":"table1","col_names":["a","b","c"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[1,"Backup and Restore","2018-03-27 11:58:28.988414"]}]}`)
	s.post(t, `{"activities":[
	  {"operation":"insert","table":"table1","col_names":["a","b","c","e"],"col_types":["INTEGER","TEXT","TEXT","TEXT"],"col_values":[3,"Disaster Recovery","2019-04-28 10:24:30.183414","something"]}]}`)
	var many []string
	for i := 0; i < 101; i++ {
		many = append(many, fmt.Sprintf(`{"operation":"insert","table":"a_many","col_names":["n"],"col_types":["INTEGER"],"col_values":[%d]}`, i))
	}
	s.post(t, `{"activities":[`+strings.Join(many, ",")+`]}`)

	wantRows := "{\"a\":1,\"b\":\"Backup and Restore\",\"c\":\"2018-03-27 11:58:28.988414\",\"e\":null}\n" +
		"{\"a\":3,\"b\":\"Disaster Recovery\",\"c\":\"2019-04-28 10:24:30.183414\",\"e\":\"something\"}\n"
	if !eventually(15*time.Second, 50*time.Millisecond, func() bool {
		r = gk(t, dir, wh, "rows", "table1")
		return r.stdout == wantRows
	}) {
		t.Fatalf("rows table1: exit %d, stdout\n%s\nstderr %q; want\n%s", r.code, r.stdout, r.stderr, wantRows)
	}
	if r.code != 0 || r.stderr != "" {
		t.Errorf("rows table1: exit %d, stderr %q", r.code, r.stderr)
	}
	if !eventually(15*time.Second, 50*time.Millisecond, func() bool {
		r = gk(t, dir, wh, "tables")
		return r.stdout == "a_many\ntable1\n"
	}) {
		t.Fatalf("tables: exit %d, stdout %q, stderr %q; want a_many and table1, sorted, without _gatekeeper_ledger", r.code, r.stdout, r.stderr)
	}
	if r.code != 0 || r.stderr != "" {
		t.Errorf("tables: exit %d, stderr %q", r.code, r.stderr)
	}

	// --limit: default 100, 0 for all, before or after the table name
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"rows", "a_many"}, 100},
		{[]string{"rows", "a_many", "--limit", "0"}, 101},
		{[]string{"rows", "a_many", "--limit", "7"}, 7},
		{[]string{"rows", "--limit", "3", "a_many"}, 3},
	} {
		r := gk(t, dir, wh, c.args...)
		got := lines(r.stdout)
		if r.code != 0 || len(got) != c.want {
			t.Errorf("%s: exit %d, %d lines, want %d; stderr %q", strings.Join(c.args, " "), r.code, len(got), c.want, r.stderr)
			continue
		}
		// ordered by every column: n = 0, 1, 2, …
		for i, line := range got {
			if line != fmt.Sprintf(`{"n":%d}`, i) {
				t.Errorf("%s: line %d is %s", strings.Join(c.args, " "), i, line)
				break
			}
		}
	}

	for _, args := range [][]string{{"tables", "--direct"}, {"rows", "a_many", "--direct", "--limit", "0"}, {"rows", "table1", "--direct"}} {
		want := gk(t, dir, wh, args[:len(args)-1]...)
		if args[len(args)-1] != "--direct" {
			want = gk(t, dir, wh, append(args[:2:2], args[3:]...)...)
		}
		if got := gk(t, dir, direct, args...); got != want || got.code != 0 {
			t.Errorf("%s: %+v; the service answered %+v", strings.Join(args, " "), got, want)
		}
	}
	if r := gk(t, dir, direct, "tables"); r.code != 1 || !strings.HasPrefix(r.stderr, "gatekeeper: ADMIN_ADDR=off") {
		t.Errorf("tables with WAREHOUSE set and no service: exit %d, stderr %q; want 1, not a direct read", r.code, r.stderr)
	}

	for _, env := range []map[string]string{wh, direct} {
		args := []string{"rows", "nosuch"}
		if env["WAREHOUSE"] != "" {
			args = append(args, "--direct")
		}
		r = gk(t, dir, env, args...)
		if r.code != 1 || r.stderr != "gatekeeper: table \"nosuch\": table not found\n" || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1 and the table named", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	// the ledger is gatekeeper's, not a user table
	r = gk(t, dir, wh, "rows", "_gatekeeper_ledger")
	if r.code != 1 || !strings.Contains(r.stderr, "table not found") {
		t.Errorf("rows _gatekeeper_ledger: exit %d, stderr %q; want 1, table not found", r.code, r.stderr)
	}
}

// poisoned reads `poison list` output: one JSON object per line.
func poisoned(t *testing.T, stdout string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, line := range lines(stdout) {
		var p map[string]any
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("poison output line is not a JSON object: %q: %v", line, err)
		}
		id, _ := p["payload_id"].(string)
		if _, dup := out[id]; dup {
			t.Errorf("payload %s listed twice", id)
		}
		out[id] = p
	}
	return out
}

func keys(m map[string]map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func sameSet(got map[string]map[string]any, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if _, ok := got[w]; !ok {
			return false
		}
	}
	return true
}
