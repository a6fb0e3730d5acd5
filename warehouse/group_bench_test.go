package warehouse_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// instantWarehouse applies every group at once and writes nothing, so a
// benchmark through it measures the committer's own cost: grouping,
// scheduling and hand-over.
type instantWarehouse struct{}

func (instantWarehouse) Apply(_ context.Context, group []warehouse.Payload) ([]warehouse.Outcome, error) {
	outcomes := make([]warehouse.Outcome, len(group))
	for i := range outcomes {
		outcomes[i] = warehouse.Outcome{Status: warehouse.Applied, RowsAffected: 1}
	}
	return outcomes, nil
}
func (instantWarehouse) Ping(context.Context) error { return nil }
func (instantWarehouse) Close() error               { return nil }

// BenchmarkGroupCommitter measures the committer's overhead per payload for
// concurrent submitters spread over a few tables, as the apply stage's
// handlers submit.
func BenchmarkGroupCommitter(b *testing.B) {
	for _, concurrency := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			benchmarkGroupCommitter(b, concurrency, nil, 8)
		})
	}
	// A backlog on one table, as the apply stage sees it with
	// MAX_OUTSTANDING messages in hand: one group at a time, the rest wait.
	b.Run("one-table/concurrency=1000", func(b *testing.B) {
		benchmarkGroupCommitter(b, 1000, nil, 1)
	})
	// Keyed payloads, 100 keys, for what holding a key costs; the runs
	// above must not change when keys are added.
	for _, concurrency := range []int{16, 128} {
		b.Run(fmt.Sprintf("keyed/concurrency=%d", concurrency), func(b *testing.B) {
			benchmarkGroupCommitter(b, concurrency, func(i int64) string { return fmt.Sprintf("row-%d", i%100) }, 8)
		})
	}
}

// benchmarkGroupCommitter submits b.N payloads from concurrency
// goroutines over the first `tables` of eight tables; orderingKey, when set, gives
// payload i its key.
func benchmarkGroupCommitter(b *testing.B, concurrency int, orderingKey func(i int64) string, tables int) {
	committer, err := warehouse.NewGroupCommitter(instantWarehouse{}, warehouse.GroupConfig{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	names := []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"}[:tables]
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range concurrency {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				p := warehouse.Payload{ID: "p", Activities: []messages.Activity{{
					Op: messages.OpInsert, Table: names[i%int64(len(names))],
				}}}
				if orderingKey != nil {
					p.OrderingKey = orderingKey(i)
				}
				if out, err := committer.Submit(ctx, p); err != nil || out.Status != warehouse.Applied {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := committer.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d payloads were not applied", n, b.N)
	}
	stats := committer.Stats()
	b.ReportMetric(float64(stats.Payloads)/float64(max(stats.Groups, 1)), "payloads/group")
}
