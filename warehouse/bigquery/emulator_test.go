package bigquery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// openEmulator opens a warehouse on a fresh dataset of the emulator at
// BIGQUERY_EMULATOR_HOST (project BIGQUERY_EMULATOR_PROJECT, default
// "test"), or skips t.
func openEmulator(t *testing.T, cfg Config) *Warehouse {
	t.Helper()
	host := os.Getenv("BIGQUERY_EMULATOR_HOST")
	if host == "" {
		t.Skip("BIGQUERY_EMULATOR_HOST is not set: start goccy/bigquery-emulator (--project=test) and point it there to run the BigQuery tests against it")
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	cfg.ProjectID = "test"
	if p := os.Getenv("BIGQUERY_EMULATOR_PROJECT"); p != "" {
		cfg.ProjectID = p
	}
	cfg.DatasetID = "gk_internal_" + hex.EncodeToString(suffix)
	cfg.EmulatorHost = host
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		cb := w.backend.(*clientBackend)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cb.dataset.DeleteWithContents(ctx); err != nil {
			t.Logf("drop dataset: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

// The script refuses a payload that reached the ledger after Apply read
// it, as when another process applied it meanwhile. Running a job for an
// applied payload directly, past the ledger read and the per-id lock,
// stands in for that race.
func TestEmulatorScriptRefusesAPayloadAlreadyInTheLedger(t *testing.T) {
	w := openEmulator(t, Config{})
	ctx := context.Background()
	p := warehousetest.Payload("racer", warehousetest.Insert("t", icol("a", int64(1))))
	if got := statuses(mustApply(t, w, p)); got != "Applied" {
		t.Fatalf("first apply: %s", got)
	}

	// A group of the applied payload and a new one gets a job id of its
	// own; BigQuery would otherwise find the first job by its id.
	fresh := warehousetest.Payload("fresh", warehousetest.Insert("t", icol("a", int64(2))))
	run := &applyRun{w: w, view: map[string]*tableInfo{}, fresh: map[string]bool{}}
	items := []*item{{index: 0, payload: p}, {index: 1, payload: fresh}}
	_, accepted, _, err := run.check(ctx, items)
	if err != nil || len(accepted) != 2 {
		t.Fatalf("check: %v, %d accepted", err, len(accepted))
	}
	outcomes := make([]warehouse.Outcome, 2)
	err = run.runChunk(ctx, accepted, outcomes)
	if messages.ClassOf(err) != messages.ClassTransient || !strings.Contains(err.Error(), ledgerConflictMarker) {
		t.Fatalf("job for an applied payload = %v, want a transient ledger conflict", err)
	}
	rows, err := w.Rows(ctx, "t", 0)
	if err != nil || len(rows) != 1 {
		t.Fatalf("rows %v (%v), want the one row of the first apply", rows, err)
	}
	if got := statuses(mustApply(t, w, p, fresh)); got != "Duplicate Applied" {
		t.Fatalf("apply again: %s", got)
	}
}

// Measures 1,000 payloads of the example shape (delete by three columns,
// insert three) against the emulator, in the GroupCommitter's default
// groups of 200.
func TestEmulatorThousandPayloads(t *testing.T) {
	if testing.Short() {
		t.Skip("slow against the emulator")
	}
	w := openEmulator(t, Config{})
	const n, groupSize = 1000, 200
	setup := warehousetest.Payload("setup", warehousetest.Insert("table1", icol("a", int64(-1)), scol("b", "x"), scol("c", "x"), scol("e", "x")))
	if got := statuses(mustApply(t, w, setup)); got != "Applied" {
		t.Fatalf("setup: %s", got)
	}
	var group []warehouse.Payload
	for i := range n {
		group = append(group, warehousetest.Payload(fmt.Sprintf("payload-%04d", i),
			warehousetest.Delete("table1", icol("a", int64(i-1)), scol("c", "2018-03-27 11:58:28.988414"), scol("e", nil)),
			warehousetest.Insert("table1", icol("a", int64(i)), scol("b", "Backup and Restore"), scol("c", "2018-03-27 11:58:28.988414")),
		))
	}
	began := time.Now()
	var rows int64
	for start := 0; start < n; start += groupSize {
		outcomes := mustApply(t, w, group[start:start+groupSize]...)
		for i, o := range outcomes {
			if o.Status != warehouse.Applied {
				t.Fatalf("payload %d: %s %v", start+i, statuses(outcomes[i:i+1]), o.Err)
			}
			rows += o.RowsAffected
		}
	}
	took := time.Since(began)
	// Every payload but the first deletes the row the one before inserted.
	if want := int64(n + n - 1); rows != want {
		t.Errorf("rows affected %d, want %d", rows, want)
	}
	left, err := w.Rows(context.Background(), "table1", 0)
	if err != nil || len(left) != 2 {
		t.Fatalf("%d rows left (%v), want the setup row and the last insert", len(left), err)
	}
	t.Logf("emulator: %d payloads in %d groups of %d took %v (%v per group)", n, n/groupSize, groupSize, took, took/(n/groupSize))
}
