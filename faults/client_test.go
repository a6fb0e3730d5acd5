package faults_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Client faults are the client's: bodies that trickle past READ_TIMEOUT get
// 408 (never 503), are counted as timeouts, are not logged one WARN line
// each, and the service meanwhile answers everyone else.
func TestSlowBodies(t *testing.T) {
	needFaults(t)
	// WRITE_TIMEOUT as short as READ_TIMEOUT (PUBLISH_TIMEOUT below it), as
	// with the defaults: the write deadline passes with the read deadline.
	e := newEnv(t, "").with("READ_TIMEOUT", "3s", "WRITE_TIMEOUT", "3s", "PUBLISH_TIMEOUT", "2s")
	p := e.start("service")
	addr := strings.TrimPrefix(p.base, "http://")
	const slow = 200

	type answer struct {
		status int
		err    string
	}
	answers := make([]answer, slow)
	var wg sync.WaitGroup
	started := time.Now()
	for i := range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i].status, answers[i].err = trickle(addr, 1<<20, 500*time.Millisecond, 15*time.Second)
		}()
	}
	// Others are served meanwhile.
	l := startLoad(func() string { return p.base }, 4, 400, 4*time.Second)
	l.wg.Wait()
	wg.Wait()
	took := time.Since(started)

	counts := map[string]int{}
	for _, a := range answers {
		key := strconv.Itoa(a.status)
		if a.status == 0 {
			key = "no answer (" + a.err + ")"
		}
		counts[key]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var summary []string
	for _, k := range keys {
		summary = append(summary, fmt.Sprintf("%d×%s", counts[k], k))
	}
	if counts["408"] != slow {
		t.Errorf("slow bodies answered %s; want %d×408", strings.Join(summary, " "), slow)
	}
	others := l.summary()
	l.mu.Lock()
	othersOK, othersAnswered := l.answers[200], l.answers[200]+l.answers[503]
	othersSent := l.next
	l.mu.Unlock()
	// 503 stays possible for others on a busy machine (PUBLISH_TIMEOUT is
	// 2 s here); what must not happen is the slow clients taking the
	// service down for everyone.
	if othersOK == 0 || othersAnswered != othersSent {
		t.Errorf("other clients meanwhile: %s; want them served (200, or 503 for a publish timeout)", others)
	}
	timeouts := metric(t, p.base, `gatekeeper_payloads_total{backend="",outcome="timeout"}`)
	failed := metric(t, p.base, `gatekeeper_payloads_total{backend="",outcome="failed"}`)
	if timeouts != slow || failed != 0 {
		t.Errorf("payloads_total: timeout %v, failed %v; want %d and 0", timeouts, failed, slow)
	}
	warns := strings.Count(p.logText(), "level=WARN") + strings.Count(p.logText(), `"level":"WARN"`)
	if warns > 5 {
		t.Errorf("%d WARN lines in the log for %d slow clients; want no line per request", warns, slow)
	}
	took2 := settle(t, e.warehousePath(), l.acceptedIDs(), 60*time.Second)
	record(t, "%d bodies announcing 1 MiB trickled 1 B/500 ms, READ_TIMEOUT=3s=WRITE_TIMEOUT: %s in %s; timeout counted %v, failed %v, WARN lines %d; meanwhile others %s, 0 lost, 0 duplicated, settled in %s",
		slow, strings.Join(summary, " "), took.Round(100*time.Millisecond), timeouts, failed, warns, others, took2.Round(100*time.Millisecond))
}

// trickle announces length bytes and sends one every gap, reading the
// answer meanwhile. It returns the status that arrived, or why none did.
func trickle(addr string, length int, gap, within time.Duration) (int, string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "dial: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(within))
	if _, err := fmt.Fprintf(c, "POST /api/activities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", length); err != nil {
		return 0, "write: " + err.Error()
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(gap)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "read: " + strings.TrimPrefix(err.Error(), c.LocalAddr().String())
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, ""
}

// metric reads one sample of /metrics (0 when absent).
func metric(t *testing.T, base, series string) float64 {
	t.Helper()
	text, err := scrape(base)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	v, _ := seriesValue(text, series)
	return v
}

// largePayload is a valid insert of about size bytes into faults: rows rows,
// each its own key, with a string pad.
func largePayload(key string, size, rows int) []byte {
	pad := strings.Repeat("x", size/rows-100)
	var b bytes.Buffer
	b.Grow(size + 1024)
	b.WriteString(`{"activities":[`)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"operation":"insert","table":"faults","col_names":["k","pad"],"col_types":["STRING","STRING"],"col_values":["%s-%d","%s"]}`,
			key, i, pad)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

var vmLine = regexp.MustCompile(`(?m)^(VmRSS|VmHWM):\s+(\d+) kB`)

// memory reads a process's VmRSS and VmHWM, in bytes.
func memory(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range vmLine.FindAllStringSubmatch(string(raw), -1) {
		kb, _ := strconv.ParseInt(m[2], 10, 64)
		if m[1] == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// resetPeak sets VmHWM back to the current RSS (Linux clear_refs 5).
func resetPeak(t *testing.T, pid int) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset the RSS peak: %v", err)
	}
}

const mib = 1 << 20

// burst posts n payloads at once, each body, and returns how many got each
// status and the ids answered 200.
func burst(base string, bodies [][]byte, keys []string) (statuses map[int]int, accepted map[string]string, errs int, firstErr string) {
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: len(bodies), MaxConnsPerHost: len(bodies)}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	statuses, accepted = map[int]int{}, map[string]string{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := client.Post(base+"/api/activities", "application/json", bytes.NewReader(bodies[i]))
			if err != nil {
				mu.Lock()
				errs++
				if errs == 1 {
					firstErr = err.Error()
				}
				mu.Unlock()
				return
			}
			var body struct {
				ID string `json:"id"`
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = json.Unmarshal(raw, &body)
			mu.Lock()
			defer mu.Unlock()
			statuses[resp.StatusCode]++
			if resp.StatusCode == http.StatusOK {
				accepted[body.ID] = keys[i]
			} else if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				statuses[-503]++ // a 503 without Retry-After
			}
		}()
	}
	close(start)
	wg.Wait()
	return statuses, accepted, errs, firstErr
}

func loadAverage() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Bursts of large payloads: requests past MAX_IN_FLIGHT_BYTES are shed with
// 503 and Retry-After before their bodies are read, RSS does not grow from
// round to round and stays under a ceiling, and every payload answered 200
// is applied once. Each round's peak is compared in the record with the
// goal, 3 × the bytes admitted at once + 100 MB, which is not met yet (about
// 7-8 × for 100 × 1 MiB): the ceiling guards against a return to the
// 10-13 × measured before the byte budget and the cuts.
//
// On the emulator, not the embedded Pub/Sub: with bodies of 1 MiB, pstest
// can deadlock (it answers a stream's keep-alive while holding its server
// lock, and its send blocks once the client's flow control stops reading),
// and in one process its copies of every message would be counted as
// gatekeeper's memory.
func TestBurstsOfLargePayloads(t *testing.T) {
	// A busy CI box publishes 100 MiB slowly: the publish may take longer
	// than the default 10 s, which would turn accepted bodies into 503s.
	e := newEnv(t, needEmulator(t)).with("PUBLISH_TIMEOUT", "30s", "WRITE_TIMEOUT", "60s")
	p := e.start("service")
	pid := p.cmd.Process.Pid
	const budget = 256 * mib // MAX_IN_FLIGHT_BYTES's default
	const size, rows = mib - 4096, 32
	// The ceiling: measured 651-929 MiB on the emulator (2026-12-06).
	promise := int64(1200 * mib)

	all := map[string]string{}
	idle, _ := memory(t, pid)
	type round struct {
		n, ok, shed, errs int
		admitted, peak    int64
	}
	var rounds []round
	run := func(r, n int) {
		bodies := make([][]byte, n)
		keys := make([]string, n)
		for i := range bodies {
			keys[i] = fmt.Sprintf("r%d-%d", r, i)
			bodies[i] = largePayload(keys[i], size, rows)
		}
		resetPeak(t, pid)
		statuses, accepted, errs, firstErr := burst(p.base, bodies, keys)
		// The round lasts until what it accepted is applied: the apply
		// stage's share of the memory is in the peak too.
		settle(t, e.warehousePath(), accepted, 120*time.Second)
		_, hwm := memory(t, pid)
		for id, k := range accepted {
			all[id] = k
		}
		admitted := min(int64(n)*int64(len(bodies[0])), budget+int64(len(bodies[0])))
		goal := 3*admitted + 100_000_000
		t.Logf("round %d: %d × %d B: %v, %d transport errors (%s); RSS peak %d MiB (%.1f× the %d MiB admitted; goal %d MiB, promise %d MiB); load %s",
			r, n, len(bodies[0]), statuses, errs, firstErr, hwm/mib, float64(hwm)/float64(admitted), admitted/mib, goal/mib, promise/mib, loadAverage())
		if hwm > promise {
			t.Errorf("round %d: RSS peak %d MiB over the ceiling of %d MiB", r, hwm/mib, promise/mib)
		}
		if errs > 0 || statuses[-503] > 0 || statuses[200]+statuses[503] != n {
			t.Errorf("round %d: %v, %d transport errors (%s); want only 200s and 503s with Retry-After", r, statuses, errs, firstErr)
		}
		rounds = append(rounds, round{n: n, ok: statuses[200], shed: statuses[503], errs: errs, admitted: admitted, peak: hwm})
	}
	for r := range 10 {
		run(r, 100)
	}
	run(10, 1000)

	var first, last int64 // the highest peaks of rounds 0-4 and 5-9
	lo, hi, ok100 := rounds[0].peak, rounds[0].peak, 0
	for i, r := range rounds[:10] {
		lo, hi, ok100 = min(lo, r.peak), max(hi, r.peak), ok100+r.ok
		if i < 5 {
			first = max(first, r.peak)
		} else {
			last = max(last, r.peak)
		}
	}
	if last > first+first/4+50*mib {
		t.Errorf("RSS grows from round to round: peaks up to %d MiB in rounds 0-4, %d MiB in rounds 5-9", first/mib, last/mib)
	}
	big := rounds[10]
	if big.shed == 0 {
		t.Errorf("1,000 × 1 MiB against a %d MiB budget: none shed", budget/mib)
	}
	took := settle(t, e.warehousePath(), all, 120*time.Second)
	record(t, "idle RSS %d MiB; 10 rounds of 100 × 1 MiB: %d×200 of 1,000, RSS peak %d–%d MiB (goal 3 × 100 MiB + 100 MB = %d MiB%s); "+
		"1 round of 1,000 × 1 MiB: %d×200, %d×503 shed, RSS peak %d MiB (goal 3 × 256 MiB + 100 MB = %d MiB, ceiling %d MiB); 0 lost, 0 duplicated of %d answered 200 (settled in %s); load %s",
		idle/mib, ok100, lo/mib, hi/mib, (3*100*mib+100_000_000)/mib, map[bool]string{true: ", met", false: ", NOT met"}[hi <= 3*100*mib+100_000_000],
		big.ok, big.shed, big.peak/mib, (3*budget+100_000_000)/mib, promise/mib, len(all), took.Round(100*time.Millisecond), loadAverage())
}
