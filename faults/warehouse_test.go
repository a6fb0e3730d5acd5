package faults_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// The warehouse's pages are zeroed under load, as a failing disk would: the
// apply stage pauses (an outage) instead of poisoning the payloads, says so
// on /metrics and in its log, and keeps them; the file is then restored
// from a copy taken just before, in place, while the service runs. The
// stage resumes by itself (its writer connection was dropped on the storage
// error, so it reads the restored file), and every payload answered 200 is
// applied exactly once.
func TestWarehouseCorruptedUnderLoadThenRestored(t *testing.T) {
	host := needEmulator(t)
	t.Parallel()
	e := newEnv(t, host)
	p := e.start("service")
	l := startLoad(func() string { return p.base }, 4, 200_000, 120*time.Second)
	time.Sleep(3 * time.Second) // load before the fault: the schedule is the scenario
	before := len(l.acceptedIDs())

	copyOf := warehousetest.CorruptSQLite(t, e.warehousePath())
	corruptedAt := time.Now()
	waitMetric(t, p, "gatekeeper_apply_paused", 1, 30*time.Second)
	pausedAfter := time.Since(corruptedAt)
	waitLogged(t, p, `msg="Apply paused`, 1, 10*time.Second)
	line := logLine(p, `msg="Apply paused`)
	if !strings.Contains(line, "reason=storage") || !(strings.Contains(line, "malformed") || strings.Contains(line, "not a database")) {
		t.Errorf("the pause's log line does not name the corruption: %s", line)
	}
	// Load goes on against the damaged warehouse: accepted and kept.
	time.Sleep(5 * time.Second) // load during the fault: the schedule is the scenario
	if n := metricOf(p, "gatekeeper_apply_paused"); n != 1 {
		t.Errorf("gatekeeper_apply_paused = %v while the file is still zeroed, want 1", n)
	}
	if n := strings.Count(p.logText(), `msg="Payload poisoned"`); n != 0 {
		t.Fatalf("POISONED: %d payloads poisoned while the warehouse was corrupt", n)
	}

	warehousetest.RestoreSQLite(t, e.warehousePath(), copyOf)
	restoredAt := time.Now()
	waitMetric(t, p, "gatekeeper_apply_paused", 0, 60*time.Second)
	resumedAfter := time.Since(restoredAt)
	time.Sleep(2 * time.Second) // load goes on after the recovery
	l.halt()
	accepted := l.acceptedIDs()
	took := settle(t, e.warehousePath(), accepted, settleWithin)
	if n := poisonedCount(t, e, p); n != 0 {
		t.Fatalf("POISONED: %d valid payloads poisoned by a corrupt warehouse", n)
	}
	if c := integrityCheck(t, e.warehousePath()); c != "ok" {
		t.Errorf("integrity_check of the restored warehouse: %s", c)
	}
	record(t, "warehouse zeroed under load, restored in place from a copy %s later: %s; %d answered 200 before the damage, all %d applied exactly once (settled %s after the load); paused %s after the damage, resumed by itself %s after the restore; 0 poisoned, 0 lost, 0 duplicated",
		restoredAt.Sub(corruptedAt).Round(100*time.Millisecond), l.summary(), before, len(accepted), took.Round(100*time.Millisecond),
		pausedAfter.Round(100*time.Millisecond), resumedAfter.Round(100*time.Millisecond))
}

// The warehouse's disk fills under load (a small tmpfs, the outbox kept
// elsewhere): the apply stage pauses, holds, poisons nothing, and once the
// space is freed it resumes by itself and applies every payload answered
// 200 exactly once.
func TestWarehouseDiskFull(t *testing.T) {
	host := needEmulator(t)
	t.Parallel()
	e := newEnv(t, host)
	// Room for the WAL (checkpointed every ~40 MiB) and the file; the
	// filler takes the rest.
	fs := warehousetest.TmpfsDir(t, e.dir, 96<<20)
	e = e.with("WAREHOUSE", "sqlite:"+filepath.Join(fs, "warehouse.db"))
	p := e.start("service")
	var target atomic.Value
	target.Store(p.base)
	l := startLoad(func() string { return target.Load().(string) }, 4, 200_000, 120*time.Second)
	time.Sleep(3 * time.Second) // load before the fault: the schedule is the scenario

	filler := filepath.Join(fs, "filler")
	warehousetest.FillDisk(t, filler)
	fullAt := time.Now()
	waitMetric(t, p, "gatekeeper_apply_paused", 1, 60*time.Second)
	pausedAfter := time.Since(fullAt)
	waitLogged(t, p, `msg="Apply paused`, 1, 10*time.Second)
	if line := logLine(p, `msg="Apply paused`); !strings.Contains(line, "full") || !strings.Contains(line, "reason=storage") {
		t.Errorf("the pause's log line does not name the full disk: %s", line)
	}
	time.Sleep(5 * time.Second) // load during the fault: the schedule is the scenario
	if n := metricOf(p, "gatekeeper_apply_paused"); n != 1 {
		t.Errorf("gatekeeper_apply_paused = %v while the disk is still full, want 1", n)
	}
	heldWhileFull := metricOf(p, "gatekeeper_apply_held_payloads")
	if n := strings.Count(p.logText(), `msg="Payload poisoned"`); n != 0 {
		t.Fatalf("POISONED: %d payloads poisoned while the disk was full", n)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freedAt := time.Now()
	waitMetric(t, p, "gatekeeper_apply_paused", 0, 60*time.Second)
	resumedAfter := time.Since(freedAt)
	time.Sleep(2 * time.Second) // load goes on after the recovery
	l.halt()
	accepted := l.acceptedIDs()
	took := settle(t, e.warehousePath(), accepted, settleWithin)
	if n := poisonedCount(t, e, p); n != 0 {
		t.Fatalf("POISONED: %d valid payloads poisoned by a full disk", n)
	}
	errorLines := strings.Count(p.logText(), "level=ERROR")
	record(t, "warehouse disk full under load (96 MiB tmpfs, filled, then freed %s later): %s; %v held while full; paused %s after the disk filled, resumed by itself %s after it was freed; %d answered 200, all applied exactly once (settled %s after the load); 0 poisoned, 0 lost, 0 duplicated; %d ERROR log lines",
		freedAt.Sub(fullAt).Round(100*time.Millisecond), l.summary(), heldWhileFull, pausedAfter.Round(100*time.Millisecond),
		resumedAfter.Round(100*time.Millisecond), len(accepted), took.Round(100*time.Millisecond), errorLines)
}

// metricOf reads one series without labels from p's /metrics, or -1.
func metricOf(p *proc, name string) float64 {
	text, err := scrape(p.base)
	if err != nil {
		return -1
	}
	if v, ok := seriesValue(text, name); ok {
		return v
	}
	return -1
}

// waitMetric waits until p's series name reads want.
func waitMetric(t *testing.T, p *proc, name string, want float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := metricOf(p, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			p.dumpLog(20)
			t.Fatalf("%s = %v after %s, want %v", name, got, within, want)
		}
		time.Sleep(200 * time.Millisecond) // the poll's interval
	}
}

// logLine returns the first line of p's log that holds text.
func logLine(p *proc, text string) string {
	for _, line := range strings.Split(p.logText(), "\n") {
		if strings.Contains(line, text) {
			return line
		}
	}
	return ""
}

// poisonedCount is how many payloads were poisoned: those in the poison
// index, or, if more, the service's "Payload poisoned" lines (the index is
// written after the poison topic).
func poisonedCount(t *testing.T, e *env, procs ...*proc) int {
	t.Helper()
	db, err := sql.Open("sqlite", e.warehousePath()+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	counts, err := poisonedIndex(db)
	if err != nil && !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("read the poison index: %v", err)
	}
	logged := 0
	for _, p := range procs {
		logged += strings.Count(p.logText(), `msg="Payload poisoned"`)
	}
	return max(len(counts), logged)
}

// integrityCheck runs PRAGMA integrity_check on the SQLite file at path.
func integrityCheck(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		return fmt.Sprintf("error: %v", err)
	}
	return res
}
