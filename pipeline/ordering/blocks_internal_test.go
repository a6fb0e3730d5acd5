package ordering

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/warehouse/sqlite"
)

// The heads rule: after this process nacked a held payload of a key, the
// key's other payloads Pub/Sub hands over before the nacked one comes back
// are held too, even once the key is unblocked; a blocking payload itself
// is always let through.
func TestKeyBlocksHoldBehindTheNackedHead(t *testing.T) {
	now := time.Unix(0, 0)
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "warehouse.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	b, err := New(Config{Store: store}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
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
	// key after HeadTTL.
	b.Poisoned("k", "p4")
	if b.mayApply("k", "p5") {
		t.Fatal("p5 admitted while p4 blocks the key")
	}
	b.applied("k", "p4")
	if b.mayApply("k", "p6") {
		t.Fatal("p6 admitted while p5 has not come back")
	}
	now = now.Add(b.cfg.HeadTTL)
	if !b.mayApply("k", "p6") {
		t.Fatal("p6 still held after HeadTTL")
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := Config{Refresh: -1}.Validate()
	want := "ordering config: Store is required\nordering config: Refresh, HoldDelay and HeadTTL must not be negative"
	if err == nil || err.Error() != want {
		t.Errorf("Validate: %v, want:\n%s", err, want)
	}
}
