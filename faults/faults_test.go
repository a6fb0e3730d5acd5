package faults_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// settleWithin bounds every wait for settlement. A message leased to a
// stream of a killed process comes back only when its lease runs out, or
// (the emulator loses some) when the outbox publishes it again; the
// scenarios with kills have settled in 62 to 138 s on a shared 2-core machine, so
// this leaves room for one more round of both.
const settleWithin = 270 * time.Second

// Stages run apart on the emulator: the apply process is killed five times
// and the ingest process three times under load, each restarted at once.
func TestKillStagesApart(t *testing.T) {
	host := needEmulator(t)
	t.Parallel()
	// The emulator loses some messages handed to a killed consumer; the
	// ingest stage's outbox publishes them again after 30 s.
	e := newEnv(t, host).with("OUTBOX_REDELIVER_AFTER", "30s")
	apply := e.start("apply", "STAGES", "apply")
	ingest := e.start("ingest", "STAGES", "ingest")
	var target atomic.Value
	target.Store(ingest.base)
	l := startLoad(func() string { return target.Load().(string) }, 4, 200_000, 60*time.Second)

	kills := []string{"apply", "ingest", "apply", "apply", "ingest", "apply", "ingest", "apply"}
	for _, which := range kills {
		time.Sleep(2500 * time.Millisecond) // load between kills: the schedule is the scenario
		if which == "apply" {
			apply.kill9()
			apply = e.start("apply", "STAGES", "apply")
		} else {
			ingest.kill9()
			ingest = e.start("ingest", "STAGES", "ingest")
			target.Store(ingest.base)
		}
	}
	time.Sleep(2 * time.Second) // load goes on after the last restart
	l.halt()
	accepted := l.acceptedIDs()
	if len(accepted) == 0 {
		t.Fatalf("nothing accepted: %s", l.summary())
	}
	took := settle(t, e.warehousePath(), accepted, settleWithin)
	record(t, "kill -9 apply ×5 and ingest ×3 (emulator, stages apart): %s; 0 lost, 0 duplicated of %d answered 200; settled in %s",
		l.summary(), len(accepted), took.Round(100*time.Millisecond))
}

// The whole service on the emulator, with its outbox: kill -9 three times
// and SIGTERM three times under load.
func TestKillAndStopWholeService(t *testing.T) {
	host := needEmulator(t)
	t.Parallel()
	// The emulator keeps messages it handed to a killed process's streams
	// for minutes; the outbox publishes them again after 30 s.
	e := newEnv(t, host).with("OUTBOX_REDELIVER_AFTER", "30s")
	p := e.start("service")
	var target atomic.Value
	target.Store(p.base)
	l := startLoad(func() string { return target.Load().(string) }, 4, 200_000, 60*time.Second)
	for i := range 6 {
		time.Sleep(2500 * time.Millisecond) // load between kills: the schedule is the scenario
		if i%2 == 0 {
			p.kill9()
		} else if code := p.term(40 * time.Second); code != 0 {
			p.dumpLog(30)
			t.Fatalf("SIGTERM %d: exit code %d, want 0", i/2+1, code)
		}
		p = e.start("service")
		target.Store(p.base)
	}
	time.Sleep(2 * time.Second) // load goes on after the last restart
	l.halt()
	accepted := l.acceptedIDs()
	took := settle(t, e.warehousePath(), accepted, settleWithin)
	record(t, "kill -9 ×3 and SIGTERM ×3 (emulator, whole service): %s; 0 lost, 0 duplicated of %d answered 200; settled in %s",
		l.summary(), len(accepted), took.Round(100*time.Millisecond))
}

// The default mode (embedded Pub/Sub, SQLite): kill -9 under load, then a
// SIGTERM while the warehouse is locked past SHUTDOWN_TIMEOUT. What was
// answered 200 survives both in the outbox and is applied after the restart.
func TestEmbeddedKillAndStuckShutdown(t *testing.T) {
	needFaults(t)
	t.Parallel()
	// No overdue sweep: only the republish at start may bring them back.
	e := newEnv(t, "").with("OUTBOX_REDELIVER_AFTER", "1h")
	p := e.start("service")
	var target atomic.Value
	target.Store(p.base)
	l := startLoad(func() string { return target.Load().(string) }, 4, 200_000, 60*time.Second)
	time.Sleep(3 * time.Second) // load before the kill: the schedule is the scenario
	p.kill9()
	p = e.start("service")
	target.Store(p.base)
	time.Sleep(2 * time.Second) // load goes on after the restart
	l.halt()
	afterKill := l.acceptedIDs()
	took := settle(t, e.warehousePath(), afterKill, 30*time.Second)
	record(t, "embedded, kill -9 under load: %s; 0 lost, 0 duplicated of %d answered 200; settled in %s after the restart",
		l.summary(), len(afterKill), took.Round(100*time.Millisecond))

	// The warehouse is locked by another process; SIGTERM cannot drain.
	release := warehousetest.HoldSQLiteLock(t, e.warehousePath())
	var stuck []string
	for range 30 {
		if id, _ := l.post(p.base); id != "" {
			stuck = append(stuck, id)
		}
	}
	if len(stuck) != 30 {
		t.Fatalf("only %d of 30 accepted while the warehouse is locked: %s", len(stuck), l.summary())
	}
	// /readyz names the warehouse, whose write path the lock blocks, as
	// degraded: this process runs the ingest stage too, which goes on
	// accepting while the queue buffers, so it stays ready.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := readyzBody(p.base)
		if code == 200 && strings.Contains(body, `"component":"warehouse"`) && strings.Contains(body, `"status":"degraded"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz while the warehouse is locked: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond) // the poll's interval
	}
	code := p.term(60 * time.Second)
	logText := p.logText()
	if code != 1 || !strings.Contains(logText, "wait in the outbox") ||
		strings.Contains(logText, "panic:") || strings.Contains(logText, "fatal error") {
		p.dumpLog(20)
		t.Fatalf("SIGTERM with a stuck warehouse: exit %d; want 1, a log line counting what waits in the outbox, and no panic", code)
	}
	release()
	p = e.start("service")
	all := l.acceptedIDs()
	took = settle(t, e.warehousePath(), all, 30*time.Second)
	record(t, "embedded, SIGTERM with the warehouse locked past SHUTDOWN_TIMEOUT: %d accepted during the lock, exit code %d, all applied %s after the restart; 0 lost, 0 duplicated",
		len(stuck), code, took.Round(100*time.Millisecond))
	if code := p.term(40 * time.Second); code != 0 {
		t.Errorf("final SIGTERM: exit %d", code)
	}
}

// Stages started apart, in either order, lose nothing: the ingest stage
// creates the apply subscription itself.
func TestStagesStartInEitherOrder(t *testing.T) {
	host := needEmulator(t)
	t.Parallel()
	for _, order := range [][]string{{"ingest", "apply"}, {"apply", "ingest"}} {
		t.Run(strings.Join(order, "-first-then-"), func(t *testing.T) {
			e := newEnv(t, host)
			var ingest *proc
			l := startLoad(func() string { return "" }, 0, 0, 0)
			for _, stage := range order {
				p := e.start(stage, "STAGES", stage)
				if stage == "ingest" {
					ingest = p
					for range 50 {
						l.post(ingest.base)
					}
				}
			}
			accepted := l.acceptedIDs()
			if len(accepted) != 50 {
				t.Fatalf("%d of 50 accepted: %s", len(accepted), l.summary())
			}
			took := settle(t, e.warehousePath(), accepted, settleWithin)
			record(t, "%s started first: 50 of 50 applied in %s, 0 duplicated", order[0], took.Round(100*time.Millisecond))
		})
	}
}

// The Pub/Sub emulator restarts mid-load and loses every topic: the
// service recreates them by itself, the outbox brings back what the
// emulator lost, and new payloads are applied.
func TestEmulatorRestartHeals(t *testing.T) {
	needFaults(t)
	if _, err := exec.LookPath("gcloud"); err != nil {
		t.Skip("needs gcloud's Pub/Sub emulator")
	}
	t.Parallel()
	addr := freeAddr(t)
	emu := startEmulator(t, addr)
	// No overdue sweep: what the emulator lost must come back from the
	// republish that follows recreating the subscription.
	e := newEnv(t, addr).with("RESOURCE_CHECK_INTERVAL", "1s", "OUTBOX_REDELIVER_AFTER", "1h")
	p := e.start("service")
	l := startLoad(func() string { return p.base }, 4, 200_000, 90*time.Second)
	time.Sleep(3 * time.Second) // load before the kill: the schedule is the scenario
	emu.kill9()
	downAt := time.Now()
	emu = startEmulator(t, addr)
	// No restart of gatekeeper: it must heal by itself.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _ := readyzBody(p.base); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			_, body := readyzBody(p.base)
			t.Fatalf("not ready 60s after the emulator came back: %s", body)
		}
		time.Sleep(100 * time.Millisecond) // the poll's interval
	}
	healed := time.Since(downAt)
	before := len(l.acceptedIDs())
	// Requests sent during the outage may still wait out PUBLISH_TIMEOUT;
	// new ones must then be accepted.
	deadline = time.Now().Add(30 * time.Second)
	for len(l.acceptedIDs()) < before+20 {
		if time.Now().After(deadline) {
			t.Fatalf("under 20 accepted in the 30 s after the service healed: %s", l.summary())
		}
		time.Sleep(100 * time.Millisecond) // the poll's interval
	}
	l.halt()
	accepted := l.acceptedIDs()
	took := settle(t, e.warehousePath(), accepted, 90*time.Second)
	record(t, "emulator killed and restarted mid-load (topics lost): ready again %s after the kill without a restart; %s; 0 lost, 0 duplicated of %d answered 200; settled in %s",
		healed.Round(100*time.Millisecond), l.summary(), len(accepted), took.Round(100*time.Millisecond))
	_ = emu
}

// The warehouse is locked for 30 s by another process, past the busy
// timeout: an outage. The apply stage pauses and holds the payloads instead
// of retrying them towards poison (RETRY_MAX=4 poisoned the first 30 before
// the pause existed); the gauge and the log say so; once the lock goes, it
// resumes by itself and applies every payload exactly once. Ingestion never
// stops, so the whole service stays ready.
func TestWarehouseLockedHoldsPayloads(t *testing.T) {
	host := needEmulator(t)
	t.Parallel()
	e := newEnv(t, host).with("RETRY_MAX", "4", "RETRY_INITIAL", "500ms", "RETRY_MAX_INTERVAL", "2s")
	p := e.start("service")
	l := startLoad(func() string { return "" }, 0, 0, 0)
	release := warehousetest.HoldSQLiteLock(t, e.warehousePath())
	lockedAt := time.Now()
	for range 30 {
		l.post(p.base)
	}
	if n := len(l.acceptedIDs()); n != 30 {
		t.Fatalf("%d of 30 accepted while the warehouse is locked: %s", n, l.summary())
	}
	waitMetric(t, p, "gatekeeper_apply_paused", 1, 30*time.Second)
	waitLogged(t, p, `msg="Apply paused`, 1, 10*time.Second)
	if line := logLine(p, `msg="Apply paused`); !strings.Contains(line, "locked") || !strings.Contains(line, "reason=busy") {
		t.Errorf("the pause's log line does not name the lock: %s", line)
	}
	// The whole service stays ready (its ingest stage accepts) and names
	// the pause as degraded.
	readyCode, readyBody := readyzBody(p.base)
	if readyCode != 200 || !strings.Contains(readyBody, `"component":"apply"`) || !strings.Contains(readyBody, `"status":"degraded"`) {
		t.Errorf("/readyz of the whole service while paused: %d %s; want 200 degraded naming the apply stage", readyCode, readyBody)
	}
	// More, 10 s before the lock goes.
	time.Sleep(time.Until(lockedAt.Add(20 * time.Second))) // the lock schedule is the scenario
	for range 30 {
		l.post(p.base)
	}
	if metricOf(p, "gatekeeper_apply_paused") != 1 {
		t.Errorf("gatekeeper_apply_paused is not 1 while the warehouse is still locked")
	}
	time.Sleep(time.Until(lockedAt.Add(30 * time.Second))) // the lock schedule is the scenario
	release()
	took := settle(t, e.warehousePath(), l.acceptedIDs(), 120*time.Second)
	waitMetric(t, p, "gatekeeper_apply_paused", 0, 30*time.Second)
	poisoned := poisonedCount(t, e, p)
	if poisoned != 0 {
		t.Fatalf("POISONED: %d valid payloads poisoned by a lock", poisoned)
	}
	if n := strings.Count(p.logText(), `msg="Apply paused`); n != 1 {
		t.Errorf("the pause was logged %d times, want once", n)
	}
	record(t, "warehouse locked 30 s (RETRY_MAX=4): %s; 60 answered 200 during the lock, all held (gatekeeper_apply_paused 1, /readyz %d for the whole service), 0 poisoned, 0 lost, 0 duplicated; all applied %s after the lock went",
		l.summary(), readyCode, took.Round(100*time.Millisecond))
}

// waitLogged waits until p's log holds at least n lines with text.
func waitLogged(t *testing.T, p *proc, text string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for strings.Count(p.logText(), text) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d log lines with %s after %s, want at least %d", strings.Count(p.logText(), text), text, within, n)
		}
		time.Sleep(time.Second) // the poll's interval
	}
}

// startEmulator starts gcloud's Pub/Sub emulator on addr in its own
// process group and waits until it listens.
func startEmulator(t *testing.T, addr string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "emulator.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("gcloud", "beta", "emulators", "pubsub", "start", "--host-port="+addr, "--project=test")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: "emulator", cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			p.dumpLog(30)
			t.Fatalf("emulator did not listen on %s within 90s", addr)
		}
		time.Sleep(200 * time.Millisecond) // the poll's interval
	}
}

// poisonedIndex reads the poison index of a SQLite warehouse: how many
// poisoned events each payload has.
func poisonedIndex(db *sql.DB) (map[string]int, error) {
	rows, err := db.Query(`SELECT payload_id, COUNT(*) FROM _gatekeeper_events WHERE kind = 'poisoned' GROUP BY payload_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		counts[id] = n
	}
	return counts, rows.Err()
}

// The process is killed (-9) three times while it indexes a stream of
// poisoned payloads, each time restarted at once: every payload answered
// 200 ends in the poison index once, none is lost between the poison topic
// and the index, and none is indexed twice. Run on the embedded Pub/Sub,
// where a kill loses the topics and the outbox must bring the poisoned
// payloads back, and on the emulator, where the indexer acks a poison
// message only after writing it.
func TestKillWhileIndexingPoison(t *testing.T) {
	for _, mode := range []string{"embedded", "emulator"} {
		t.Run(mode, func(t *testing.T) {
			host := ""
			if mode == "emulator" {
				host = needEmulator(t)
			} else {
				needFaults(t)
			}
			t.Parallel()
			e := newEnv(t, host).with("OUTBOX_REDELIVER_AFTER", "30s")
			p := e.start("service")
			var base atomic.Value
			base.Store(p.base)
			// Each deletes from a table that never exists: poisoned at once.
			var accepted sync.Map
			stop := make(chan struct{})
			var posters sync.WaitGroup
			for w := range 4 {
				posters.Go(func() {
					client := &http.Client{Timeout: 10 * time.Second}
					for i := 0; i < 2000; i++ {
						select {
						case <-stop:
							return
						default:
						}
						body := fmt.Sprintf(`{"activities":[{"operation":"delete","table":"nowhere","value_to_delete":{"col_names":["k"],"col_types":["TEXT"],"col_values":["%d-%d"]}}]}`, w, i)
						resp, err := client.Post(base.Load().(string)+"/api/activities", "application/json", strings.NewReader(body))
						if err != nil {
							time.Sleep(50 * time.Millisecond) // the process is down; do not spin
							continue
						}
						var out struct {
							ID string `json:"id"`
						}
						_ = json.NewDecoder(resp.Body).Decode(&out)
						resp.Body.Close()
						if resp.StatusCode == 200 && out.ID != "" {
							accepted.Store(out.ID, true)
						}
					}
				})
			}
			db, err := sql.Open("sqlite", e.warehousePath()+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for kill := range 3 {
				// Kill while the indexer is behind the stream: some indexed,
				// more on their way.
				deadline := time.Now().Add(60 * time.Second)
				for {
					counts, _ := poisonedIndex(db)
					if len(counts) >= 200*(kill+1) || time.Now().After(deadline) {
						break
					}
					time.Sleep(20 * time.Millisecond) // the poll's interval
				}
				p.kill9()
				p = e.start("service")
				base.Store(p.base)
			}
			time.Sleep(2 * time.Second) // load goes on after the last restart
			close(stop)
			posters.Wait()

			want := map[string]bool{}
			accepted.Range(func(k, _ any) bool { want[k.(string)] = true; return true })
			if len(want) == 0 {
				t.Fatal("nothing accepted")
			}
			started := time.Now()
			var missing []string
			var counts map[string]int
			for {
				counts, err = poisonedIndex(db)
				missing = missing[:0]
				for id := range want {
					if counts[id] == 0 {
						missing = append(missing, id)
					}
				}
				if err == nil && len(missing) == 0 {
					break
				}
				if time.Since(started) > settleWithin {
					t.Fatalf("LOST: %d of %d payloads answered 200 are not in the poison index after %s (err %v), e.g. %v",
						len(missing), len(want), settleWithin, err, missing[:min(5, len(missing))])
				}
				time.Sleep(500 * time.Millisecond) // the poll's interval
			}
			twice := 0
			for _, n := range counts {
				if n > 1 {
					twice++
				}
			}
			if twice > 0 {
				t.Fatalf("DUPLICATED: %d payloads indexed as poisoned more than once", twice)
			}
			if applied, err := ledgerIDs(db); err != nil || len(applied) != 0 {
				t.Fatalf("ledger holds %d payloads (err %v); nothing here can be applied", len(applied), err)
			}
			record(t, "kill -9 ×3 while indexing poisoned payloads (%s): %d answered 200, all in the poison index once after %s; 0 lost, 0 indexed twice",
				mode, len(want), time.Since(started).Round(100*time.Millisecond))
		})
	}
}
