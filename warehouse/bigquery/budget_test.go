package bigquery

import (
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/warehouse"
)

// The budget holds a job back until every table it writes, the ledger
// included, has room in the window.
func TestDMLBudgetWaitsForTheWindow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newDMLBudget(5)
	b.now = func() time.Time { return now }
	job := map[string]int{"t": 2, warehouse.LedgerTable: 1}
	if w := b.tryReserve(job); w != 0 {
		t.Fatalf("first job waits %s", w)
	}
	now = now.Add(time.Second)
	if w := b.tryReserve(job); w != 0 {
		t.Fatalf("second job waits %s", w)
	}
	// 4 of 5 used on t: a third job of 2 waits until the first leaves the
	// window (and its margin).
	w := b.tryReserve(job)
	if want := dmlWindow + dmlMargin - time.Second; w < want || w > want+10*time.Millisecond {
		t.Fatalf("third job waits %s, want about %s", w, want)
	}
	// Another table has its budget, but the ledger is shared.
	if w := b.tryReserve(map[string]int{"u": 2, warehouse.LedgerTable: 1}); w != 0 {
		t.Fatalf("job on another table waits %s", w)
	}
	now = now.Add(dmlWindow + dmlMargin)
	if w := b.tryReserve(job); w != 0 {
		t.Fatalf("after the window the job waits %s", w)
	}
}
