package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
)

// Two payloads the gate accepts and the warehouse rejects for good: each
// deletes from a table that does not exist. fixable's cause is fixed during
// the test (its table is created); stuck's never is.
const (
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
// environment the CLI needs to reach the service's Pub/Sub and warehouse.
func forEachPubSub(t *testing.T, f func(t *testing.T, s *service, cli map[string]string)) {
	t.Run("embedded", func(t *testing.T) {
		dir := t.TempDir()
		s := startService(t, dir, nil)
		f(t, s, map[string]string{"PUBSUB_EMBEDDED_ADDR": s.pubsubAddr, "WAREHOUSE": s.env["WAREHOUSE"]})
	})
	t.Run("emulator", func(t *testing.T) {
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
		s := startService(t, dir, env)
		if s.pubsubAddr != host {
			t.Fatalf("service uses Pub/Sub at %q, want the emulator %q", s.pubsubAddr, host)
		}
		f(t, s, map[string]string{
			"PUBSUB_EMULATOR_HOST": host, "TOPIC_ID": unique, "SUBSCRIPTION_ID": unique + "-sub",
			"WAREHOUSE": s.env["WAREHOUSE"],
		})
	})
}

// listPoison runs `poison list` until the poison subscription holds
// exactly the payloads want (at most 30 s), and returns them by id.
func listPoison(t *testing.T, s *service, cli map[string]string, want ...string) map[string]map[string]any {
	t.Helper()
	var r result
	var got map[string]map[string]any
	if !eventually(30*time.Second, 100*time.Millisecond, func() bool {
		r = gk(t, s.dir, cli, "poison", "list")
		got = poisoned(t, r.stdout)
		return r.code == 0 && sameSet(got, want...)
	}) {
		sort.Strings(want)
		t.Fatalf("poison list: exit %d, payloads %v, want %v; stderr %q", r.code, keys(got), want, r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("poison list wrote to stderr: %q", r.stderr)
	}
	return got
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

// The README's walk-through, as a test: a payload accepted but impossible
// to apply shows in `poison list` with why (and stays there); once its
// cause is fixed, `poison replay --id` sends back exactly that payload,
// which is then applied, and leaves the other one on the poison
// subscription; `poison replay` sends the rest, which, still impossible,
// comes back poisoned again with replays=1.
func TestPoisonListAndReplay(t *testing.T) {
	forEachPubSub(t, func(t *testing.T, s *service, cli map[string]string) {
		topic := cli["TOPIC_ID"]
		if topic == "" {
			topic = "db-transaction-topic"
		}
		p1 := s.post(t, fixable)
		p2 := s.post(t, stuck)

		// list: both, with the README's fields, and they stay
		got := listPoison(t, s, cli, p1.ID, p2.ID)
		want := map[string]struct {
			acc          accepted
			body, reason string
			tables       string
		}{
			p1.ID: {p1, fixable, `activities[0]: delete on table "fixme": table not found`, "fixme"},
			p2.ID: {p2, stuck, `activities[0]: delete on table "missing_forever": table not found`, "missing_forever"},
		}
		for id, w := range want {
			p := got[id]
			for k, v := range map[string]string{
				"reason": w.reason, "error_class": "permanent", "attempts": "1",
				"tables": w.tables, "correlation_id": w.acc.CorrelationID,
			} {
				if p[k] != v {
					t.Errorf("payload %s: %s = %v, want %q", id, k, p[k], v)
				}
			}
			for _, k := range []string{"first_failure_at", "last_failure_at", "received_at"} {
				if s, _ := p[k].(string); s == "" {
					t.Errorf("payload %s: no %s", id, k)
				} else if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
					t.Errorf("payload %s: %s = %q: %v", id, k, s, err)
				}
			}
			if _, ok := p["replays"]; ok {
				t.Errorf("payload %s: replays = %v before any replay", id, p["replays"])
			}
			if want := canonical(t, w.body); !reflect.DeepEqual(p["payload"], want) {
				t.Errorf("payload %s: payload\n%v\nwant the canonical original\n%v", id, p["payload"], want)
			}
		}
		listPoison(t, s, cli, p1.ID, p2.ID) // list leaves them there
		if r := gk(t, s.dir, cli, "poison", "list", "--max", "1"); r.code != 0 || len(lines(r.stdout)) != 1 {
			t.Errorf("poison list --max 1: exit %d, %d lines, want 0 and 1; stderr %q", r.code, len(lines(r.stdout)), r.stderr)
		}
		listPoison(t, s, cli, p1.ID, p2.ID)

		// an id that is not there replays nothing and keeps both
		r := gk(t, s.dir, cli, "poison", "replay", "--id", "00000000-0000-0000-0000-000000000000")
		if r.code != 0 || r.stdout != "" || r.stderr != "replayed 0 payload(s) to "+topic+"\n" {
			t.Errorf("poison replay --id unknown: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		listPoison(t, s, cli, p1.ID, p2.ID)

		// fix p1's cause, replay exactly p1
		s.post(t, fixCause)
		if !eventually(15*time.Second, 50*time.Millisecond, func() bool {
			return gk(t, s.dir, cli, "rows", "fixme").stdout == `{"a":3,"b":"old"}`+"\n"
		}) {
			t.Fatal("the insert that fixes the cause was not applied")
		}
		r = gk(t, s.dir, cli, "poison", "replay", "--id", p1.ID)
		if r.code != 0 || r.stderr != "replayed 1 payload(s) to "+topic+"\n" {
			t.Fatalf("poison replay --id: exit %d, stderr %q", r.code, r.stderr)
		}
		if replayed := poisoned(t, r.stdout); !sameSet(replayed, p1.ID) {
			t.Errorf("poison replay --id %s printed %v", p1.ID, keys(replayed))
		}
		// applied: its delete removed the row, its insert added its own,
		// in one transaction
		var rows result
		if !eventually(15*time.Second, 50*time.Millisecond, func() bool {
			rows = gk(t, s.dir, cli, "rows", "fixme")
			return rows.stdout == `{"a":1,"b":"replayed"}`+"\n"
		}) {
			t.Fatalf("the replayed payload was not applied: rows fixme = %q; log:\n%s", rows.stdout, s.logs)
		}
		// and only the other one is left
		left := listPoison(t, s, cli, p2.ID)
		if _, ok := left[p2.ID]["replays"]; ok {
			t.Errorf("payload %s was replayed too: %v", p2.ID, left[p2.ID])
		}

		// replay everything: p2 goes back and, still impossible, is
		// poisoned again, now marked as replayed once
		r = gk(t, s.dir, cli, "poison", "replay")
		if r.code != 0 || r.stderr != "replayed 1 payload(s) to "+topic+"\n" || !sameSet(poisoned(t, r.stdout), p2.ID) {
			t.Fatalf("poison replay: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		var again map[string]map[string]any
		if !eventually(30*time.Second, 100*time.Millisecond, func() bool {
			again = poisoned(t, gk(t, s.dir, cli, "poison", "list").stdout)
			return sameSet(again, p2.ID) && again[p2.ID]["replays"] == "1"
		}) {
			t.Fatalf("after poison replay, want %s poisoned again with replays=1; poison list: %v", p2.ID, again)
		}
		if a := again[p2.ID]["attempts"]; a != "1" {
			t.Errorf("re-poisoned payload: attempts = %v, want 1 (attempts describe the new failure)", a)
		}
		if r := gk(t, s.dir, cli, "tables"); r.stdout != "fixme\n" {
			t.Errorf("tables: %q; want only fixme (a poisoned payload creates nothing)", r.stdout)
		}
	})
}

// A poison command that cannot reach Pub/Sub must fail, not report an
// empty poison subscription.
func TestPoisonListWithoutPubSubFails(t *testing.T) {
	dir := t.TempDir()
	for _, verb := range []string{"list", "replay"} {
		r := gk(t, dir, map[string]string{"PUBSUB_EMBEDDED_ADDR": freeAddr(t)}, "poison", verb)
		if r.code == 0 {
			t.Errorf("poison %s with nothing listening: exit 0, stdout %q, stderr %q; want non-zero and the reason", verb, r.stdout, r.stderr)
		}
	}
	r := gk(t, dir, map[string]string{"PUBSUB_EMULATOR_HOST": freeAddr(t)}, "poison", "list")
	if r.code == 0 {
		t.Errorf("poison list against an emulator address nothing listens on: exit 0; want non-zero")
	}
}

// A poison subscription that does not exist is an error naming it.
func TestPoisonListUnknownSubscription(t *testing.T) {
	dir := t.TempDir()
	s := startService(t, dir, nil)
	r := gk(t, dir, map[string]string{"PUBSUB_EMBEDDED_ADDR": s.pubsubAddr, "POISON_SUBSCRIPTION_ID": "nosuch"}, "poison", "list")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "gatekeeper: pull nosuch: ") || !strings.Contains(r.stderr, "NotFound") {
		t.Errorf("poison list of a missing subscription: exit %d, stderr %q; want 1 and the subscription named", r.code, r.stderr)
	}
}
