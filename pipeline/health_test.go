package pipeline_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// probeAnswer is a /readyz or /healthz body.
type probeAnswer struct {
	Status  string
	Error   string
	Reasons []probeReason
}

type probeReason struct{ Component, Error, Since, Effect string }

func (a probeAnswer) reason(component string) (probeReason, bool) {
	for _, r := range a.Reasons {
		if r.Component == component {
			return r, true
		}
	}
	return probeReason{}, false
}

// probe asks a probe path and decodes its body.
func probe(t *testing.T, base, path string) (int, probeAnswer, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var a probeAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("%s body %q: %v", path, raw, err)
	}
	return resp.StatusCode, a, string(raw)
}

// waitProbe polls path until ok says the answer is the one awaited.
func waitProbe(t *testing.T, base, path string, within time.Duration, ok func(int, probeAnswer) bool) (int, probeAnswer) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, a, raw := probe(t, base, path)
		if ok(code, a) {
			return code, a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered as awaited within %s; last: %d %s", path, within, code, raw)
		}
		time.Sleep(50 * time.Millisecond) // the poll's interval
	}
}

// With the outbox's disk full, every POST gets 503 (never 500), /readyz is
// 503 naming the outbox and nothing else, /healthz stays 200 (a restart
// cannot free a disk) naming it as degraded, and the log says so once,
// not once per request. Once space is freed, the service is ready again
// by itself, before any request comes.
func TestHealthOnAFullOutboxDisk(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.OutboxPath = filepath.Join(warehousetest.TmpfsDir(t, "", 4<<20), "outbox.db")
	r := startService(t, cfg)
	if code, a, raw := probe(t, r.base, "/readyz"); code != 200 || a.Status != "ready" || len(a.Reasons) != 0 {
		t.Fatalf("/readyz before: %d %s", code, raw)
	}
	warehousetest.FillDisk(t, filepath.Join(filepath.Dir(cfg.OutboxPath), "filler"))

	codes := map[int]int{}
	for i := range 300 {
		code, _, _ := post(t, r.base, "application/json", insertBody(i))
		codes[code]++
	}
	if codes[503] < 200 || codes[500] > 0 || codes[200]+codes[503] != 300 {
		t.Fatalf("POSTs on a full outbox disk: %v, want 503s (a few 200s while the WAL had room), no 500", codes)
	}
	code, a, raw := probe(t, r.base, "/readyz")
	out, ok := a.reason("outbox")
	if code != 503 || a.Status != "unavailable" || !ok || out.Effect != "unready" || out.Since == "" ||
		!strings.Contains(out.Error, "full") || !strings.Contains(out.Error, cfg.OutboxPath) || len(a.Reasons) != 1 ||
		!strings.Contains(a.Error, "outbox: ") {
		t.Fatalf("/readyz on a full outbox disk: %d %s, want 503 naming the outbox only", code, raw)
	}
	code, a, raw = probe(t, r.base, "/healthz")
	if out, ok := a.reason("outbox"); code != 200 || a.Status != "degraded" || !ok || out.Effect != "degraded" {
		t.Fatalf("/healthz on a full outbox disk: %d %s, want 200 degraded naming the outbox", code, raw)
	}
	logs := r.logs.String()
	for line, want := range map[string]int{`msg="Outbox writes failing"`: 1, `msg="Ingestion (outbox) failing"`: 1} {
		if n := strings.Count(logs, line); n != want {
			t.Errorf("%d lines %s for %d refused requests, want %d", n, line, codes[503], want)
		}
	}
	if n := strings.Count(logs, "level=ERROR") + strings.Count(logs, "level=WARN"); n > 10 {
		t.Errorf("%d ERROR and WARN lines for %d refused requests:\n%s", n, codes[503], logs)
	}

	// Freed: ready again with no request to show it.
	if err := os.Remove(filepath.Join(filepath.Dir(cfg.OutboxPath), "filler")); err != nil {
		t.Fatal(err)
	}
	waitProbe(t, r.base, "/readyz", 10*time.Second, func(code int, a probeAnswer) bool { return code == 200 && a.Status == "ready" })
	if code, resp, _ := post(t, r.base, "application/json", insertBody(1000)); code != 200 {
		t.Fatalf("POST after the disk was freed: %d %+v", code, resp)
	}
	if !strings.Contains(r.logs.String(), `msg="Outbox writes recovered"`) {
		t.Errorf("no Outbox writes recovered line")
	}
	// The edge's 503s end with a request accepted a quiet second after the
	// last of them.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; !strings.Contains(r.logs.String(), `msg="Ingestion (outbox) recovered"`); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no Ingestion (outbox) recovered line 10s after recovery")
		}
		if code, resp, _ := post(t, r.base, "application/json", insertBody(2000+i)); code != 200 {
			t.Fatalf("POST after the disk was freed: %d %+v", code, resp)
		}
		time.Sleep(100 * time.Millisecond) // the poll's pace: a request each round, the deadline bounds it
	}
}

// A warehouse that cannot be written (held locked by another process)
// makes an apply-only process unready; beside the ingest stage it is named
// as degraded and the process stays ready: the queue buffers. The backlog
// that builds meanwhile is its own reason once EMBEDDED_MAX_BACKLOG is
// reached, with the warehouse still named.
func TestReadinessOfAWarehouseThatIsDown(t *testing.T) {
	t.Parallel()
	t.Run("ingest and apply", func(t *testing.T) {
		cfg := testConfig(t, pipeline.PubSubEmbedded)
		cfg.EmbeddedMaxBacklog = 3
		cfg.ResourceCheckInterval = 200 * time.Millisecond
		r := startService(t, cfg)
		release := warehousetest.HoldSQLiteLock(t, strings.TrimPrefix(cfg.Warehouse, "sqlite:"))
		defer release()
		_, a := waitProbe(t, r.base, "/readyz", 10*time.Second, func(code int, a probeAnswer) bool {
			_, named := a.reason("warehouse")
			return named
		})
		if code, a2, raw := probe(t, r.base, "/readyz"); code != 200 || a2.Status != "degraded" || len(a2.Reasons) != 1 ||
			a2.Reasons[0].Effect != "degraded" {
			t.Fatalf("/readyz with the warehouse locked, both stages: %d %s (first seen %+v), want 200 degraded", code, raw, a)
		}
		for i := range cfg.EmbeddedMaxBacklog {
			if code, resp, _ := post(t, r.base, "application/json", insertBody(i)); code != 200 {
				t.Fatalf("POST %d while the warehouse is locked: %d %+v, want 200 (the queue buffers)", i, code, resp)
			}
		}
		code, a, raw := probe(t, r.base, "/readyz")
		backlog, ok := a.reason("backlog")
		wh, whOK := a.reason("warehouse")
		if code != 503 || !ok || backlog.Effect != "unready" || !whOK || wh.Effect != "degraded" || len(a.Reasons) != 2 {
			t.Fatalf("/readyz with the backlog full: %d %s, want 503 naming the backlog, and the warehouse as degraded", code, raw)
		}
		if code, a, raw := probe(t, r.base, "/healthz"); code != 200 || a.Status != "degraded" {
			t.Fatalf("/healthz with the warehouse locked: %d %s, want 200 degraded", code, raw)
		}
		release()
		waitProbe(t, r.base, "/readyz", 30*time.Second, func(code int, a probeAnswer) bool { return code == 200 && a.Status == "ready" })
	})
	t.Run("apply only", func(t *testing.T) {
		skipWithoutEmulator(t, pipeline.PubSubEmulator)
		cfg := testConfig(t, pipeline.PubSubEmulator)
		cfg.Stages = []pipeline.Stage{pipeline.StageApply}
		cfg.ResourceCheckInterval = 200 * time.Millisecond
		r := startService(t, cfg)
		release := warehousetest.HoldSQLiteLock(t, strings.TrimPrefix(cfg.Warehouse, "sqlite:"))
		defer release()
		code, a := waitProbe(t, r.base, "/readyz", 10*time.Second, func(code int, a probeAnswer) bool { return code != 200 })
		if wh, ok := a.reason("warehouse"); code != 503 || !ok || wh.Effect != "unready" || len(a.Reasons) != 1 {
			t.Fatalf("/readyz with the warehouse locked, apply only: %d %+v, want 503 naming the warehouse", code, a)
		}
		release()
		waitProbe(t, r.base, "/readyz", 30*time.Second, func(code int, a probeAnswer) bool { return code == 200 })
	})
}

// freezer is a TCP proxy to Pub/Sub that stops passing bytes while
// frozen: a Pub/Sub that does not answer, as a SIGSTOPped emulator.
type freezer struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	thawed chan struct{} // closed while bytes pass; open while frozen
}

// freeze stops the bytes; thaw lets them pass again.
func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.thawed:
		f.thawed = make(chan struct{})
	default: // frozen already
	}
}

func (f *freezer) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.thawed:
	default:
		close(f.thawed)
	}
}

// whenThawed is closed once bytes may pass.
func (f *freezer) whenThawed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.thawed
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target, thawed: make(chan struct{})}
	close(f.thawed)
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			f.wg.Go(func() { f.pipe(up, c) })
			f.wg.Go(func() { f.pipe(c, up) })
		}
	})
	t.Cleanup(func() {
		f.thaw()
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		<-f.whenThawed()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// A Pub/Sub that does not answer is named as Pub/Sub, and only as Pub/Sub:
// the warehouse's check runs beside it under its own deadline, where it
// once ran after it in a shared one and reported "warehouse: sqlite ping:
// context deadline exceeded". And the answer comes within the checks'
// bound.
func TestReadyzFrozenPubSubDoesNotBlameTheWarehouse(t *testing.T) {
	t.Parallel()
	skipWithoutEmulator(t, pipeline.PubSubEmulator)
	cfg := testConfig(t, pipeline.PubSubEmulator)
	f := newFreezer(t, cfg.EmulatorHost)
	cfg.EmulatorHost = f.ln.Addr().String()
	r := startService(t, cfg)
	f.freeze()
	defer f.thaw()
	for range 3 {
		start := time.Now()
		code, a, raw := probe(t, r.base, "/readyz")
		took := time.Since(start)
		ps, ok := a.reason("pubsub")
		if code != 503 || !ok || ps.Effect != "unready" {
			t.Fatalf("/readyz with Pub/Sub frozen: %d %s, want 503 naming pubsub", code, raw)
		}
		if _, blamed := a.reason("warehouse"); blamed || strings.Contains(raw, "sqlite") {
			t.Fatalf("/readyz with Pub/Sub frozen blames the warehouse: %s", raw)
		}
		if took > 3*time.Second {
			t.Errorf("/readyz took %s with Pub/Sub frozen; each check is bounded by 2s and they run at once", took)
		}
	}
	f.thaw()
	waitProbe(t, r.base, "/readyz", 30*time.Second, func(code int, a probeAnswer) bool { return code == 200 })
}

// A warehouse whose commits fail (as with pages zeroed under it: the probe,
// which only takes the write lock, still succeeds) is named by both probes
// with the commits' error; beside the ingest stage it is degraded, never a
// 503 of /readyz and never a restart, even past UNHEALTHY_AFTER: a new
// process would find the same file. A commit that succeeds clears it.
func TestHealthNamesAWarehouseWhoseCommitsFail(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.UnhealthyAfter = 300 * time.Millisecond
	cfg.RetryInitial = 20 * time.Millisecond
	cfg.RetryMaxInterval = 50 * time.Millisecond
	faulty, inner, withFaulty := faultyWarehouse(t, cfg)
	malformed := messages.Transient(errors.New("sqlite record payload in ledger: database disk image is malformed"))
	faulty.FailNext(1_000_000, malformed)
	r := startServiceWith(t, cfg, withFaulty)
	if code, resp, _ := post(t, r.base, "application/json", insertOnly); code != 200 {
		t.Fatalf("POST: %d %+v", code, resp)
	}
	waitProbe(t, r.base, "/readyz", 10*time.Second, func(_ int, a probeAnswer) bool {
		_, named := a.reason("warehouse")
		return named
	})
	code, a, raw := probe(t, r.base, "/readyz")
	if wh, ok := a.reason("warehouse"); code != 200 || a.Status != "degraded" || !ok || wh.Effect != "degraded" ||
		!strings.Contains(wh.Error, "malformed") || wh.Since == "" {
		t.Fatalf("/readyz with failing commits: %d %s, want 200 degraded naming the warehouse's error", code, raw)
	}
	// Past UNHEALTHY_AFTER: still no restart. Time passing is the point:
	// nothing signals that a restart was not asked for.
	time.Sleep(2 * cfg.UnhealthyAfter)
	code, a, raw = probe(t, r.base, "/healthz")
	if wh, ok := a.reason("warehouse"); code != 200 || a.Status != "degraded" || !ok || wh.Effect != "degraded" {
		t.Fatalf("/healthz with failing commits past UNHEALTHY_AFTER: %d %s, want 200 degraded", code, raw)
	}
	if n := strings.Count(r.logs.String(), `msg="Warehouse commits failing"`); n != 1 {
		t.Errorf("%d Warehouse commits failing lines, want 1", n)
	}

	faulty.FailNext(0, nil)
	code2, resp, _ := post(t, r.base, "application/json", insertBody(7))
	if code2 != 200 {
		t.Fatalf("POST: %d %+v", code2, resp)
	}
	waitApplied(t, inner, resp.ID, 15*time.Second)
	waitProbe(t, r.base, "/readyz", 10*time.Second, func(code int, a probeAnswer) bool { return code == 200 && a.Status == "ready" })
	waitProbe(t, r.base, "/healthz", 10*time.Second, func(code int, a probeAnswer) bool { return code == 200 && a.Status == "ok" })
}
