package bigquery

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/bigquery/bqsim"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// The simulator sees what the script does: a delete then an insert of the
// same row in one payload, a delete counted for its payload, and the
// ledger refusing a payload applied before.
func TestSimulatedBackendRunsThePlan(t *testing.T) {
	sim, err := bqsim.New(bqsim.Config{Latency: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w, err := OpenSimulated(ctx, Config{}, nil, sim)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	seed := warehousetest.Payload("p1", warehousetest.Insert("t", icol("a", int64(1)), scol("b", "x")))
	if o, err := w.Apply(ctx, []warehouse.Payload{seed}); err != nil || statuses(o) != "Applied" {
		t.Fatalf("seed: %v %v", statuses(o), err)
	}
	// Created clustered by its first column, the key.
	if m, _ := sim.Table("t"); len(m.Clustering) != 1 || m.Clustering[0] != "a" {
		t.Errorf("table clustered by %v, want [a]", m.Clustering)
	}
	replace := warehousetest.Payload("p2",
		warehousetest.Delete("t", icol("a", int64(1))),
		warehousetest.Insert("t", icol("a", int64(1)), scol("b", "y")))
	o, err := w.Apply(ctx, []warehouse.Payload{replace, seed})
	if err != nil || statuses(o) != "Applied Duplicate" {
		t.Fatalf("replace: %v %v", statuses(o), err)
	}
	if o[0].RowsAffected != 2 {
		t.Errorf("rows affected %d, want 2 (one deleted, one inserted)", o[0].RowsAffected)
	}
	rows := sim.Rows("t")
	if len(rows) != 1 || rows[0]["b"] != "y" {
		t.Errorf("rows %v, want the one row b=y", rows)
	}
	// The simulator's bytes billed reach the adapter's counts.
	if st := w.Stats(); st.BilledBytes <= 0 || st.BilledBytes != sim.Stats().BilledBytes {
		t.Errorf("adapter counted %d bytes billed, the simulator %d", st.BilledBytes, sim.Stats().BilledBytes)
	}
	if got := len(sim.Rows(warehouse.LedgerTable)); got != 2 {
		t.Errorf("ledger rows %d, want 2", got)
	}
}

// One process runs one fenced job at a time: groups of insert-only
// payloads applied at once by one Warehouse (GROUP_MAX_IN_FLIGHT) each
// update the ledger, and BigQuery would abort all but one of any that
// overlap. Serialised, none is aborted and each is applied once.
func TestFencedJobsOfOneProcessDoNotAbortEachOther(t *testing.T) {
	sim, err := bqsim.New(bqsim.Config{Latency: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w, err := OpenSimulated(ctx, Config{}, nil, sim)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const groups = 4
	errs := make(chan error, groups)
	for g := range groups {
		go func() {
			p := warehousetest.Payload(fmt.Sprintf("p%d", g), warehousetest.Insert(fmt.Sprintf("t%d", g), icol("a", int64(g))))
			o, err := w.Apply(ctx, []warehouse.Payload{p})
			if err == nil && statuses(o) != "Applied" {
				err = fmt.Errorf("group %d: %s", g, statuses(o))
			}
			errs <- err
		}()
	}
	for range groups {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if st := sim.Stats(); st.Aborted != 0 {
		t.Errorf("%d jobs aborted, want 0: one process's fenced jobs ran side by side", st.Aborted)
	}
	if got := len(sim.Rows(warehouse.LedgerTable)); got != groups {
		t.Errorf("ledger rows %d, want %d", got, groups)
	}
}
