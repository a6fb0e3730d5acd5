package ordering

import (
	"log/slog"
	"testing"
	"time"
)

// The heads rule: after this process nacked a held payload of a key, the
// key's other payloads Pub/Sub hands over before the nacked one comes back
// are held too, even once the key is unblocked; a blocking payload itself
// is always let through.
func TestKeyBlocksHoldBehindTheNackedHead(t *testing.T) {
	now := time.Unix(0, 0)
	b := New(nil, slog.New(slog.DiscardHandler))
	b.now = func() time.Time { return now }
	if b.mayApply("k", "p2") {
		t.Fatal("admitted before the index was read once")
	}
	b.ready = true
	b.Poisoned("k", "p1")
	for _, id := range []string{"p2", "p3"} {
		if b.mayApply("k", id) {
			t.Fatalf("%s admitted while p1 blocks the key", id)
		}
	}
	if !b.mayApply("k", "p1") {
		t.Fatal("the blocking payload, replayed, was held")
	}
	if !b.mayApply("other", "q1") {
		t.Fatal("another key was held")
	}
	b.applied("k", "p1") // p1 applied: the key is unblocked
	if b.mayApply("k", "p3") {
		t.Fatal("p3 admitted before p2, the first payload nacked while blocked, came back")
	}
	if !b.mayApply("k", "p2") {
		t.Fatal("p2 held after the key was unblocked")
	}
	b.applied("k", "p2")
	if !b.mayApply("k", "p3") {
		t.Fatal("p3 held after p2 applied")
	}
	// A head that never comes back (delivered elsewhere) stops holding the
	// key after headTTL.
	b.Poisoned("k", "p4")
	if b.mayApply("k", "p5") {
		t.Fatal("p5 admitted while p4 blocks the key")
	}
	b.applied("k", "p4")
	if b.mayApply("k", "p6") {
		t.Fatal("p6 admitted while p5 has not come back")
	}
	now = now.Add(headTTL)
	if !b.mayApply("k", "p6") {
		t.Fatal("p6 still held after headTTL")
	}
}
