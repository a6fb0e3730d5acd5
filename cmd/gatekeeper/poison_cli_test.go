package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// Payloads the gate accepts and the warehouse cannot apply. fixable
// deletes from a table that does not exist until the test creates it;
// conflicting inserts text into an INTEGER column (typed, below, by
// typedFirst); stuck deletes from a table that never exists; slow is an
// ordinary insert sent while another connection holds the SQLite
// warehouse locked: an outage, which holds it, never poisons it.
const (
	typedFirst = `{"activities":[
	  {"operation":"insert","table":"typed","col_names":["n"],"col_types":["INTEGER"],"col_values":[1]}]}`
	conflicting = `{"activities":[
	  {"operation":"insert","table":"typed","col_names":["n"],"col_types":["TEXT"],"col_values":["two"]}]}`
	slow = `{"activities":[
	  {"operation":"insert","table":"later","col_names":["k"],"col_types":["TEXT"],"col_values":["while locked"]}]}`
	fixable = `{"activities":[
	  {"operation":"delete","table":"fixme","value_to_delete":{"col_names":["a","b"],"col_types":["INTEGER","TEXT"],"col_values":[3,"old"]}},
	  {"operation":"insert","table":"fixme","col_names":["a","b"],"col_types":["INTEGER","TEXT"],"col_values":[1,"replayed"]}]}`
	stuck = `{"activities":[
	  {"operation":"delete","table":"missing_forever","value_to_delete":{"col_names":["id"],"col_types":["INTEGER"],"col_values":[1]}}]}`
	fixCause = `{"activities":[
	  {"operation":"insert","table":"fixme","col_names":["a","b"],"col_types":["INTEGER","TEXT"],"col_values":[3,"old"]}]}`
)

// forEachPubSub runs f against the embedded Pub/Sub of a service process
// and, when PUBSUB_EMULATOR_HOST is set, against that emulator. f gets the
// environment the CLI needs to reach the service (ADMIN_ADDR), and, for
// --direct, its Pub/Sub and warehouse.
func forEachPubSub(t *testing.T, f func(t *testing.T, s *service, cli map[string]string)) {
	// Retries end soon, so that a transient failure is poisoned within
	// seconds.
	quick := map[string]string{"RETRY_MAX": "2", "RETRY_INITIAL": "100ms", "RETRY_MAX_INTERVAL": "200ms"}
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		s := startService(t, dir, quick)
		f(t, s, map[string]string{"ADMIN_ADDR": s.adminAddr, "PUBSUB_EMBEDDED_ADDR": s.pubsubAddr, "WAREHOUSE": s.env["WAREHOUSE"]})
	})
	t.Run("emulator", func(t *testing.T) {
		t.Parallel()
		host := os.Getenv("PUBSUB_EMULATOR_HOST")
		if host == "" {
			t.Skip("PUBSUB_EMULATOR_HOST is not set: the poison commands were not run against the Pub/Sub emulator")
		}
		dir := t.TempDir()
		unique := fmt.Sprintf("cmdtests-%d-%d", os.Getpid(), time.Now().UnixNano())
		env := map[string]string{
			"PUBSUB_EMULATOR_HOST": host, "PUBSUB_EMBEDDED_ADDR": "",
			"TOPIC_ID": unique, "SUBSCRIPTION_ID": unique + "-sub",
		}
		for k, v := range quick {
			env[k] = v
		}
		s := startService(t, dir, env)
		if s.pubsubAddr != host {
			t.Fatalf("service uses Pub/Sub at %q, want the emulator %q", s.pubsubAddr, host)
		}
		f(t, s, map[string]string{
			"ADMIN_ADDR": s.adminAddr, "PUBSUB_EMULATOR_HOST": host, "TOPIC_ID": unique, "SUBSCRIPTION_ID": unique + "-sub",
			"WAREHOUSE": s.env["WAREHOUSE"],
		})
	})
}

// canonical is the payload the gate publishes for body, decoded.
func canonical(t *testing.T, body string) any {
	t.Helper()
	p, err := messages.Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(p.Canonical(), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// poisonJSON runs `poison list --json` with args and returns the records by id.
func poisonJSON(t *testing.T, s *service, cli map[string]string, args ...string) map[string]map[string]any {
	t.Helper()
	r := gk(t, s.dir, cli, append([]string{"poison", "list", "--json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("poison list --json %v: exit %d, stderr %q", args, r.code, r.stderr)
	}
	return poisoned(t, r.stdout)
}

// waitIndexed waits until `poison list --json` shows exactly want.
func waitIndexed(t *testing.T, s *service, cli map[string]string, want ...string) map[string]map[string]any {
	t.Helper()
	var got map[string]map[string]any
	if !eventually(60*time.Second, 100*time.Millisecond, func() bool {
		got = poisonJSON(t, s, cli)
		return sameSet(got, want...)
	}) {
		sort.Strings(want)
		t.Fatalf("poison list: %v, want %v; log:\n%s", keys(got), want, s.logs)
	}
	return got
}

// statusOf runs `gatekeeper status ID --json`.
func statusOf(t *testing.T, s *service, cli map[string]string, id string) map[string]any {
	t.Helper()
	r := gk(t, s.dir, cli, "status", id, "--json")
	var st map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status %s: exit %d, stdout %q, stderr %q", id, r.code, r.stdout, r.stderr)
	}
	return st
}

func waitStatus(t *testing.T, s *service, cli map[string]string, id, want string) map[string]any {
	t.Helper()
	var st map[string]any
	if !eventually(30*time.Second, 100*time.Millisecond, func() bool {
		st = statusOf(t, s, cli, id)
		return st["status"] == want
	}) {
		t.Fatalf("status %s = %v, want %s", id, st, want)
	}
	return st
}

// The operators' walk-through, as a test against the real binary: three
// payloads poisoned for three different reasons (a delete on a missing
// table, a type conflict, a transient failure that outlasts RETRY_MAX)
// are listed, filtered, summarised and shown from the poison index; two
// lists at once see the same set; each is fixed and replayed (by id, by
// an edited export, by --all) and applied exactly once; an edit the gate
// refuses publishes nothing; a purged payload is never replayed; and the
// status API follows accepted → poisoned → applied.
func TestPoisonConsoleCommands(t *testing.T) {
	t.Parallel()
	forEachPubSub(t, func(t *testing.T, s *service, cli map[string]string) {
		// Unkeyed payloads carry no order between them, and the apply
		// subscription reads them on many streams: typedFirst must be
		// applied before conflicting is sent, or conflicting may create
		// the table and typedFirst be the one refused.
		p0 := s.post(t, typedFirst)
		waitStatus(t, s, cli, p0.ID, "applied")
		p1 := s.post(t, fixable)
		p2 := s.post(t, conflicting)
		waitIndexed(t, s, cli, p1.ID, p2.ID)

		// An outage: the warehouse locked past the busy timeout, for
		// longer than the retries would last (RETRY_MAX=2 here). The
		// apply stage pauses: the payload stays accepted while the lock
		// holds, is never poisoned, and applies once the lock goes.
		release := warehousetest.HoldSQLiteLock(t, strings.TrimPrefix(s.env["WAREHOUSE"], "sqlite:"))
		p3 := s.post(t, slow)
		if st := statusOf(t, s, cli, p3.ID); st["status"] != "accepted" {
			t.Errorf("status of a payload accepted and not applied: %v, want accepted", st)
		}
		s.waitLog(t, 60*time.Second, func(line string) bool {
			return strings.HasPrefix(logField(line, "msg"), "Apply paused")
		})
		release()
		waitStatus(t, s, cli, p3.ID, "applied")
		all := waitIndexed(t, s, cli, p1.ID, p2.ID)
		for id, want := range map[string]struct{ class, table, reason string }{
			p1.ID: {"permanent", "fixme", `delete on table "fixme": table not found`},
			p2.ID: {"permanent", "typed", "typed"},
		} {
			r := all[id]
			if r["error_class"] != want.class || !reflect.DeepEqual(r["tables"], []any{want.table}) ||
				!strings.Contains(strings.ToLower(fmt.Sprint(r["reason"])), want.reason) {
				t.Errorf("record %s = %v; want class %s, tables [%s], reason with %q", id, r, want.class, want.table, want.reason)
			}
			for _, k := range []string{"received_at", "first_failure_at", "last_failure_at"} {
				if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(r[k])); err != nil {
					t.Errorf("record %s: %s = %v: %v", id, k, r[k], err)
				}
			}
			if a, ok := r["attempts"].(float64); !ok || a < 1 {
				t.Errorf("record %s: attempts = %#v, want a number >= 1", id, r["attempts"])
			}
			if r["state"] != "poisoned" || r["replays"] != float64(0) {
				t.Errorf("record %s: state %v, replays %v; want poisoned, 0", id, r["state"], r["replays"])
			}
		}
		if want := canonical(t, fixable); !reflect.DeepEqual(all[p1.ID]["payload"], want) {
			t.Errorf("payload %s: %v, want the canonical original %v", p1.ID, all[p1.ID]["payload"], want)
		}
		if c := all[p1.ID]["correlation_id"]; c != p1.CorrelationID {
			t.Errorf("correlation_id %v, want %s", c, p1.CorrelationID)
		}
		if st := waitStatus(t, s, cli, p1.ID, "poisoned"); st["error"].(map[string]any)["class"] != "permanent" {
			t.Errorf("status of a poisoned payload: %v", st)
		}

		// Filters.
		if got := poisonJSON(t, s, cli, "--class", "transient"); len(got) != 0 {
			t.Errorf("--class transient: %v, want none: the outage poisoned nothing", keys(got))
		}
		if got := poisonJSON(t, s, cli, "--class", "permanent"); !sameSet(got, p1.ID, p2.ID) {
			t.Errorf("--class permanent: %v", keys(got))
		}
		if got := poisonJSON(t, s, cli, "--table", "typed"); !sameSet(got, p2.ID) {
			t.Errorf("--table typed: %v", keys(got))
		}
		if got := poisonJSON(t, s, cli, "--reason", "TABLE NOT FOUND", "--since", "1h"); !sameSet(got, p1.ID) {
			t.Errorf("--reason 'TABLE NOT FOUND' --since 1h: %v", keys(got))
		}
		if got := poisonJSON(t, s, cli, "--since", time.Now().Add(time.Hour).Format(time.RFC3339)); len(got) != 0 {
			t.Errorf("--since an hour from now: %v", keys(got))
		}
		if r := gk(t, s.dir, cli, "poison", "list", "--json", "--limit", "2"); len(lines(r.stdout)) != 2 {
			t.Errorf("--limit 2: %d lines", len(lines(r.stdout)))
		}
		// The table for a person: a header and one aligned line each.
		r := gk(t, s.dir, cli, "poison", "list")
		if ls := lines(r.stdout); r.code != 0 || len(ls) != 3 || !regexp.MustCompile(`^ID +RECEIVED +LAST FAILURE +ATTEMPTS +CLASS +TABLES +REASON$`).MatchString(ls[0]) ||
			!strings.Contains(r.stdout, p2.ID) || !strings.Contains(r.stdout, "s ago") {
			t.Errorf("poison list: exit %d:\n%s", r.code, r.stdout)
		}

		// Two operators at once see the same complete set.
		var wg sync.WaitGroup
		var seen [2]map[string]map[string]any
		for i := range seen {
			wg.Go(func() { seen[i] = poisonJSON(t, s, cli) })
		}
		wg.Wait()
		if !sameSet(seen[0], keys(seen[1])...) || !sameSet(seen[0], p1.ID, p2.ID) {
			t.Errorf("concurrent lists saw %v and %v", keys(seen[0]), keys(seen[1]))
		}

		// summary: one line per cause, largest first.
		r = gk(t, s.dir, cli, "poison", "summary", "--json")
		if r.code != 0 || len(lines(r.stdout)) != 2 {
			t.Errorf("summary --json: exit %d, %d groups:\n%s", r.code, len(lines(r.stdout)), r.stdout)
		}
		if r := gk(t, s.dir, cli, "poison", "summary"); r.code != 0 || !strings.Contains(r.stdout, "2 payloads, 2 causes") {
			t.Errorf("summary: exit %d:\n%s", r.code, r.stdout)
		}

		// show: metadata, history and the payload pretty-printed.
		r = gk(t, s.dir, cli, "poison", "show", p1.ID)
		for _, want := range []string{"state          poisoned", "reason_poisoned = ", "poisoned generation 0", `"operation": "delete"`} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("show %s lacks %q:\n%s", p1.ID, want, r.stdout)
			}
		}
		if r := gk(t, s.dir, cli, "poison", "show", "00000000-0000-0000-0000-000000000000"); r.code != 1 || !strings.Contains(r.stderr, "not in the poison index") {
			t.Errorf("show unknown: exit %d, stderr %q", r.code, r.stderr)
		}
		if r := gk(t, s.dir, cli, "poison", "replay", "00000000-0000-0000-0000-000000000000"); r.code != 1 || !strings.Contains(r.stderr, "not in the poison index") {
			t.Errorf("replay unknown: exit %d, stderr %q", r.code, r.stderr)
		}

		// Fix p1's cause and replay exactly p1: applied once.
		s.post(t, fixCause)
		if !eventually(15*time.Second, 50*time.Millisecond, func() bool {
			return gk(t, s.dir, cli, "rows", "fixme").stdout == `{"a":3,"b":"old"}`+"\n"
		}) {
			t.Fatal("the insert that fixes the cause was not applied")
		}
		r = gk(t, s.dir, cli, "poison", "replay", p1.ID)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "replayed 1, refused 0, skipped 0") {
			t.Fatalf("replay %s: exit %d, stdout %q, stderr %q", p1.ID, r.code, r.stdout, r.stderr)
		}
		if st := waitStatus(t, s, cli, p1.ID, "applied"); st["applied_at"] == nil || st["replays"] != float64(1) {
			t.Errorf("status after replay: %v", st)
		}
		if rows := gk(t, s.dir, cli, "rows", "fixme").stdout; rows != `{"a":1,"b":"replayed"}`+"\n" {
			t.Errorf("rows fixme after the replay: %q", rows)
		}
		if r := gk(t, s.dir, cli, "poison", "replay", p1.ID); r.code != 0 || !strings.HasPrefix(r.stdout, "replayed 0, refused 0, skipped 1") {
			t.Errorf("replaying an applied payload: exit %d, stdout %q; want it skipped", r.code, r.stdout)
		}
		waitIndexed(t, s, cli, p2.ID)

		// Export p2, edit it: an edit the gate refuses is refused with
		// the gate's errors and publishes nothing; a good one applies.
		export := filepath.Join(s.dir, "typed.jsonl")
		if r := gk(t, s.dir, cli, "poison", "export", "--table", "typed", "-o", export); r.code != 0 {
			t.Fatalf("export: exit %d, stderr %q", r.code, r.stderr)
		}
		raw, err := os.ReadFile(export)
		if err != nil || len(lines(string(raw))) != 1 || !strings.Contains(string(raw), p2.ID) {
			t.Fatalf("export file: %q, %v", raw, err)
		}
		bad := strings.Replace(string(raw), `"STRING"`, `"TEXTILE"`, 1)
		if err := os.WriteFile(export, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		r = gk(t, s.dir, cli, "poison", "replay", "--from", export)
		if r.code != 1 || !strings.HasPrefix(r.stdout, "replayed 0, refused 1") || !strings.Contains(r.stderr, "/activities/0/col_types/0") {
			t.Errorf("replay --from a refused edit: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		good := strings.Replace(strings.Replace(string(raw), `"STRING"`, `"INTEGER"`, 1), `"two"`, `2`, 1)
		if err := os.WriteFile(export, []byte(good), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := gk(t, s.dir, cli, "poison", "replay", "--from", export); r.code != 0 || !strings.HasPrefix(r.stdout, "replayed 1, refused 0") {
			t.Fatalf("replay --from the fixed edit: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		waitStatus(t, s, cli, p2.ID, "applied")
		if rows := gk(t, s.dir, cli, "rows", "typed").stdout; rows != `{"n":1}`+"\n"+`{"n":2}`+"\n" {
			t.Errorf("rows typed after the edited replay: %q", rows)
		}

		// The outage poisoned nothing: replay --all finds nothing, and
		// the payload it held was applied once.
		if r := gk(t, s.dir, cli, "poison", "replay", "--all", "--yes", "--rate", "1000"); r.code != 0 || !strings.HasPrefix(r.stdout, "replayed 0, refused 0, skipped 0") {
			t.Fatalf("replay --all: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if rows := gk(t, s.dir, cli, "rows", "later").stdout; rows != `{"k":"while locked"}`+"\n" {
			t.Errorf("rows later: %q, want the payload held through the lock, once", rows)
		}
		waitIndexed(t, s, cli)

		// purge: asked for unless --yes; gone from the list, kept under
		// its state, never replayed.
		p4 := s.post(t, stuck)
		waitIndexed(t, s, cli, p4.ID)
		if r := gk(t, s.dir, cli, "poison", "purge", p4.ID); r.code != 1 || !strings.Contains(r.stderr, "Purge 1 payload(s)?") {
			t.Errorf("purge without --yes and no terminal: exit %d, stderr %q", r.code, r.stderr)
		}
		if r := gk(t, s.dir, cli, "poison", "purge", "--all", "--yes"); r.code != 0 || r.stdout != "purged 1\n" {
			t.Errorf("purge --all --yes: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		waitIndexed(t, s, cli)
		if got := poisonJSON(t, s, cli, "--state", "purged"); !sameSet(got, p4.ID) {
			t.Errorf("--state purged: %v", keys(got))
		}
		if r := gk(t, s.dir, cli, "poison", "replay", p4.ID); r.code != 0 || !strings.HasPrefix(r.stdout, "replayed 0, refused 0, skipped 1") {
			t.Errorf("replay of a purged payload: exit %d, stdout %q", r.code, r.stdout)
		}
		waitStatus(t, s, cli, p4.ID, "purged")

		// Each payload applied exactly once, and nothing of the stuck one.
		if r := gk(t, s.dir, cli, "tables"); r.stdout != "fixme\nlater\ntyped\n" {
			t.Errorf("tables: %q", r.stdout)
		}
		if rows := gk(t, s.dir, cli, "rows", "later").stdout; rows != `{"k":"while locked"}`+"\n" {
			t.Errorf("rows later: %q", rows)
		}
		if st := statusOf(t, s, cli, "00000000-0000-0000-0000-000000000000"); st["status"] != "unknown" {
			t.Errorf("status of an unknown id: %v", st)
		}
	})
}

// Without a service to ask, every command that asks one fails within
// seconds, saying what it tried and how to fix it: it never answers "no
// payloads" when it did not look, and leaves no file behind.
func TestCommandsWithoutServiceFail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	nobody := freeAddr(t)
	binary(t) // built before the clock starts
	for _, args := range [][]string{{"poison", "list"}, {"poison", "summary"}, {"poison", "show", "0195f0c4-0000-7000-8000-000000000000"},
		{"poison", "replay", "--all", "--yes"}, {"poison", "export"}, {"poison", "export", "-o", "poisoned.jsonl"}, {"poison", "purge", "--all", "--yes"},
		{"status", "0195f0c4-0000-7000-8000-000000000000"}, {"tables"}, {"rows", "t"}} {
		start := time.Now()
		r := gk(t, dir, map[string]string{"ADMIN_ADDR": nobody}, args...)
		want := "gatekeeper: no gatekeeper on " + nobody + " (ADMIN_ADDR): "
		if r.code != 1 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "is it running? set ADMIN_ADDR or --server") || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1 and %q…", strings.Join(args, " "), r.code, r.stdout, r.stderr, want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %s; nothing listening should fail at once", strings.Join(args, " "), d)
		}
	}
	// --server names it too.
	r := gk(t, dir, nil, "poison", "list", "--server", "http://"+nobody)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "gatekeeper: no gatekeeper on "+nobody+" (--server): ") {
		t.Errorf("--server: exit %d, stderr %q", r.code, r.stderr)
	}
	// The default address, with nothing set: the same, naming it.
	if r := gk(t, dir, map[string]string{"ADMIN_ADDR": "off"}, "poison", "list"); r.code != 1 || !strings.HasPrefix(r.stderr, "gatekeeper: ADMIN_ADDR=off: there is no admin listener to ask") {
		t.Errorf("ADMIN_ADDR=off: exit %d, stderr %q", r.code, r.stderr)
	}
	// Something that is not gatekeeper's admin listener answers.
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	host := strings.TrimPrefix(other.URL, "http://")
	if r := gk(t, dir, map[string]string{"ADMIN_ADDR": host}, "tables"); r.code != 1 ||
		!strings.HasPrefix(r.stderr, "gatekeeper: "+host+" (ADMIN_ADDR) is not a gatekeeper admin listener: GET /api/tables answered 404") {
		t.Errorf("another server: exit %d, stderr %q", r.code, r.stderr)
	}

	// --direct reads a warehouse that exists, and creates none.
	for _, args := range [][]string{{"poison", "list", "--direct"}, {"tables", "--direct"}, {"status", "--direct", "0195f0c4-0000-7000-8000-000000000000"},
		{"rows", "t", "--warehouse", "sqlite:" + filepath.Join(dir, "w.db")}} {
		r := gk(t, dir, nil, args...)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "gatekeeper: no SQLite warehouse at "+dir+"/") || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1 and the missing file named", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the commands left %v behind", left)
	}
}

// A direct replay with nothing listening on the Pub/Sub it would publish
// to fails at once, naming it.
func TestDirectReplayWithoutPubSubFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startService(t, dir, nil)
	p := s.post(t, stuck)
	waitIndexed(t, s, map[string]string{"ADMIN_ADDR": s.adminAddr}, p.ID)
	nobody := freeAddr(t)
	r := gk(t, dir, map[string]string{"WAREHOUSE": s.env["WAREHOUSE"], "PUBSUB_EMBEDDED_ADDR": nobody}, "poison", "replay", "--direct", p.ID)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "gatekeeper: no Pub/Sub on "+nobody+" (PUBSUB_EMBEDDED_ADDR): ") {
		t.Errorf("direct replay without Pub/Sub: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// With the service's, it replays; list and status --direct read the
	// same index.
	env := map[string]string{"WAREHOUSE": s.env["WAREHOUSE"], "PUBSUB_EMBEDDED_ADDR": s.pubsubAddr}
	if r := gk(t, dir, env, "poison", "list", "--direct", "--json"); !sameSet(poisoned(t, r.stdout), p.ID) {
		t.Errorf("list --direct: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := gk(t, dir, env, "status", "--direct", p.ID); r.code != 0 || !strings.HasPrefix(r.stdout, p.ID+"  poisoned\n") {
		t.Errorf("status --direct: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := gk(t, dir, env, "poison", "replay", "--direct", p.ID); r.code != 0 || !strings.HasPrefix(r.stdout, "replayed 1, refused 0, skipped 0") {
		t.Errorf("replay --direct: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// The summary's last line counts in words: "1 payload, 1 cause".
func TestPlural(t *testing.T) {
	for n, want := range map[int]string{0: "0 causes", 1: "1 cause", 2: "2 causes"} {
		if got := plural(n, "cause"); got != want {
			t.Errorf("plural(%d) = %q, want %q", n, got, want)
		}
	}
}
