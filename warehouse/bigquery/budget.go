package bigquery

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// dmlWindow is the window of BigQuery's DML rate: 25 statements per table
// every 10 seconds, INSERT and mutating statements counted together
// (docs.cloud.google.com/bigquery/quotas#data-manipulation-language-statements).
const dmlWindow = 10 * time.Second

// dmlMargin lengthens the window as the budget counts it: BigQuery counts
// a statement when it accepts the job, a little after the budget reserved
// it, so the budget's own record of it must outlast BigQuery's.
const dmlMargin = time.Second

// dmlBudget paces this process's jobs so that no table, the ledger
// included, gets more than Config.DMLBudget statements in any window. A
// job over the budget waits for it rather than failing with "Exceeded rate
// limits" after its submission; meanwhile the group committer gathers the
// payloads that arrive into the next, larger group.
type dmlBudget struct {
	limit int
	now   func() time.Time

	mu   sync.Mutex
	used map[string][]time.Time
}

func newDMLBudget(limit int) *dmlBudget {
	return &dmlBudget{limit: limit, now: time.Now, used: map[string][]time.Time{}}
}

// reserve waits until every table of counts has room for its statements,
// then takes it. It reports how long it waited. A table needing more than
// the whole budget waits for an empty window.
func (b *dmlBudget) reserve(ctx context.Context, counts map[string]int) (time.Duration, error) {
	start := b.now()
	for {
		wait := b.tryReserve(counts)
		if wait <= 0 {
			return b.now().Sub(start), nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return b.now().Sub(start), ctx.Err()
		case <-t.C:
		}
	}
}

// tryReserve takes the room and returns 0, or returns how long until
// there may be room.
func (b *dmlBudget) tryReserve(counts map[string]int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	var wait time.Duration
	for table, n := range counts {
		used := b.used[table]
		cut := 0
		for cut < len(used) && !used[cut].After(now.Add(-dmlWindow-dmlMargin)) {
			cut++
		}
		used = used[cut:]
		b.used[table] = used
		over := len(used) + min(n, b.limit) - b.limit
		if over > 0 {
			// The over-th oldest statement must leave the window first.
			wait = max(wait, used[over-1].Add(dmlWindow+dmlMargin).Sub(now)+time.Millisecond)
		}
	}
	if wait > 0 {
		return wait
	}
	for table, n := range counts {
		used := slices.Grow(b.used[table], n)
		for range n {
			used = append(used, now)
		}
		b.used[table] = used
	}
	return 0
}

// Stats counts what the adapter's jobs met.
type Stats struct {
	// ThrottledJobs were held back by the DML budget; ThrottledWait is
	// how long, in all.
	ThrottledJobs uint64
	ThrottledWait time.Duration
	// BilledBytes is what the jobs billed, as BigQuery reports it.
	BilledBytes int64
}

type stats struct {
	throttledJobs atomic.Uint64
	throttledWait atomic.Int64
	billed        atomic.Int64
}

// Stats returns the counts so far.
func (w *Warehouse) Stats() Stats {
	return Stats{
		ThrottledJobs: w.stats.throttledJobs.Load(),
		ThrottledWait: time.Duration(w.stats.throttledWait.Load()),
		BilledBytes:   w.stats.billed.Load(),
	}
}
