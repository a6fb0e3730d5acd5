package faults_test

import (
	"database/sql"
	"testing"
	"time"
)

// restartFirstApplyWithin and restartDrainWithin bound the drain after a
// SIGTERM restart of the apply stage. A stream the emulator still believes
// live (a cancelled one: see pipeline.NewSubscriber) holds what it is handed
// until its lease runs out, about 20 s, so a restart that leaves dead
// streams behind cannot drain within 15 s; before the fix, backlogs of
// 2,000-20,000 had their first payload applied after 11-19 s and drained at
// 30-185/s, and this scenario applied nothing for 15 s and drained its
// 3,000 in 3 min 58 s. After it, the same backlogs drain in 1-4 s, at load
// averages of 10 to 130 on a shared 2-core machine, and this scenario in
// 2 s.
const (
	restartFirstApplyWithin = 5 * time.Second
	restartDrainWithin      = 15 * time.Second
)

// The local stack's everyday restart: an apply process on the emulator is
// stopped with SIGTERM while an ingest-only process goes on accepting
// under bounded load, so that a backlog builds with no apply process
// running; then a new apply process starts. It must apply the first payload
// at once and drain the backlog without the 20 s stalls of a lease held by
// a stream that is gone. Counts answered 200, lost, duplicated and
// poisoned (every payload is valid).
func TestApplyRestartDrainsBacklog(t *testing.T) {
	host := needEmulator(t)
	t.Parallel()
	// The outbox publishes nothing again within the test: what it would
	// republish after its 2 minutes would hide a stall, not cure it.
	e := newEnv(t, host).with("OUTBOX_REDELIVER_AFTER", "10m")
	apply := e.start("apply", "STAGES", "apply")
	ingest := e.start("ingest", "STAGES", "ingest")

	db, err := sql.Open("sqlite", e.warehousePath()+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	applied := func() int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM _gatekeeper_ledger`).Scan(&n); err != nil {
			return -1 // not created yet, or busy: the caller polls again
		}
		return n
	}
	waitApplied := func(n int, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for applied() < n {
			if time.Since(start) > within {
				t.Fatalf("%d of %d payloads applied after %s", applied(), n, within)
			}
			time.Sleep(20 * time.Millisecond) // the poll's interval
		}
		return time.Since(start)
	}

	// The first apply process receives: its streams are open and in use.
	l := startLoad(func() string { return ingest.base }, 4, 50, 30*time.Second)
	l.wg.Wait()
	warm := len(l.acceptedIDs())
	if warm == 0 {
		t.Fatalf("nothing accepted before the restart: %s", l.summary())
	}
	waitApplied(warm, 60*time.Second)
	if code := apply.term(40 * time.Second); code != 0 {
		apply.dumpLog(30)
		t.Fatalf("SIGTERM: exit code %d, want 0", code)
	}

	// The backlog builds while no apply process runs.
	backlog := startLoad(func() string { return ingest.base }, 8, 3000, 30*time.Second)
	backlog.wg.Wait()
	accepted := backlog.acceptedIDs()
	if len(accepted) < 1000 {
		t.Fatalf("a backlog of %d is too small to show a stall: %s", len(accepted), backlog.summary())
	}
	for id, k := range l.acceptedIDs() {
		accepted[id] = k
	}

	started := time.Now()
	_ = e.start("apply", "STAGES", "apply")
	// Both count from the start of the process, readiness included.
	firstAfter := time.Duration(-1)
	deadline := started.Add(restartDrainWithin)
	for time.Now().Before(deadline) {
		n := applied()
		if firstAfter < 0 && n > warm {
			firstAfter = time.Since(started)
		}
		if n >= len(accepted) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the poll's interval
	}
	left := len(accepted) - applied()
	// settle counts lost and duplicated; it waits longer than the bound,
	// so that a slow drain is reported with its figures, not as a loss.
	settle(t, e.warehousePath(), accepted, settleWithin)
	drained := time.Since(started)
	first := "none within " + restartDrainWithin.String()
	if firstAfter >= 0 {
		first = firstAfter.Round(10 * time.Millisecond).String()
	}
	poisoned, err := poisonedIndex(db)
	if err != nil {
		t.Fatal(err)
	}
	record(t, "SIGTERM restart of the apply stage (emulator), a backlog of %d built while it was down (%s): "+
		"first payload applied after %s, all %s after the new process started; 0 lost, 0 duplicated of %d answered 200, %d poisoned",
		len(accepted)-warm, backlog.summary(), first, drained.Round(10*time.Millisecond),
		len(accepted), len(poisoned))
	if len(poisoned) > 0 {
		t.Errorf("POISONED: %d valid payloads", len(poisoned))
	}
	if firstAfter < 0 || firstAfter > restartFirstApplyWithin {
		t.Errorf("first payload applied after %s, want within %s of the restart", first, restartFirstApplyWithin)
	}
	if left > 0 {
		t.Errorf("%d of %d payloads not applied %s after the restart (all %s after), want all within %s: a stall the length of a lease",
			left, len(accepted), restartDrainWithin, drained.Round(10*time.Millisecond), restartDrainWithin)
	}
}
