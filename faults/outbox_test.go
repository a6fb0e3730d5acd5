package faults_test

import (
	"database/sql"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// The outbox is damaged or lost while payloads answered 200 wait in it:
// the service never starts silently without them. It either saves every
// entry still readable (gatekeeper outbox salvage, then a start that
// applies each saved payload exactly once), or refuses to start with a
// message that says what to do.
//
// To make payloads wait: the warehouse is locked by another process while
// they are posted, then the service gets SIGTERM and cannot drain. The
// retry budget is large, so nothing is poisoned while the lock holds,
// whatever the apply stage does with a locked warehouse.
const stuckPayloads = 300

type outboxScene struct {
	e *env
	l *load
	// before were applied before the lock; stuck wait in the outbox.
	before, stuck map[string]string
}

func newOutboxScene(t *testing.T) *outboxScene {
	t.Helper()
	needFaults(t)
	e := newEnv(t, "").with("OUTBOX_REDELIVER_AFTER", "1h", "RETRY_MAX", "1000", "SHUTDOWN_TIMEOUT", "2s")
	p := e.start("service")
	l := startLoad(func() string { return "" }, 0, 0, 0)
	for range 20 {
		l.post(p.base)
	}
	before := l.acceptedIDs()
	if len(before) != 20 {
		t.Fatalf("%d of 20 accepted before the lock: %s", len(before), l.summary())
	}
	settle(t, e.warehousePath(), before, 30*time.Second)

	release := warehousetest.HoldSQLiteLock(t, e.warehousePath())
	for range stuckPayloads {
		l.post(p.base)
	}
	stuck := map[string]string{}
	for id, k := range l.acceptedIDs() {
		if _, ok := before[id]; !ok {
			stuck[id] = k
		}
	}
	if len(stuck) != stuckPayloads {
		t.Fatalf("%d of %d accepted while the warehouse is locked: %s", len(stuck), stuckPayloads, l.summary())
	}
	if code := p.term(60 * time.Second); code == 0 {
		p.dumpLog(20)
		t.Fatalf("SIGTERM with the warehouse locked exited 0; want 1: the payloads wait in the outbox")
	}
	release()
	outbox := e.vars["OUTBOX_PATH"]
	if _, err := os.Stat(outbox + "-wal"); err == nil {
		t.Fatalf("the stopped service left %s-wal: the damage would miss what is in it", outbox)
	}
	if n := len(outboxIDs(t, outbox)); n != stuckPayloads {
		t.Fatalf("the outbox holds %d entries after the stop, want the %d stuck", n, stuckPayloads)
	}
	return &outboxScene{e: e, l: l, before: before, stuck: stuck}
}

// outboxIDs lists the ids of the entries in an outbox file.
func outboxIDs(t *testing.T, path string) map[string]bool {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id FROM outbox`)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	return ids
}

// startRefused runs `gatekeeper serve` expecting a refusal: the process
// must exit, not 0, without /readyz ever answering 200. It returns the log.
func (e *env) startRefused(name string, kv ...string) string {
	e.t.Helper()
	p := e.startNoWait(name, kv...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			if code := p.cmd.ProcessState.ExitCode(); code == 0 {
				p.dumpLog(20)
				e.t.Fatalf("%s exited 0; want a refusal to start", name)
			}
			return p.logText()
		default:
		}
		if code, _ := readyzBody(p.base); code == 200 {
			p.dumpLog(30)
			e.t.Fatalf("SILENT START: %s became ready without the outbox it had", name)
		}
		if time.Now().After(deadline) {
			p.dumpLog(30)
			e.t.Fatalf("%s neither refused nor became ready within 60 s", name)
		}
		time.Sleep(50 * time.Millisecond) // the poll's interval
	}
}

// refusal is the "Cannot start" line of a refused start's log.
func refusal(t *testing.T, log string) string {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `msg="Cannot start"`) {
			return line
		}
	}
	t.Fatalf("no \"Cannot start\" line in the log:\n%s", log)
	return ""
}

func wantAll(t *testing.T, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%q does not say %q", text, w)
		}
	}
}

// The outbox file is deleted (a container recreated without its volume):
// the service refuses to start, naming the file, what the warehouse
// records and the two ways on; started with OUTBOX_ACCEPT_LOSS it starts,
// logs and counts the loss, and applies nothing twice.
func TestOutboxDeletedAtRestartRefusesToStart(t *testing.T) {
	t.Parallel()
	s := newOutboxScene(t)
	path := s.e.vars["OUTBOX_PATH"]
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(path + suffix)
	}
	line := refusal(t, s.e.startRefused("deleted"))
	wantAll(t, line, "refusing to start: the outbox "+path+" is missing", "the warehouse records that this process kept an outbox there",
		"restore the file to "+path, "--outbox-accept-loss (OUTBOX_ACCEPT_LOSS=true)")
	if _, err := os.Stat(path); err == nil {
		t.Errorf("the refused start created %s", path)
	}
	// Refused again: nothing changed.
	s.e.startRefused("deleted-again")

	p := s.e.start("accept-loss", "OUTBOX_ACCEPT_LOSS", "true")
	log := p.logText()
	if !regexp.MustCompile(`level=WARN msg="Outbox loss accepted[^\n]*identity_lost=[0-9a-f]{16}`).MatchString(log) {
		t.Errorf("no WARN naming the identity lost:\n%s", log)
	}
	metrics := scrapeText(t, p.base)
	if !strings.Contains(metrics, "gatekeeper_outbox_loss_accepted_total 1") {
		t.Errorf("gatekeeper_outbox_loss_accepted_total is not 1")
	}
	settle(t, s.e.warehousePath(), s.before, 10*time.Second)
	applied := appliedOf(t, s.e.warehousePath(), s.stuck)
	if code := p.term(40 * time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
	// The record took the new file: the next start needs no flag.
	s.e.start("after")
	record(t, "outbox deleted at restart, %d answered 200 waiting in it: refused to start (%s); with OUTBOX_ACCEPT_LOSS=true it started, "+
		"logged and counted the loss: %d lost as accepted, %d applied, 0 duplicated",
		len(s.stuck), excerpt(line), len(s.stuck)-applied, applied)
}

// The outbox file is cut in half, or has two pages zeroed: the service
// refuses to start, naming the salvage command; the salvage saves every
// entry it can read and says how many it could not; the next start
// applies each saved payload exactly once.
func TestOutboxTruncatedAtRestartIsSalvaged(t *testing.T) {
	t.Parallel()
	s := newOutboxScene(t)
	path := s.e.vars["OUTBOX_PATH"]
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, info.Size()/2/4096*4096); err != nil {
		t.Fatal(err)
	}
	s.salvageAndSettle(t, "truncated to half its size")
}

func TestOutboxPagesZeroedAtRestartIsSalvaged(t *testing.T) {
	t.Parallel()
	s := newOutboxScene(t)
	path := s.e.vars["OUTBOX_PATH"]
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	middle := info.Size() / 2 / 4096 * 4096
	if _, err := f.WriteAt(make([]byte, 2*4096), middle); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s.salvageAndSettle(t, "two pages zeroed in its middle")
}

func (s *outboxScene) salvageAndSettle(t *testing.T, damage string) {
	t.Helper()
	path := s.e.vars["OUTBOX_PATH"]
	line := refusal(t, s.e.startRefused("damaged"))
	wantAll(t, line, "the outbox "+path+" is damaged", "gatekeeper outbox salvage --outbox-path "+path)

	out, errOut, err := s.e.runTool("outbox", "salvage")
	t.Logf("gatekeeper outbox salvage:\n%s%s", out, errOut)
	m := regexp.MustCompile(`entries saved:   (\d+) .*\n  could not read:  (\d+|unknown[^\n]*)\n`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "(kept)") {
		t.Fatalf("salvage report without counts or identity kept (exit %v)", err)
	}
	saved, _ := strconv.Atoi(m[1])
	savedIDs := outboxIDs(t, path)
	if len(savedIDs) != saved {
		t.Errorf("the report says %d saved, the new outbox holds %d", saved, len(savedIDs))
	}
	lost := 0
	want := map[string]string{}
	for id, k := range s.before {
		want[id] = k
	}
	for id, k := range s.stuck {
		if savedIDs[id] {
			want[id] = k
		} else {
			lost++
		}
	}
	if n, err := strconv.Atoi(m[2]); err == nil && n != lost {
		t.Errorf("the report says %d could not be read; %d answered 200 are not in the salvaged outbox", n, lost)
	}
	if b := regexp.MustCompile(`at least (\d+) and at most (\d+)`).FindStringSubmatch(m[2]); b != nil {
		least, _ := strconv.Atoi(b[1])
		most, _ := strconv.Atoi(b[2])
		if lost < least || lost > most {
			t.Errorf("the report bounds the loss to %d..%d; %d answered 200 are not in the salvaged outbox", least, most, lost)
		}
	}
	if err == nil && lost > 0 {
		t.Errorf("salvage exited 0 although %d entries were lost", lost)
	}

	p := s.e.start("salvaged")
	took := settle(t, s.e.warehousePath(), want, 60*time.Second)
	if applied := appliedOf(t, s.e.warehousePath(), s.stuck); applied != saved {
		t.Errorf("%d of the stuck payloads applied, want the %d saved", applied, saved)
	}
	if code := p.term(40 * time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
	record(t, "outbox %s at restart, %d answered 200 waiting in it: refused to start naming `gatekeeper outbox salvage`; the salvage saved %d, "+
		"could not read %s; after it every saved payload applied once in %s: %d lost (unreadable), 0 duplicated",
		damage, len(s.stuck), saved, m[2], took.Round(100*time.Millisecond), lost)
}

// appliedOf counts the payloads of ids the ledger holds.
func appliedOf(t *testing.T, warehousePath string, ids map[string]string) int {
	t.Helper()
	db, err := sql.Open("sqlite", warehousePath+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	inLedger, err := ledgerIDs(db)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for id := range ids {
		if inLedger[id] {
			n++
		}
	}
	return n
}

func scrapeText(t *testing.T, base string) string {
	t.Helper()
	text, err := scrape(base)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// excerpt is the refusal's message, from its error.
func excerpt(line string) string {
	if _, msg, ok := strings.Cut(line, "error="); ok {
		return strings.Trim(msg, `"`)
	}
	return line
}
