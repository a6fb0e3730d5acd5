package warehouse_test

import (
	"context"
	"slices"
	"testing"

	"github.com/gatekeeper/gatekeeper/warehouse"
)

func keyed(p warehouse.Payload, key string) warehouse.Payload {
	p.OrderingKey = key
	return p
}

// Two payloads of one key on different tables: without the key they would
// run side by side, and the second could commit first.
func TestGroupCommitter_never_lets_a_key_overtake_itself_across_tables(t *testing.T) {
	w := newRecordingWarehouse(t)
	c := newCommitter(t, w, warehouse.GroupConfig{MaxWait: -1})
	ctx := context.Background()

	first := submitAsync(ctx, c, keyed(payloadOn(0, "a"), "row-1"))
	w.waitStarted(t)
	second := submitAsync(ctx, c, keyed(payloadOn(1, "b"), "row-1"))
	otherKey := submitAsync(ctx, c, keyed(payloadOn(2, "c"), "row-2"))
	unkeyed := submitAsync(ctx, c, payloadOn(3, "d"))

	// The other key and the unkeyed payload start at once; the second
	// payload of row-1 waits for the first although table b is free.
	started := slices.Concat(ids(w.waitStarted(t)), ids(w.waitStarted(t)))
	slices.Sort(started)
	if !slices.Equal(started, []string{"p2", "p3"}) {
		t.Fatalf("while row-1's first payload is in flight, started %v, want p2 and p3", started)
	}
	waitPending(t, c, 1)
	w.assertNotStarted(t, 0)

	for range 4 {
		w.release <- struct{}{}
	}
	receive(t, first)
	if g := w.waitStarted(t); !slices.Equal(ids(g), []string{"p1"}) {
		t.Fatalf("after row-1's first payload, started %v, want [p1]", ids(g))
	}
	receive(t, second)
	receive(t, otherKey)
	receive(t, unkeyed)
}

// A later payload of a key waits behind an earlier one that waits for a
// table, and the two then share a group in arrival order.
func TestGroupCommitter_batches_a_key_only_in_its_order(t *testing.T) {
	w := newRecordingWarehouse(t)
	c := newCommitter(t, w, warehouse.GroupConfig{MaxWait: -1})
	ctx := context.Background()

	holder := submitAsync(ctx, c, payloadOn(0, "a"))
	w.waitStarted(t)
	waitsForA := submitAsync(ctx, c, keyed(payloadOn(1, "a"), "row-1"))
	waitPending(t, c, 1)
	sameKeyFree := submitAsync(ctx, c, keyed(payloadOn(2, "b"), "row-1"))
	waitPending(t, c, 2)
	w.assertNotStarted(t, 0)

	for range 2 {
		w.release <- struct{}{}
	}
	receive(t, holder)
	if g := w.waitStarted(t); !slices.Equal(ids(g), []string{"p1", "p2"}) {
		t.Fatalf("after a was released, started %v, want [p1 p2] in that order", ids(g))
	}
	receive(t, waitsForA)
	receive(t, sameKeyFree)
}
