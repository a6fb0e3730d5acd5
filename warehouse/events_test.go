package warehouse_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/warehouse"
)

func event(kind warehouse.EventKind, generation int, at time.Time) warehouse.Event {
	return warehouse.Event{
		ID: warehouse.EventID("p", kind, generation), PayloadID: "p",
		Kind: kind, Generation: generation, At: at,
	}
}

func TestEventBefore(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	early, late := t0, t0.Add(time.Hour)
	tests := []struct {
		name string
		a, b warehouse.Event
		want bool
	}{
		{"a lower generation is before, whatever the clocks say",
			event(warehouse.EventPurged, 0, late), event(warehouse.EventReplayed, 1, early), true},
		{"a higher generation is after",
			event(warehouse.EventReplayed, 1, early), event(warehouse.EventPurged, 0, late), false},
		{"replayed is before poisoned in one generation, whatever the clocks say",
			event(warehouse.EventReplayed, 1, late), event(warehouse.EventPoisoned, 1, early), true},
		{"poisoned is before purged in one generation",
			event(warehouse.EventPoisoned, 1, late), event(warehouse.EventPurged, 1, early), true},
		{"purged is after poisoned",
			event(warehouse.EventPurged, 1, early), event(warehouse.EventPoisoned, 1, late), false},
		{"the same kind and generation go by time",
			event(warehouse.EventPoisoned, 0, early), event(warehouse.EventPoisoned, 0, late), true},
		{"and not the other way round",
			event(warehouse.EventPoisoned, 0, late), event(warehouse.EventPoisoned, 0, early), false},
		{"an event is not before itself",
			event(warehouse.EventPoisoned, 0, early), event(warehouse.EventPoisoned, 0, early), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Before(tt.b); got != tt.want {
				t.Errorf("%s/%d@%v Before %s/%d@%v = %v, want %v",
					tt.a.Kind, tt.a.Generation, tt.a.At, tt.b.Kind, tt.b.Generation, tt.b.At, got, tt.want)
			}
		})
	}
}

func TestEventKindsAreInRankOrder(t *testing.T) {
	for i, k := range warehouse.EventKinds {
		if k.Rank() != i {
			t.Errorf("EventKinds[%d] = %q ranks %d", i, k, k.Rank())
		}
	}
	if r := warehouse.EventKind("exploded").Rank(); r != -1 {
		t.Errorf("an unknown kind ranks %d, want -1", r)
	}
}

func TestEventID(t *testing.T) {
	if got, want := warehouse.EventID("p-1", warehouse.EventPoisoned, 0), "p-1/poisoned/0"; got != want {
		t.Errorf("EventID = %q, want %q", got, want)
	}
	// Every copy of one poison message gets one ID; the next poisoning,
	// after a replay, another; so does every other kind.
	seen := map[string]bool{}
	for _, k := range warehouse.EventKinds {
		for g := range 3 {
			id := warehouse.EventID("p-1", k, g)
			if id != warehouse.EventID("p-1", k, g) {
				t.Fatalf("EventID(%q, %d) is not stable", k, g)
			}
			if seen[id] {
				t.Errorf("EventID(p-1, %q, %d) = %q repeats", k, g, id)
			}
			seen[id] = true
			if !strings.HasPrefix(id, "p-1/") {
				t.Errorf("EventID(p-1, %q, %d) = %q does not start with the payload id", k, g, id)
			}
		}
	}
	if warehouse.EventID("p-1", warehouse.EventPoisoned, 0) == warehouse.EventID("p-2", warehouse.EventPoisoned, 0) {
		t.Error("two payloads share an event ID")
	}
}

func TestEventValidate(t *testing.T) {
	good := event(warehouse.EventPoisoned, 0, time.Now())
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v", good, err)
	}
	bad := warehouse.Event{Kind: "exploded", Generation: -1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate accepted an event with nothing set")
	}
	for _, want := range []string{"no ID", "no PayloadID", "unknown kind", "negative generation"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, want it to mention %q", err, want)
		}
	}
}

func TestEntryOf(t *testing.T) {
	if e := warehouse.EntryOf(nil); e != nil {
		t.Fatalf("EntryOf(nil) = %+v, want nil", e)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	first := event(warehouse.EventPoisoned, 0, t0)
	first.Reason = "first"
	replay := event(warehouse.EventReplayed, 1, t0.Add(time.Minute))
	second := event(warehouse.EventPoisoned, 1, t0.Add(-time.Hour)) // a slow clock
	second.Reason = "second"
	purge := event(warehouse.EventPurged, 1, t0.Add(-2*time.Hour))

	// Any order in, the same entry out.
	e := warehouse.EntryOf([]warehouse.Event{purge, first, second, replay})
	if e.State != warehouse.EventPurged || e.Latest.ID != purge.ID {
		t.Errorf("State %q, Latest %q; want purged, %q", e.State, e.Latest.ID, purge.ID)
	}
	if e.Poisoned.Reason != "second" {
		t.Errorf("Poisoned.Reason = %q, want the latest poisoning's, %q", e.Poisoned.Reason, "second")
	}
	if e.Replays != 1 {
		t.Errorf("Replays = %d, want 1", e.Replays)
	}

	e = warehouse.EntryOf([]warehouse.Event{replay, first})
	if e.State != warehouse.EventReplayed || e.Poisoned.Reason != "first" || e.Replays != 1 {
		t.Errorf("after a replay: State %q, Poisoned.Reason %q, Replays %d; want replayed, first, 1", e.State, e.Poisoned.Reason, e.Replays)
	}
}
