package pipeline_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/operator"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// With ORDERING_POISON=block a poisoned payload holds its key: the key's
// later payloads are neither applied nor poisoned while another key's
// apply, until an operator replays the poisoned payload (then it applies
// first, and the held ones after it, in order) or purges it (then the held
// ones apply).
func TestBlockedKeyHoldsUntilTheOperatorActs(t *testing.T) {
	t.Parallel()
	for _, action := range []string{"replay", "purge"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
				testBlockedKey(t, mode, action)
			})
		})
	}
}

func testBlockedKey(t *testing.T, mode pipeline.PubSubMode, action string) {
	cfg := testConfig(t, mode)
	cfg.OrderingPoison = pipeline.OrderingPoisonBlock
	debug := &syncBuffer{}
	r := startServiceLogging(t, cfg, debug)
	store := r.svc.Store
	key := []string{"X-Ordering-Key", "customer-7"}
	other := []string{"X-Ordering-Key", "customer-8"}
	mustPost := func(body string, header ...string) string {
		t.Helper()
		code, resp, _ := post(t, r.base, "application/json", body, header...)
		if code != http.StatusOK {
			t.Fatalf("POST %s: %d %+v", body, code, resp)
		}
		return resp.ID
	}

	// p1 deletes from a table that does not exist yet: poisoned at once.
	p1 := mustPost(rowPayload("held", 7, 2, ""), key...)
	console, err := pipeline.NewConsole(context.Background(), toolConfig(r), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = console.Close() })
	if !eventually(20*time.Second, func() bool {
		es, _, err := console.Select(context.Background(), operator.Selection{IDs: []string{p1}})
		return err == nil && len(es) == 1 && es[0].State == warehouse.EventPoisoned
	}) {
		t.Fatalf("p1 is not in the poison index; log:\n%s", r.logs)
	}
	// Accepted after p1's poisoning: p2 inserts row 7, p3 row 8.
	p2 := mustPost(rowPayload("held", 7, 5, ""), key...)
	p3 := mustPost(rowPayload("held", 8, 3, ""), key...)
	// Another key, and no key, apply meanwhile.
	q1 := mustPost(rowPayload("free", 1, 1, ""), other...)
	q2 := mustPost(rowPayload("free", 2, 1, ""))
	waitApplied(t, store, q1, 20*time.Second)
	waitApplied(t, store, q2, 20*time.Second)
	// A few hold cycles (one a second) pass without p2 or p3 applying or
	// being poisoned: p2, the key's head, is held three times.
	heldP2 := func() int {
		n := 0
		for line := range strings.Lines(debug.String()) {
			if strings.Contains(line, `msg="Payload held: its ordering key is blocked"`) && strings.Contains(line, "payload_id="+p2) {
				n++
			}
		}
		return n
	}
	if !eventually(30*time.Second, func() bool { return heldP2() >= 3 }) {
		t.Fatalf("p2 held %d times within 30 s, want 3 hold cycles; log:\n%s", heldP2(), r.logs)
	}
	for _, id := range []string{p2, p3} {
		st, err := store.State(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Applied || st.Entry != nil {
			t.Fatalf("held payload %s: applied %v, index entry %+v; want neither", id, st.Applied, st.Entry)
		}
	}
	if tables, err := store.Tables(context.Background()); err != nil {
		t.Fatal(err)
	} else {
		for _, tb := range tables {
			if tb == "held" {
				t.Fatalf("table held exists: a held payload was applied")
			}
		}
	}

	entries, _, err := console.Select(context.Background(), operator.Selection{IDs: []string{p1}})
	if err != nil || len(entries) != 1 {
		t.Fatalf("Select p1: %v %v", entries, err)
	}
	switch action {
	case "replay":
		// The operator fixes the cause: the table, with row 7 in it, which
		// p1 deletes. Had p2 (insert row 7) applied before p1, p1 would
		// delete p2's row.
		fix := mustPost(rowPayload("held", 7, 1, ""))
		waitApplied(t, store, fix, 20*time.Second)
		rep, err := console.Replay(context.Background(), operator.ItemsOf(entries), operator.ReplayOptions{Rate: 1000, Actor: "test"})
		if err != nil || rep.Replayed != 1 {
			t.Fatalf("Replay: %+v %v", rep, err)
		}
		for _, id := range []string{p1, p2, p3} {
			waitApplied(t, store, id, 30*time.Second)
		}
		var at []time.Time
		for _, id := range []string{p1, p2, p3} {
			st, err := store.State(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			at = append(at, st.AppliedAt)
		}
		if at[1].Before(at[0]) || at[2].Before(at[1]) {
			t.Errorf("applied at %v, want p1, p2, p3 in that order", at)
		}
	case "purge":
		if n, err := console.Purge(context.Background(), entries, "test"); err != nil || n != 1 {
			t.Fatalf("Purge: %d %v", n, err)
		}
		for _, id := range []string{p2, p3} {
			waitApplied(t, store, id, 30*time.Second)
		}
		if applied, err := store.Applied(context.Background(), p1); err != nil || applied {
			t.Fatalf("purged p1 applied: %v %v", applied, err)
		}
	}
	// Row 7 is p2's (seq 5), row 8 p3's.
	got := rows(t, store, "held")
	if len(got) != 2 || got[0]["id"] != int64(7) || got[0]["seq"] != int64(5) || got[1]["id"] != int64(8) {
		t.Fatalf("rows = %v, want p2's row 7 and p3's row 8", got)
	}
	// A hold is logged once, when the key is blocked, not once a second
	// by the router as an error.
	if n := strings.Count(r.logs.String(), "Ordering key blocked"); n != 1 || strings.Contains(r.logs.String(), "Handler returned error") {
		t.Errorf("log has %d \"Ordering key blocked\" lines (want 1), or a held payload logged as an error:\n%s", n, r.logs)
	}
	// Held payloads were never poisoned for being held.
	if n, err := store.CountEntries(context.Background()); err != nil || n[warehouse.EventPoisoned].Entries != 0 {
		t.Fatalf("poisoned entries = %v %v, want none left", n, err)
	}
}
