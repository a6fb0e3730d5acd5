package pipeline_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// MAX_IN_FLIGHT_BYTES: a request announcing a body that would take the
// bytes in flight past the budget is shed with 503 and Retry-After at once,
// before its body is read; the budget is free again once the request that
// held it ends; and a request larger than the whole budget is admitted
// alone.
func TestBodyBudgetShedsBeforeTheBodyIsRead(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.MaxInFlightBytes = 64 << 10
	cfg.MaxBodyBytes = 16 << 20 // a body larger than what loopback's socket buffers take in
	r := startService(t, cfg)
	before := scrape(t, r.base)

	// Alone, a body larger than the whole budget is admitted.
	big := fmt.Sprintf(`{"activities":[{"operation":"insert","table":"budget","col_names":["pad"],"col_types":["STRING"],"col_values":[%q]}]}`,
		strings.Repeat("x", 100<<10))
	if code, resp, _ := post(t, r.base, "application/json", big); code != 200 {
		t.Fatalf("a body over the budget, alone: %d %+v", code, resp)
	}

	// A client announces 60 KiB and sends none of it: it holds its share.
	c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", pipeline.IngestPath, 60<<10)
	deadline := time.Now().Add(10 * time.Second)
	for scrape(t, r.base)["gatekeeper_ingest_body_bytes"] != 60<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled request's 60 KiB were never reserved: gauge %v", scrape(t, r.base)["gatekeeper_ingest_body_bytes"])
		}
		time.Sleep(10 * time.Millisecond) // the poll's interval; the deadline bounds it
	}

	// Another announces 8 KiB (past the 64 KiB) and sends nothing either:
	// it is answered at once, without its body.
	s, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fmt.Fprintf(s, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", pipeline.IngestPath, 8<<10)
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(s), nil)
	if err != nil {
		t.Fatalf("no answer to a request past the budget whose body never came: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("past the budget: %d, Retry-After %q; want 503 with Retry-After: 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// A client that sends a large body whole while it is shed reads the
	// 503, not a connection reset under its upload.
	for range 5 {
		resp, err := http.Post(r.base+pipeline.IngestPath, "application/json", strings.NewReader(big+strings.Repeat(" ", 12<<20)))
		if err != nil {
			t.Fatalf("a large body past the budget: %v; want its 503", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("a large body past the budget: %d, want 503", resp.StatusCode)
		}
	}
	// Small ones still fit.
	if code, _, _ := post(t, r.base, "application/json", typedTable); code != 200 {
		t.Errorf("a small payload beside the stalled one: %d", code)
	}

	// The stalled client leaves: its share comes back.
	c.Close()
	for scrape(t, r.base)["gatekeeper_ingest_body_bytes"] != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the budget was not freed when the stalled request ended")
		}
		time.Sleep(10 * time.Millisecond) // the poll's interval; the deadline bounds it
	}
	if code, resp, _ := post(t, r.base, "application/json", big); code != 200 {
		t.Errorf("after the stalled request left: %d %+v", code, resp)
	}
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(line, "MAX_IN_FLIGHT_BYTES") && !strings.Contains(line, "level=DEBUG") {
			t.Errorf("a shed request logged above debug (it is counted): %s", line)
		}
	}
	after := scrape(t, r.base)
	for outcome, want := range map[string]float64{"shed": 6, "aborted": 1} {
		series := fmt.Sprintf(`gatekeeper_payloads_total{backend="",outcome=%q}`, outcome)
		if got := after[series] - before[series]; got != want {
			t.Errorf("%s counted %v, want %v", outcome, got, want)
		}
	}
}
