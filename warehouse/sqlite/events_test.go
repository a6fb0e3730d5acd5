package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/sqlite"
)

func TestOpen_adds_rows_affected_to_an_old_ledger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db := rawDB(t, path)
	for _, q := range []string{
		`CREATE TABLE "_gatekeeper_ledger" (payload_id TEXT NOT NULL PRIMARY KEY, applied_at TEXT NOT NULL) WITHOUT ROWID`,
		`INSERT INTO "_gatekeeper_ledger" VALUES ('old', '2025-01-02T03:04:05.000000006Z')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	w := openWarehouse(t, sqlite.Config{Path: path})
	ctx := context.Background()
	state, err := w.State(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	if !state.Applied || !state.AppliedAt.Equal(want) || state.RowsAffected != -1 || state.Entry != nil {
		t.Errorf("State(old) = %+v, want applied at %v, RowsAffected -1, no entry", state, want)
	}
	// The old row is still a duplicate, and new rows record what they did.
	out := mustApply(t, w, warehouse.Payload{ID: "old", Activities: []messages.Activity{insertA(1)}},
		warehouse.Payload{ID: "new", Activities: []messages.Activity{insertA(1), insertA(2)}})
	if out[0].Status != warehouse.Duplicate || out[1].Status != warehouse.Applied {
		t.Fatalf("outcomes %+v, want Duplicate, Applied", out)
	}
	state, err = w.State(ctx, "new")
	if err != nil {
		t.Fatal(err)
	}
	if !state.Applied || state.RowsAffected != 2 {
		t.Errorf("State(new) = %+v, want applied with RowsAffected 2", state)
	}
}

func insertA(v int64) messages.Activity {
	return messages.Activity{Op: messages.OpInsert, Table: "t", Columns: []messages.Column{col("a", messages.TypeInt64, v)}}
}

func TestAppendEvents_refuses_an_invalid_event_and_writes_none_of_the_call(t *testing.T) {
	w := openWarehouse(t, sqlite.Config{})
	ctx := context.Background()
	good := warehouse.Event{ID: "p/poisoned/0", PayloadID: "p", Kind: warehouse.EventPoisoned}
	err := w.AppendEvents(ctx, []warehouse.Event{good, {ID: "x", PayloadID: "x", Kind: "exploded"}})
	if err == nil || messages.ClassOf(err) != messages.ClassPermanent {
		t.Fatalf("AppendEvents with an unknown kind = %v (class %q), want a permanent error", err, messages.ClassOf(err))
	}
	if h, err := w.History(ctx, "p"); err != nil || len(h) != 0 {
		t.Fatalf("History(p) = %v, %v; want nothing written", h, err)
	}
}

// BenchmarkEntries reads the entries of a log of benchEntries poisoned
// payloads, a tenth of them replayed and poisoned again: the first page an
// operator lists, and all of them.
func BenchmarkEntries(b *testing.B) {
	const benchEntries = 10_000
	w := openWarehouse(b, sqlite.Config{Path: filepath.Join(b.TempDir(), "events.db"), Sync: sqlite.SyncNormal})
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	payload := []byte(`{"activities":[{"operation":"insert","table":"t","col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}]}` + strings.Repeat(" ", 400))
	var batch []warehouse.Event
	flush := func() {
		if err := w.AppendEvents(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range benchEntries {
		id := fmt.Sprintf("payload-%05d", i)
		at := start.Add(time.Duration(i) * time.Second)
		poisoned := func(g int, at time.Time) warehouse.Event {
			return warehouse.Event{
				ID: warehouse.EventID(id, warehouse.EventPoisoned, g), PayloadID: id, Kind: warehouse.EventPoisoned,
				Generation: g, At: at, ErrorClass: "permanent", Reason: fmt.Sprintf("column %d: type mismatch", i%7),
				Tables: []string{"t", fmt.Sprintf("t%d", i%13)}, Attempts: 5, FirstFailureAt: at.Add(-time.Minute),
				LastFailureAt: at, ReceivedAt: at.Add(-2 * time.Minute), CorrelationID: "c-" + id,
				Attributes: map[string]string{"replays": fmt.Sprint(g), "CloudPubSubDeadLetterSourceDeliveryCount": "5"},
				Payload:    payload,
			}
		}
		batch = append(batch, poisoned(0, at))
		if i%10 == 0 {
			batch = append(batch,
				warehouse.Event{ID: warehouse.EventID(id, warehouse.EventReplayed, 1), PayloadID: id,
					Kind: warehouse.EventReplayed, Generation: 1, At: at.Add(time.Hour), Actor: "cli"},
				poisoned(1, at.Add(2*time.Hour)))
		}
		if len(batch) >= 500 {
			flush()
		}
	}
	flush()

	for _, limit := range []int{20, 0} {
		name := fmt.Sprintf("limit=%d", limit)
		if limit == 0 {
			name = "limit=all"
		}
		b.Run(name, func(b *testing.B) {
			want := min(limit, benchEntries)
			if limit == 0 {
				want = benchEntries
			}
			for b.Loop() {
				entries, err := w.Entries(ctx, warehouse.EventFilter{Limit: limit})
				if err != nil {
					b.Fatal(err)
				}
				if len(entries) != want {
					b.Fatalf("%d entries, want %d", len(entries), want)
				}
			}
		})
	}
	b.Run("limit=20,reason", func(b *testing.B) {
		for b.Loop() {
			entries, err := w.Entries(ctx, warehouse.EventFilter{Limit: 20, Reason: "COLUMN 3", Table: "t5"})
			if err != nil {
				b.Fatal(err)
			}
			if len(entries) != 20 {
				b.Fatalf("%d entries, want 20", len(entries))
			}
		}
	})
}

func TestOpen_adds_payload_hash_to_an_old_ledger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db := rawDB(t, path)
	for _, q := range []string{
		`CREATE TABLE "_gatekeeper_ledger" (payload_id TEXT NOT NULL PRIMARY KEY, applied_at TEXT NOT NULL, rows_affected INTEGER) WITHOUT ROWID`,
		`INSERT INTO "_gatekeeper_ledger" VALUES ('old', '2025-01-02T03:04:05.000000006Z', 1)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	w := openWarehouse(t, sqlite.Config{Path: path})
	// The old row knows no hash, so any content under its id is a
	// duplicate; a new row records its hash, and other content under its
	// id is rejected.
	out := mustApply(t, w, warehouse.Payload{ID: "old", Activities: []messages.Activity{insertA(1)}, Hash: "aa"},
		warehouse.Payload{ID: "new", Activities: []messages.Activity{insertA(1)}, Hash: "bb"},
		warehouse.Payload{ID: "new", Activities: []messages.Activity{insertA(2)}, Hash: "cc"})
	if out[0].Status != warehouse.Duplicate || out[1].Status != warehouse.Applied || out[2].Status != warehouse.Rejected {
		t.Fatalf("outcomes %+v, want Duplicate, Applied, Rejected", out)
	}
	if !errors.Is(out[2].Err, warehouse.ErrPayloadMismatch) {
		t.Fatalf("rejection %v, want ErrPayloadMismatch", out[2].Err)
	}
	var hash string
	if err := rawDB(t, path).QueryRow(`SELECT payload_hash FROM "_gatekeeper_ledger" WHERE payload_id = 'new'`).Scan(&hash); err != nil || hash != "bb" {
		t.Fatalf("ledger hash of new = %q, %v; want bb", hash, err)
	}
}
