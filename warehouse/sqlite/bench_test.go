package sqlite_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/sqlite"
)

// benchKeys bounds the keys the benchmark payloads upsert: once every key
// was inserted, each payload's delete removes one row, so the table stays at
// this size instead of growing with b.N.
const benchKeys = 10_000

// examplePayload has the shape of the example: a delete by three
// columns and an insert of three columns on the same table. It upserts key:
// the delete removes the key's previous row, if any.
func examplePayload(key int64) warehouse.Payload {
	c := fmt.Sprintf("2018-03-27 11:58:%02d.%06d", key%60, key)
	id := uuid.NewString()
	// Every accepted payload carries its hash, which the ledger records.
	hash := sha256.Sum256([]byte(id))
	return warehouse.Payload{
		ID:   id,
		Hash: hex.EncodeToString(hash[:]),
		Activities: []messages.Activity{
			{Op: messages.OpDelete, Table: "table1", Columns: []messages.Column{
				col("a", messages.TypeInt64, key), col("c", messages.TypeString, c), col("e", messages.TypeString, nil),
			}},
			{Op: messages.OpInsert, Table: "table1", Columns: []messages.Column{
				col("a", messages.TypeInt64, key), col("b", messages.TypeString, "Backup and Restore"), col("c", messages.TypeString, c),
			}},
		},
	}
}

// BenchmarkApply measures payloads applied per second through the
// GroupCommitter into a file database, with the committer's defaults, for
// concurrent submitters that each wait for their payload like the apply
// stage's handlers do.
func BenchmarkApply(b *testing.B) {
	for _, concurrency := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			for _, sync := range []sqlite.Sync{sqlite.SyncFull, sqlite.SyncNormal} {
				b.Run("sync="+string(sync), func(b *testing.B) {
					benchmarkApply(b, concurrency, sqlite.Config{Sync: sync})
				})
			}
		})
	}
}

// BenchmarkApplyWithoutDeleteIndexes shows what the delete indexes buy:
// every delete scans the table of benchKeys rows.
func BenchmarkApplyWithoutDeleteIndexes(b *testing.B) {
	benchmarkApply(b, 10, sqlite.Config{DisableDeleteIndexes: true})
}

func benchmarkApply(b *testing.B, concurrency int, cfg sqlite.Config) {
	cfg.Path = filepath.Join(b.TempDir(), "bench.db")
	w := openWarehouse(b, cfg)
	ctx := context.Background()
	setup := warehouse.Payload{ID: "setup", Activities: []messages.Activity{{
		Op: messages.OpInsert, Table: "table1", Columns: []messages.Column{
			col("a", messages.TypeInt64, int64(-1)), col("b", messages.TypeString, "setup"),
			col("c", messages.TypeString, "setup"), col("e", messages.TypeString, "setup"),
		},
	}}}
	if _, err := w.Apply(ctx, []warehouse.Payload{setup}); err != nil {
		b.Fatal(err)
	}
	// Fill the table so deletes find rows and the table has its steady size.
	for start := int64(0); start < benchKeys; start += 500 {
		var group []warehouse.Payload
		for k := start; k < start+500; k++ {
			group = append(group, examplePayload(k))
		}
		if _, err := w.Apply(ctx, group); err != nil {
			b.Fatal(err)
		}
	}

	committer, err := warehouse.NewGroupCommitter(w, warehouse.GroupConfig{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpuBefore, cpuOK := processCPUTime()
	began := time.Now()
	for range concurrency {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				out, err := committer.Submit(ctx, examplePayload(i%benchKeys))
				if err != nil || out.Status != warehouse.Applied || out.RowsAffected != 2 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	cpuAfter, _ := processCPUTime()
	b.StopTimer()
	if err := committer.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d payloads were not applied with 2 rows affected", n, b.N)
	}
	stats := committer.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "payloads/s")
	b.ReportMetric(float64(stats.Groups), "groups")
	b.ReportMetric(float64(stats.Payloads)/float64(max(stats.Groups, 1)), "payloads/group")
	if cpuOK {
		b.ReportMetric(float64((cpuAfter-cpuBefore).Microseconds())/float64(b.N), "cpu-µs/payload")
	}
}
