package faults_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// count is how many answers had status code.
func (l *load) count(code int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.answers[code]
}

// waitUntil polls cond every 50ms until it holds, failing after within.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond) // the poll's interval
	}
	return time.Since(start)
}

// The disk under the outbox fills while payloads are posted: every POST is
// answered 503 (never 500) while it is full, /readyz says 503 naming the
// outbox, /healthz stays 200 (a restart cannot free a disk), the log says
// so once and then as counts, not once per request; nothing is poisoned.
// Once space is freed the service recovers by itself, and every payload
// answered 200 is applied exactly once.
func TestOutboxDiskFull(t *testing.T) {
	needFaults(t)
	e := newEnv(t, "")
	disk := warehousetest.TmpfsDir(t, e.dir, 8<<20)
	// Counts every 2 s, so that a fault of seconds shows them.
	e = e.with("OUTBOX_PATH", filepath.Join(disk, "outbox.db"), "LOG_REPEAT_INTERVAL", "2s")
	p := e.start("service")
	l := startLoad(func() string { return p.base }, 4, 200_000, 120*time.Second)
	halted := false
	defer func() {
		if !halted {
			l.halt()
		}
	}()
	waitUntil(t, 30*time.Second, "500 accepted before the disk fills", func() bool { return len(l.acceptedIDs()) >= 500 })

	filler := filepath.Join(disk, "filler")
	filled := warehousetest.FillDisk(t, filler)
	fullAt := time.Now()
	before503 := l.count(503)
	var body string
	unreadyAfter := waitUntil(t, 15*time.Second, "/readyz 503 naming the outbox", func() bool {
		var code int
		code, body = readyzBody(p.base)
		return code == 503 && strings.Contains(body, `"component":"outbox"`)
	})
	if !strings.Contains(body, "full") {
		t.Errorf("/readyz does not say the disk is full: %s", body)
	}
	resp, err := probeClient.Get(p.base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz on a full outbox disk: %d, want 200 (a restart cannot free the disk)", resp.StatusCode)
	}
	// Full for a while under load: at least 2,000 refusals.
	waitUntil(t, 60*time.Second, "2,000 answers 503 while the disk is full", func() bool { return l.count(503)-before503 >= 2000 })
	refusedWhileFull := l.count(503) - before503
	fullFor := time.Since(fullAt)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	recoveredAfter := waitUntil(t, 15*time.Second, "/readyz 200 once the disk is freed", func() bool {
		code, _ := readyzBody(p.base)
		return code == 200
	})
	acceptedAtRecovery := len(l.acceptedIDs())
	waitUntil(t, 30*time.Second, "500 more accepted after the disk was freed", func() bool {
		return len(l.acceptedIDs()) >= acceptedAtRecovery+500
	})
	l.halt()
	halted = true
	summary := l.summary()
	if n := l.count(500); n > 0 {
		t.Errorf("%d answers 500 (%s), want none: a full disk is not a bug", n, summary)
	}

	accepted := l.acceptedIDs()
	took := settle(t, e.warehousePath(), accepted, 120*time.Second)
	db, err := sql.Open("sqlite", e.warehousePath()+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	poisoned, err := poisonedIndex(db)
	if err != nil && !strings.Contains(err.Error(), "no such table") {
		t.Fatal(err)
	}
	if len(poisoned) > 0 {
		t.Errorf("POISONED: %d valid payloads poisoned by a full outbox disk", len(poisoned))
	}

	logText := p.logText()
	errorLines := strings.Count(logText, "level=ERROR")
	warnLines := strings.Count(logText, "level=WARN")
	episodes := strings.Count(logText, `msg="Outbox writes failing"`)
	counts := strings.Count(logText, `msg="Outbox writes still failing"`)
	edgeEpisodes := strings.Count(logText, `msg="Ingestion (outbox) failing"`)
	if episodes == 0 || edgeEpisodes == 0 || !strings.Contains(logText, `msg="Outbox writes recovered"`) {
		t.Errorf("the log does not say the outbox failed and recovered (%d episodes, %d at the edge)", episodes, edgeEpisodes)
	}
	if counts == 0 {
		t.Errorf("no Outbox writes still failing line in %s full with LOG_REPEAT_INTERVAL=2s", fullFor.Round(time.Second))
	}
	// Once per episode, plus a count per minute, and no line per request.
	if refused := l.count(503); (errorLines+warnLines)*50 > refused {
		t.Errorf("%d ERROR and %d WARN lines for %d answers 503: want far fewer lines than requests", errorLines, warnLines, refused)
	}
	record(t, "disk full on the outbox (tmpfs 8 MiB, filler %d MiB, embedded, 4 clients, LOG_REPEAT_INTERVAL=2s): /readyz 503 naming the outbox %s after the disk filled, "+
		"/healthz 200; full for %s with %d answered 503; ready again %s after space was freed; %s; 0 answered 500, "+
		"0 lost, 0 duplicated, %d poisoned of %d answered 200; settled in %s; log: %d ERROR + %d WARN lines "+
		"(outbox: %d episodes, %d count lines; edge: %d episodes)",
		filled>>20, unreadyAfter.Round(10*time.Millisecond), fullFor.Round(100*time.Millisecond), refusedWhileFull,
		recoveredAfter.Round(10*time.Millisecond), summary, len(poisoned), len(accepted), took.Round(100*time.Millisecond),
		errorLines, warnLines, episodes, counts, edgeEpisodes)
	if code := p.term(60 * time.Second); code != 0 {
		t.Errorf("SIGTERM after recovery: exit %d, want 0", code)
	}
}
