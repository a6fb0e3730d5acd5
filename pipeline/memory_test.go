package pipeline_test

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// largePayload is a valid payload of about size bytes: rows activities
// inserting into table t, each with a distinct key and a string pad.
func largePayload(key string, size, rows int) []byte {
	pad := strings.Repeat("x", size/rows-120)
	var b bytes.Buffer
	b.WriteString(`{"activities":[`)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"operation":"insert","table":"big","col_names":["k","pad"],"col_types":["STRING","STRING"],"col_values":[%q,%q]}`,
			fmt.Sprintf("%s-%d", key, i), pad)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// TestLargePayloadAllocations holds the bytes the whole process (ingest,
// the embedded Pub/Sub and apply) allocates per ~1 MiB payload. It was
// 7.9× the body; reading the body into one buffer of its Content-Length
// made it 6.7×, streaming the echo 6.6×. What is left: the gate's parse
// and canonical form (2×), the apply stage's parse (1×), and the embedded
// Pub/Sub's protobuf copies on publish and pull (2×, plus gRPC's buffers).
func TestLargePayloadAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector moves allocations to the heap (9.2× here against 6.8× without); .ci/run runs this without -race")
	}
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	r := startService(t, cfg)
	client := &http.Client{Timeout: 30 * time.Second}
	const n, conc = 40, 8
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = largePayload(fmt.Sprintf("p%d", i), 1<<20-200, 64)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	sem := make(chan struct{}, conc)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := client.Post(r.base+pipeline.IngestPath, "application/json", bytes.NewReader(bodies[i]))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	applied := `gatekeeper_payloads_total{backend="",outcome="applied"}`
	deadline := time.Now().Add(60 * time.Second)
	for scrape(t, r.base)[applied] < n {
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d applied within 60 s", scrape(t, r.base)[applied], n)
		}
		time.Sleep(200 * time.Millisecond) // each scrape allocates too
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perPayload := float64(after.TotalAlloc-before.TotalAlloc) / n
	t.Logf("allocated per payload of %d bytes: %.1f MiB (%.1f×), %d mallocs", len(bodies[0]),
		perPayload/(1<<20), perPayload/float64(len(bodies[0])), (after.Mallocs-before.Mallocs)/n)
	if perPayload > 7.5*float64(len(bodies[0])) {
		t.Errorf("%.1f× the body allocated per payload; it was 6.6× after the cuts", perPayload/float64(len(bodies[0])))
	}
}
