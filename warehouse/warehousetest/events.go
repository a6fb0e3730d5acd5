package warehousetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// The events log's scenarios. Times are whole microseconds, BigQuery's
// precision.

var eventsEpoch = time.Date(2026, 3, 4, 5, 6, 7, 890_123_000, time.UTC)

func at(minutes int) time.Time { return eventsEpoch.Add(time.Duration(minutes) * time.Minute) }

// Poisoned is a poisoned event with every field set, as the indexer writes
// it from a poison message.
func Poisoned(payloadID string, generation int, when time.Time, class, reason string, tables ...string) warehouse.Event {
	return warehouse.Event{
		ID:             warehouse.EventID(payloadID, warehouse.EventPoisoned, generation),
		PayloadID:      payloadID,
		Kind:           warehouse.EventPoisoned,
		Generation:     generation,
		At:             when,
		ErrorClass:     class,
		Reason:         reason,
		Tables:         tables,
		Attempts:       3 + generation,
		FirstFailureAt: when.Add(-2 * time.Minute),
		LastFailureAt:  when.Add(-time.Minute),
		ReceivedAt:     when.Add(-3 * time.Minute),
		CorrelationID:  "corr-" + payloadID,
		Attributes: map[string]string{
			"replays": fmt.Sprint(generation), "CloudPubSubDeadLetterSourceDeliveryCount": "5", "odd key é": "ü\n\"x\"",
		},
		Payload: []byte(`{"activities":[]}` + "\x00\xff"),
	}
}

// fromBackend is e as a poison message of that backend gives it: the
// "backend" attribute (messages.MetaBackend).
func fromBackend(e warehouse.Event, backend string) warehouse.Event {
	e.Attributes = maps.Clone(e.Attributes)
	e.Attributes["backend"] = backend
	return e
}

// withAttr is e with one more attribute of its poison message, as
// "ordering_key" (messages.MetaOrderingKey).
func withAttr(e warehouse.Event, key, value string) warehouse.Event {
	e.Attributes = maps.Clone(e.Attributes)
	e.Attributes[key] = value
	return e
}

// Operated is a replayed or purged event.
func Operated(payloadID string, kind warehouse.EventKind, generation int, when time.Time) warehouse.Event {
	return warehouse.Event{
		ID: warehouse.EventID(payloadID, kind, generation), PayloadID: payloadID,
		Kind: kind, Generation: generation, At: when, Actor: "cli",
	}
}

func appendEvents(t *testing.T, w warehouse.Store, events ...warehouse.Event) {
	t.Helper()
	if err := w.AppendEvents(testContext(t), events); err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
}

func entries(t *testing.T, w warehouse.Store, f warehouse.EventFilter) []warehouse.Entry {
	t.Helper()
	got, err := w.Entries(testContext(t), f)
	if err != nil {
		t.Fatalf("Entries(%+v): %v", f, err)
	}
	return got
}

func history(t *testing.T, w warehouse.Store, payloadID string) []warehouse.Event {
	t.Helper()
	got, err := w.History(testContext(t), payloadID)
	if err != nil {
		t.Fatalf("History(%q): %v", payloadID, err)
	}
	return got
}

func state(t *testing.T, w warehouse.Store, payloadID string) warehouse.PayloadState {
	t.Helper()
	got, err := w.State(testContext(t), payloadID)
	if err != nil {
		t.Fatalf("State(%q): %v", payloadID, err)
	}
	return got
}

// eventDiff describes how got differs from want; "" when it does not.
// Empty and nil slices and maps are alike.
func eventDiff(got, want warehouse.Event) string {
	var d []string
	check := func(name string, same bool, g, w any) {
		if !same {
			d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	check("ID", got.ID == want.ID, got.ID, want.ID)
	check("PayloadID", got.PayloadID == want.PayloadID, got.PayloadID, want.PayloadID)
	check("Kind", got.Kind == want.Kind, got.Kind, want.Kind)
	check("Generation", got.Generation == want.Generation, got.Generation, want.Generation)
	check("At", got.At.Equal(want.At), got.At, want.At)
	check("ErrorClass", got.ErrorClass == want.ErrorClass, got.ErrorClass, want.ErrorClass)
	check("Reason", got.Reason == want.Reason, got.Reason, want.Reason)
	check("Tables", slices.Equal(got.Tables, want.Tables), got.Tables, want.Tables)
	check("Attempts", got.Attempts == want.Attempts, got.Attempts, want.Attempts)
	check("FirstFailureAt", got.FirstFailureAt.Equal(want.FirstFailureAt), got.FirstFailureAt, want.FirstFailureAt)
	check("LastFailureAt", got.LastFailureAt.Equal(want.LastFailureAt), got.LastFailureAt, want.LastFailureAt)
	check("ReceivedAt", got.ReceivedAt.Equal(want.ReceivedAt), got.ReceivedAt, want.ReceivedAt)
	check("CorrelationID", got.CorrelationID == want.CorrelationID, got.CorrelationID, want.CorrelationID)
	check("Attributes", maps.Equal(got.Attributes, want.Attributes), got.Attributes, want.Attributes)
	check("Payload", string(got.Payload) == string(want.Payload), got.Payload, want.Payload)
	check("Actor", got.Actor == want.Actor, got.Actor, want.Actor)
	return strings.Join(d, "; ")
}

func expectEvents(t *testing.T, what string, got []warehouse.Event, want ...warehouse.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events %v, want %d %v", what, len(got), eventIDs(got), len(want), eventIDs(want))
	}
	for i := range got {
		if d := eventDiff(got[i], want[i]); d != "" {
			t.Errorf("%s: event %d (%s): %s", what, i, want[i].ID, d)
		}
	}
}

func eventIDs(events []warehouse.Event) []string {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	return ids
}

func entryPayloads(es []warehouse.Entry) []string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.Latest.PayloadID
	}
	return ids
}

func expectEntryPayloads(t *testing.T, w warehouse.Store, f warehouse.EventFilter, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := entryPayloads(entries(t, w, f)); !slices.Equal(got, want) {
		t.Errorf("Entries(%+v) = %v, want %v", f, got, want)
	}
}

var allStates = []warehouse.EventKind{warehouse.EventPoisoned, warehouse.EventReplayed, warehouse.EventPurged}

func appendIsIdempotentByID(t *testing.T, w warehouse.Store) {
	e := Poisoned("p1", 0, at(0), "permanent", "column a: type mismatch", "t1", "t2")
	// Twice in one call, and again in a later one (a redelivered poison
	// message), with a later time: the first copy stays.
	later := e
	later.At = at(5)
	later.Reason = "a copy"
	appendEvents(t, w, e, e)
	appendEvents(t, w, later)
	expectEvents(t, "History(p1)", history(t, w, "p1"), e)
	got := entries(t, w, warehouse.EventFilter{})
	if len(got) != 1 {
		t.Fatalf("Entries = %v, want one entry", entryPayloads(got))
	}
	if got[0].Replays != 0 || got[0].State != warehouse.EventPoisoned {
		t.Errorf("entry: State %q, Replays %d; want poisoned, 0", got[0].State, got[0].Replays)
	}
	if d := eventDiff(got[0].Latest, e); d != "" {
		t.Errorf("entry's Latest: %s", d)
	}
	if d := eventDiff(got[0].Poisoned, e); d != "" {
		t.Errorf("entry's Poisoned: %s", d)
	}
}

func entriesFollowTheLatestEvent(t *testing.T, w warehouse.Store) {
	// The clocks disagree with the order: a replay's process runs ahead,
	// the purge's behind. Generation and kind decide, never At.
	first := Poisoned("p1", 0, at(10), "permanent", "first failure", "t1")
	replayed := Operated("p1", warehouse.EventReplayed, 1, at(30))
	second := Poisoned("p1", 1, at(20), "transient", "second failure", "t2")
	purged := Operated("p1", warehouse.EventPurged, 1, at(15))
	all := warehouse.EventFilter{States: allStates}

	step := func(name string, event warehouse.Event, state warehouse.EventKind, replays int, poisoned warehouse.Event) {
		t.Helper()
		appendEvents(t, w, event)
		got := entries(t, w, all)
		if len(got) != 1 {
			t.Fatalf("after %s: Entries = %v, want one entry", name, entryPayloads(got))
		}
		e := got[0]
		if e.State != state || e.Latest.ID != event.ID || e.Replays != replays {
			t.Errorf("after %s: State %q, Latest %q, Replays %d; want %q, %q, %d",
				name, e.State, e.Latest.ID, e.Replays, state, event.ID, replays)
		}
		if d := eventDiff(e.Latest, event); d != "" {
			t.Errorf("after %s: Latest: %s", name, d)
		}
		if d := eventDiff(e.Poisoned, poisoned); d != "" {
			t.Errorf("after %s: Poisoned: %s", name, d)
		}
	}
	step("the first poisoning", first, warehouse.EventPoisoned, 0, first)
	step("the replay", replayed, warehouse.EventReplayed, 1, first)
	step("the second poisoning", second, warehouse.EventPoisoned, 1, second)
	step("the purge", purged, warehouse.EventPurged, 1, second)

	// The default filter lists only what is poisoned now.
	expectEntryPayloads(t, w, warehouse.EventFilter{})
	expectEntryPayloads(t, w, warehouse.EventFilter{States: []warehouse.EventKind{warehouse.EventPurged}}, "p1")
}

func entriesFilters(t *testing.T, w warehouse.Store) {
	appendEvents(t, w,
		fromBackend(Poisoned("a", 0, at(1), "permanent", "column X: Type Mismatch", "orders", "items"), "billing"),
		withAttr(fromBackend(Poisoned("b", 0, at(2), "transient", "deadline exceeded", "orders"), "shop"), "ordering_key", ""),
		withAttr(Poisoned("c", 0, at(3), "permanent", "50% of_the rows", "Items"), "ordering_key", "customer-1"),
		// d was poisoned in orders, replayed, and poisoned again in items.
		fromBackend(Poisoned("d", 0, at(4), "transient", "busy", "orders"), "billing"),
		Operated("d", warehouse.EventReplayed, 1, at(5)),
		fromBackend(Poisoned("d", 1, at(6), "permanent", "type mismatch again", "items"), "shop"),
		// e is replayed and not poisoned since.
		withAttr(Poisoned("e", 0, at(7), "permanent", "type mismatch", "orders"), "ordering_key", "customer-2"),
		Operated("e", warehouse.EventReplayed, 1, at(8)),
		// f is purged.
		withAttr(Poisoned("f", 0, at(9), "permanent", "type mismatch", "orders"), "ordering_key", "customer-1"),
		Operated("f", warehouse.EventPurged, 0, at(10)),
	)
	type F = warehouse.EventFilter
	type K = []warehouse.EventKind
	expectEntryPayloads(t, w, F{}, "d", "c", "b", "a")
	expectEntryPayloads(t, w, F{States: K{warehouse.EventReplayed}}, "e")
	expectEntryPayloads(t, w, F{States: K{warehouse.EventPurged, warehouse.EventReplayed}}, "f", "e")
	expectEntryPayloads(t, w, F{States: allStates}, "f", "e", "d", "c", "b", "a")
	// Counted by state, as the poison gauge reads them.
	counts, err := w.CountEntries(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	// Oldest is since when the longest-waiting entry is in its state: a
	// was poisoned first; d's first poisoning (at 4) does not count, its
	// latest (at 6) does.
	want := map[warehouse.EventKind]warehouse.StateCount{
		warehouse.EventPoisoned: {Entries: 4, Oldest: at(1)},
		warehouse.EventReplayed: {Entries: 1, Oldest: at(8)},
		warehouse.EventPurged:   {Entries: 1, Oldest: at(10)},
	}
	if !maps.EqualFunc(counts, want, func(a, b warehouse.StateCount) bool { return a.Entries == b.Entries && a.Oldest.Equal(b.Oldest) }) {
		t.Errorf("CountEntries = %v, want %v", counts, want)
	}
	expectEntryPayloads(t, w, F{PayloadIDs: []string{"a", "d", "e", "missing"}}, "d", "a")
	expectEntryPayloads(t, w, F{PayloadIDs: []string{"e"}, States: allStates}, "e")
	// The latest poisoning's tables, class and reason decide: d's first
	// poisoning was in orders, transient, and "busy".
	expectEntryPayloads(t, w, F{Table: "orders"}, "b", "a")
	expectEntryPayloads(t, w, F{Table: "items"}, "d", "a")
	expectEntryPayloads(t, w, F{Table: "order"})
	expectEntryPayloads(t, w, F{Class: "transient"}, "b")
	expectEntryPayloads(t, w, F{Class: "permanent"}, "d", "c", "a")
	expectEntryPayloads(t, w, F{Reason: "busy"})
	expectEntryPayloads(t, w, F{Reason: "TYPE mismatch"}, "d", "a")
	// The reason is matched as text, not as a pattern.
	expectEntryPayloads(t, w, F{Reason: "50% of_"}, "c")
	expectEntryPayloads(t, w, F{Reason: "5_%"})
	// Since compares the latest event's time, inclusive.
	expectEntryPayloads(t, w, F{Since: at(3)}, "d", "c")
	expectEntryPayloads(t, w, F{Since: at(3), States: allStates}, "f", "e", "d", "c")
	expectEntryPayloads(t, w, F{Since: at(11), States: allStates})
	// The backend is the latest poisoning's "backend" attribute, matched
	// whole: d was billing's first, shop's since.
	expectEntryPayloads(t, w, F{Backend: "billing"}, "a")
	expectEntryPayloads(t, w, F{Backend: "shop"}, "d", "b")
	expectEntryPayloads(t, w, F{Backend: "bill"})
	// Keyed: the latest poisoning's "ordering_key" attribute is there and
	// not empty (b's is empty, the others have none).
	expectEntryPayloads(t, w, F{Keyed: true}, "c")
	expectEntryPayloads(t, w, F{Keyed: true, States: K{warehouse.EventPoisoned, warehouse.EventReplayed}}, "e", "c")
	expectEntryPayloads(t, w, F{Keyed: true, States: allStates}, "f", "e", "c")
	// Filters combine.
	expectEntryPayloads(t, w, F{Keyed: true, Table: "orders", States: allStates}, "f", "e")
	expectEntryPayloads(t, w, F{Class: "permanent", Table: "items", Reason: "mismatch", Since: at(2)}, "d")
	expectEntryPayloads(t, w, F{Backend: "shop", Table: "orders"}, "b")
	// The replays count of the filtered entries is theirs.
	got := entries(t, w, F{PayloadIDs: []string{"d"}})
	if len(got) != 1 || got[0].Replays != 1 || got[0].Poisoned.Reason != "type mismatch again" {
		t.Errorf("Entries(d) = %+v, want one entry with Replays 1 and the second poisoning", got)
	}
}

func entriesHonourLimitAndOrder(t *testing.T, w warehouse.Store) {
	// Appended out of order; listed by first appearance, most recent
	// first, ties by payload id.
	appendEvents(t, w,
		Poisoned("p3", 0, at(3), "permanent", "r"),
		Poisoned("p1", 0, at(1), "permanent", "r"),
		Poisoned("p5", 0, at(5), "permanent", "r"),
		Poisoned("p2", 0, at(2), "permanent", "r"),
		Poisoned("p4b", 0, at(4), "permanent", "r"),
		Poisoned("p4a", 0, at(4), "permanent", "r"),
		// p0's latest event is its replay's poisoning, the most recent; it
		// first appeared before all the others, and that decides.
		Poisoned("p0", 0, at(0), "permanent", "r"),
		Operated("p0", warehouse.EventReplayed, 1, at(6)),
		Poisoned("p0", 1, at(7), "permanent", "r"),
	)
	expectEntryPayloads(t, w, warehouse.EventFilter{}, "p5", "p4a", "p4b", "p3", "p2", "p1", "p0")
	expectEntryPayloads(t, w, warehouse.EventFilter{Limit: 3}, "p5", "p4a", "p4b")
	expectEntryPayloads(t, w, warehouse.EventFilter{Limit: 1, Since: at(2)}, "p5")
	expectEntryPayloads(t, w, warehouse.EventFilter{Limit: 100}, "p5", "p4a", "p4b", "p3", "p2", "p1", "p0")
	expectEntryPayloads(t, w, warehouse.EventFilter{Limit: -1}, "p5", "p4a", "p4b", "p3", "p2", "p1", "p0")
	got := entries(t, w, warehouse.EventFilter{PayloadIDs: []string{"p0", "p4a"}})
	if len(got) != 2 || !got[0].FirstAt.Equal(at(4)) || !got[1].FirstAt.Equal(at(0)) {
		t.Errorf("Entries(p4a, p0): FirstAt %v, want %v and %v", entryKeys(got), at(4), at(0))
	}
	if n, err := w.CountSelected(testContext(t), warehouse.EventFilter{Limit: 2, Since: at(2)}); err != nil || n != 6 {
		t.Errorf("CountSelected(since at(2), limit 2) = %d, %v; want 6 (the limit does not count)", n, err)
	}
}

func entryKeys(es []warehouse.Entry) []warehouse.EntryKey {
	keys := make([]warehouse.EntryKey, len(es))
	for i, e := range es {
		keys[i] = e.Key()
	}
	return keys
}

// entriesWalkOnceWhileTheLogChanges walks the log a page at a time, each
// page continuing after the last key read, while payloads arrive, are
// replayed and poisoned again, and purged between pages: every payload that
// was poisoned when the walk began and still is when its page is read
// comes exactly once, and none twice.
func entriesWalkOnceWhileTheLogChanges(t *testing.T, w warehouse.Store) {
	var initial []warehouse.Event
	for i := range 25 {
		// Five payloads share each time, so ties are broken by id.
		initial = append(initial, Poisoned(fmt.Sprintf("w%02d", i), 0, at(i/5), "permanent", "r", "t"))
	}
	appendEvents(t, w, initial...)
	if n, err := w.CountSelected(testContext(t), warehouse.EventFilter{}); err != nil || n != 25 {
		t.Fatalf("CountSelected = %d, %v; want 25", n, err)
	}
	seen := map[string]int{}
	var after warehouse.EntryKey
	for page := 0; ; page++ {
		got := entries(t, w, warehouse.EventFilter{After: after, Limit: 4})
		if len(got) == 0 {
			break
		}
		if page > 20 {
			t.Fatal("the walk does not end")
		}
		for _, e := range got {
			seen[e.Latest.PayloadID]++
		}
		after = got[len(got)-1].Key()
		// Between pages: a newcomer, a payload replayed and poisoned
		// again (its latest event is now the most recent), and one purged.
		appendEvents(t, w,
			Poisoned(fmt.Sprintf("new%02d", page), 0, at(100+page), "permanent", "r", "t"),
			Operated(fmt.Sprintf("w%02d", 24-page), warehouse.EventReplayed, 1, at(100+page)),
			Poisoned(fmt.Sprintf("w%02d", 24-page), 1, at(100+page), "permanent", "r", "t"),
		)
		if page == 1 {
			appendEvents(t, w, Operated("w00", warehouse.EventPurged, 0, at(100)))
		}
	}
	for _, e := range initial {
		n := seen[e.PayloadID]
		switch {
		case e.PayloadID == "w00" && n != 0:
			t.Errorf("the walk read w00 %d times, purged before its page; want never", n)
		case e.PayloadID != "w00" && n != 1:
			t.Errorf("the walk read %s %d times, want once", e.PayloadID, n)
		}
	}
	for id, n := range seen {
		if strings.HasPrefix(id, "new") {
			t.Errorf("the walk read %s (%d times), which arrived after it began, before its start", id, n)
		}
	}
}

// entriesSearchByIDPrefix finds entries by the start of their payload id
// or of their latest poisoning's correlation id.
func entriesSearchByIDPrefix(t *testing.T, w warehouse.Store) {
	a := Poisoned("0193a1b2-aaaa-7000-8000-000000000001", 0, at(1), "permanent", "r", "t")
	b := Poisoned("0193a1b2-bbbb-7000-8000-000000000002", 0, at(2), "permanent", "r", "t")
	b.CorrelationID = "req-42"
	c := Poisoned("x_%", 0, at(3), "permanent", "r", "t")
	c.CorrelationID = "REQ-43"
	appendEvents(t, w, a, b, c)
	type F = warehouse.EventFilter
	expectEntryPayloads(t, w, F{Search: "0193a1b2-"}, b.PayloadID, a.PayloadID)
	expectEntryPayloads(t, w, F{Search: a.PayloadID}, a.PayloadID)
	expectEntryPayloads(t, w, F{Search: "req-4"}, b.PayloadID)
	expectEntryPayloads(t, w, F{Search: "REQ"}, c.PayloadID)
	// Taken as text, not as a pattern, and only as a prefix.
	expectEntryPayloads(t, w, F{Search: "x_"}, c.PayloadID)
	expectEntryPayloads(t, w, F{Search: "_"})
	expectEntryPayloads(t, w, F{Search: "aaaa"})
	if n, err := w.CountSelected(testContext(t), F{Search: "0193"}); err != nil || n != 2 {
		t.Errorf("CountSelected(search 0193) = %d, %v; want 2", n, err)
	}
}

func historyIsInEventOrder(t *testing.T, w warehouse.Store) {
	first := Poisoned("p1", 0, at(10), "permanent", "first", "t")
	replayed := Operated("p1", warehouse.EventReplayed, 1, at(9)) // a slow clock
	second := Poisoned("p1", 1, at(30), "permanent", "second", "t")
	replayedAgain := Operated("p1", warehouse.EventReplayed, 2, at(31))
	purged := Operated("p1", warehouse.EventPurged, 2, at(20))
	appendEvents(t, w, purged, second, Poisoned("other", 0, at(1), "permanent", "x"))
	appendEvents(t, w, replayedAgain, first, replayed)
	expectEvents(t, "History(p1)", history(t, w, "p1"), first, replayed, second, replayedAgain, purged)
	expectEvents(t, "History(unknown)", history(t, w, "unknown"))
}

func stateReportsLedgerAndLog(t *testing.T, f Features, w warehouse.Store) {
	s := state(t, w, "unknown")
	if s.Applied || !s.AppliedAt.IsZero() || s.Entry != nil {
		t.Errorf("State(unknown) = %+v, want not applied and no entry", s)
	}

	before := time.Now().Add(-time.Minute)
	out := apply(t, w, Payload("applied", Insert("t", Col("a", int64Type, int64(1))), Insert("t", Col("a", int64Type, int64(2)))))
	expectStatuses(t, out, warehouse.Applied)
	s = state(t, w, "applied")
	if !s.Applied || s.Entry != nil {
		t.Errorf("State(applied) = %+v, want applied without an entry", s)
	}
	if s.AppliedAt.Before(before) || s.AppliedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("State(applied).AppliedAt = %v, want about now", s.AppliedAt)
	}
	switch {
	case f.LedgerRowsAffected && s.RowsAffected != out[0].RowsAffected:
		t.Errorf("State(applied).RowsAffected = %d, want the outcome's %d", s.RowsAffected, out[0].RowsAffected)
	case !f.LedgerRowsAffected && s.RowsAffected != -1 && s.RowsAffected != out[0].RowsAffected:
		t.Errorf("State(applied).RowsAffected = %d, want -1 or the outcome's %d", s.RowsAffected, out[0].RowsAffected)
	}

	first := Poisoned("poisoned", 0, at(1), "permanent", "first", "t")
	second := Poisoned("poisoned", 1, at(3), "permanent", "second", "t")
	appendEvents(t, w, first, Operated("poisoned", warehouse.EventReplayed, 1, at(2)), second, second)
	s = state(t, w, "poisoned")
	if s.Applied || s.RowsAffected != -1 {
		t.Errorf("State(poisoned): Applied %v, RowsAffected %d; want false, -1", s.Applied, s.RowsAffected)
	}
	if s.Entry == nil {
		t.Fatal("State(poisoned) has no entry")
	}
	if s.Entry.State != warehouse.EventPoisoned || s.Entry.Replays != 1 {
		t.Errorf("State(poisoned).Entry: State %q, Replays %d; want poisoned, 1", s.Entry.State, s.Entry.Replays)
	}
	if d := eventDiff(s.Entry.Latest, second); d != "" {
		t.Errorf("State(poisoned).Entry.Latest: %s", d)
	}
	if d := eventDiff(s.Entry.Poisoned, second); d != "" {
		t.Errorf("State(poisoned).Entry.Poisoned: %s", d)
	}

	// A payload that was poisoned, replayed and then applied has both.
	appendEvents(t, w, Poisoned("applied", 0, at(0), "transient", "busy", "t"))
	s = state(t, w, "applied")
	if !s.Applied || s.Entry == nil || s.Entry.State != warehouse.EventPoisoned {
		t.Errorf("State(applied) after its poisoning = %+v, want applied with a poisoned entry", s)
	}
}

// acksKeepEachCausesLatest: a cause's state is its latest ack, by time,
// whatever order they were written in; an adapter without acks yet has none.
func acksKeepEachCausesLatest(t *testing.T, w warehouse.Store) {
	ctx := testContext(t)
	got, err := w.CauseAcks(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("CauseAcks of a new warehouse = %v, %v; want none", got, err)
	}
	for _, a := range []warehouse.CauseAck{
		{Cause: "c1", Acknowledged: true, At: at(1), Actor: "admin-api"},
		{Cause: "c2", Acknowledged: true, At: at(5), Actor: "admin-api"},
		{Cause: "c1", Acknowledged: false, At: at(3), Actor: "cli"},
		{Cause: "c2", Acknowledged: false, At: at(2), Actor: "cli"}, // written late, a slow clock
	} {
		if err := w.AcknowledgeCause(ctx, a); err != nil {
			t.Fatalf("AcknowledgeCause(%+v): %v", a, err)
		}
	}
	if err := w.AcknowledgeCause(ctx, warehouse.CauseAck{Acknowledged: true}); err == nil {
		t.Error("AcknowledgeCause without a cause: no error")
	}
	got, err = w.CauseAcks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]warehouse.CauseAck{
		"c1": {Cause: "c1", Acknowledged: false, At: at(3), Actor: "cli"},
		"c2": {Cause: "c2", Acknowledged: true, At: at(5), Actor: "admin-api"},
	}
	if len(got) != len(want) {
		t.Fatalf("CauseAcks = %+v, want %+v", got, want)
	}
	for k, a := range want {
		g := got[k]
		if g.Cause != a.Cause || g.Acknowledged != a.Acknowledged || !g.At.Equal(a.At) || g.Actor != a.Actor {
			t.Errorf("CauseAcks[%s] = %+v, want %+v", k, g, a)
		}
	}
}

// checkPlansWithoutWriting: an adapter that checks payloads
// (warehouse.Checker) answers as Apply would, against the schema as it is,
// and changes nothing.
func checkPlansWithoutWriting(t *testing.T, w warehouse.Store) {
	c, ok := w.(warehouse.Checker)
	if !ok {
		t.Skip("the adapter does not check payloads")
	}
	ctx := testContext(t)
	apply(t, w, Payload("typed", Insert("typed", Col("n", int64Type, int64(1)))))
	problem, err := c.Check(ctx, []messages.Activity{Insert("typed", Col("n", stringType, "two"))})
	if err != nil || problem == nil || !strings.Contains(problem.Error(), `"n"`) {
		t.Errorf("Check(a STRING for the INT64 column n) = %v, %v; want a problem naming n", problem, err)
	}
	problem, err = c.Check(ctx, []messages.Activity{Delete("missing", Col("id", int64Type, int64(1)))})
	if err != nil || !errors.Is(problem, warehouse.ErrTableNotFound) {
		t.Errorf("Check(a delete from a missing table) = %v, %v; want ErrTableNotFound", problem, err)
	}
	problem, err = c.Check(ctx, []messages.Activity{
		Insert("typed", Col("n", int64Type, int64(2)), Col("added", stringType, "x")),
		Insert("created", Col("id", int64Type, int64(1))),
	})
	if err != nil || problem != nil {
		t.Errorf("Check(inserts that add a column and a table) = %v, %v; want neither", problem, err)
	}
	expectTables(t, w, "typed")
	expectSchema(t, w, "typed", warehouse.ColumnSchema{Name: "n", Type: int64Type})
}

// failureGroupsAddUp: the groups of FailureGroups, added up by class,
// tables, reason and time, count each entry f selects once, by its latest
// poisoning, and name one of its payloads.
func failureGroupsAddUp(t *testing.T, w warehouse.Store) {
	a := Poisoned("a", 0, at(1), "permanent", "type mismatch", "t1", "t2")
	b := Poisoned("b", 0, at(1), "permanent", "type mismatch", "t1", "t2")
	c := Poisoned("c", 0, at(2), "transient", "busy", "t1")
	d0 := Poisoned("d", 0, at(1), "permanent", "type mismatch", "t1", "t2")
	d1 := Poisoned("d", 1, at(3), "transient", "busy", "t1")
	d1.LastFailureAt = at(2).Add(-time.Minute) // as c's
	appendEvents(t, w, a, b, c, d0, Operated("d", warehouse.EventReplayed, 1, at(2)), d1,
		Poisoned("e", 0, at(4), "permanent", "gone", "t3"), Operated("e", warehouse.EventPurged, 0, at(5)))
	groups, err := w.FailureGroups(testContext(t), warehouse.EventFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ class, tables, reason, at string }
	got := map[key]int{}
	examples := map[key][]string{}
	for _, g := range groups {
		k := key{g.ErrorClass, strings.Join(g.Tables, ","), g.Reason, g.At.UTC().Format(time.RFC3339Nano)}
		got[k] += g.Count
		examples[k] = append(examples[k], g.Example)
	}
	want := map[key]int{
		{"permanent", "t1,t2", "type mismatch", a.LastFailureAt.Format(time.RFC3339Nano)}: 2,
		{"transient", "t1", "busy", c.LastFailureAt.Format(time.RFC3339Nano)}:             2,
	}
	if !maps.Equal(got, want) {
		t.Errorf("FailureGroups added up = %v, want %v", got, want)
	}
	for k, ids := range examples {
		for _, id := range ids {
			if (k.reason == "busy" && id != "c" && id != "d") || (k.reason != "busy" && id != "a" && id != "b") {
				t.Errorf("FailureGroups: example %q for %v", id, k)
			}
		}
	}
	groups, err = w.FailureGroups(testContext(t), warehouse.EventFilter{Class: "transient", States: allStates})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range groups {
		n += g.Count
	}
	if n != 2 {
		t.Errorf("FailureGroups(transient, any state) counts %d entries, want 2", n)
	}
}
