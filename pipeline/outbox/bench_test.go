package outbox_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
)

// BenchmarkAppend measures what the outbox adds to each accepted request:
// concurrent appends of the example payload's size, with one fsync per
// shared commit (sync=full) or none (sync=normal).
func BenchmarkAppend(b *testing.B) {
	payload := make([]byte, 400)
	for _, sync := range []string{"full", "normal"} {
		for _, concurrency := range []int{1, 64} {
			b.Run(fmt.Sprintf("sync=%s/concurrency=%d", sync, concurrency), func(b *testing.B) {
				o, err := outbox.Open(context.Background(), outbox.Config{Path: filepath.Join(b.TempDir(), "outbox.db"), Sync: sync}, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer o.Close()
				var seq atomic.Int64
				b.SetParallelism(concurrency)
				cpu := processCPU()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						id := fmt.Sprintf("p%d", seq.Add(1))
						if err := o.Append(context.Background(), outbox.Entry{ID: id, Payload: payload}); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				// CPU, not wall time, is what an append takes from the
				// request path on a busy machine.
				b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/append")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
				b.ReportMetric(float64(b.N)/float64(o.Commits()), "appends/commit")
			})
		}
	}
}

// processCPU is the user and system CPU this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
