package bqsim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
)

// Each test shows one rule: a job that breaks it fails as BigQuery
// documents, and the violation is counted. Latency is fixed (p99 =
// median) and the clock is manual, so the tests choose the interleaving.

var schema = bigquery.Schema{
	{Name: "a", Type: bigquery.IntegerFieldType},
	{Name: "b", Type: bigquery.StringFieldType},
	{Name: "c", Type: bigquery.StringFieldType},
	{Name: "d", Type: bigquery.StringFieldType},
}

type harness struct {
	t     *testing.T
	sim   *Sim
	clock *ManualClock
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	clock := NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	cfg.Clock = clock
	if cfg.Latency == 0 {
		cfg.Latency = time.Second
	}
	cfg.LatencyP99 = cfg.Latency
	sim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"t", "u", ledgerName} {
		if _, err := sim.CreateTable(name, schema, nil); err != nil {
			t.Fatal(err)
		}
	}
	return &harness{t: t, sim: sim, clock: clock}
}

func insertRows(table string, values ...string) Statement {
	st := Statement{Table: table, Insert: true}
	for _, v := range values {
		st.Rows = append(st.Rows, Row{"a": v})
	}
	return st
}

func deleteWhere(table string, values ...string) Statement {
	st := Statement{Table: table}
	for i, v := range values {
		st.Where = append(st.Where, Predicate{Tag: i, Conds: []Cond{{Column: "a", Value: v}}})
	}
	return st
}

var jobSeq int

// submit starts a job and waits until it runs (its latency timer is set)
// or has ended.
func (h *harness) submit(stmts ...Statement) *Handle {
	h.t.Helper()
	jobSeq++
	before := h.clock.Waiters()
	hd, err := h.sim.Submit(context.Background(), Job{ID: fmt.Sprintf("job%d", jobSeq), Statements: stmts})
	if err != nil {
		h.t.Fatal(err)
	}
	h.waitFor(func() bool { return hd.Done() || h.clock.Waiters() > before || h.queued(hd) })
	return hd
}

func (h *harness) queued(hd *Handle) bool {
	h.sim.mu.Lock()
	defer h.sim.mu.Unlock()
	return hd.st.queued
}

func (h *harness) waitFor(cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond) // polling, not an interleaving
	}
}

// advance moves the clock and waits for the jobs due to end.
func (h *harness) advance(d time.Duration, due ...*Handle) {
	h.t.Helper()
	h.clock.Advance(d)
	for _, hd := range due {
		h.waitFor(hd.Done)
	}
}

func wait(t *testing.T, hd *Handle) (Result, error) {
	t.Helper()
	return hd.Wait(context.Background())
}

func values(rows []Row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprint(r["a"]))
	}
	slices.Sort(out)
	return out
}

// Transactions use snapshot isolation: a job reads the tables as they
// were when it started, so it does not delete a row that a transaction
// committed after its start.
// https://cloud.google.com/bigquery/docs/transactions#transaction_concurrency
func TestSnapshotIsolation(t *testing.T) {
	h := newHarness(t, Config{})
	inserter := h.submit(insertRows("t", "2"))
	h.advance(500 * time.Millisecond)
	deleter := h.submit(deleteWhere("t", "2"))
	h.advance(500*time.Millisecond, inserter)
	h.advance(500*time.Millisecond, deleter)
	res, err := wait(t, deleter)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted[0] != 0 {
		t.Errorf("deleted %d rows committed after the job's snapshot, want 0", res.Deleted[0])
	}
	if got := values(h.sim.Rows("t")); !slices.Equal(got, []string{"2"}) {
		t.Errorf("rows %v, want [2]", got)
	}
	// A job started after the commit sees the row.
	later := h.submit(deleteWhere("t", "2"))
	h.advance(time.Second, later)
	if res, err := wait(t, later); err != nil || res.Deleted[0] != 1 {
		t.Errorf("later delete: %v rows, err %v; want 1 row", res.Deleted[0], err)
	}
}

// "If a transaction mutates (updates or deletes) rows in a table, then
// other transactions or DML statements that mutate rows in the same table
// cannot run concurrently. Conflicting transactions are cancelled."
// The message is "Transaction is aborted due to concurrent update".
// https://cloud.google.com/bigquery/docs/transactions#transaction_concurrency
func TestConflictingMutatingTransactionIsAborted(t *testing.T) {
	h := newHarness(t, Config{})
	first := h.submit(deleteWhere("t", "1"))
	h.advance(500 * time.Millisecond)
	second := h.submit(insertRows("t", "9"), deleteWhere("t", "2"))
	// A mutating transaction on another table does not conflict.
	other := h.submit(deleteWhere("u", "1"))
	h.advance(500*time.Millisecond, first)
	h.advance(500*time.Millisecond, second, other)
	if _, err := wait(t, first); err != nil {
		t.Fatalf("first: %v", err)
	}
	_, err := wait(t, second)
	var se *Error
	if !errors.As(err, &se) || !strings.Contains(se.Message, "Transaction is aborted due to concurrent update") {
		t.Fatalf("second: %v, want aborted due to concurrent update", err)
	}
	if _, err := wait(t, other); err != nil {
		t.Errorf("other table: %v", err)
	}
	if got := h.sim.Rows("t"); len(got) != 0 {
		t.Errorf("the aborted transaction's insert committed: %v", got)
	}
	if st := h.sim.Stats(); st.Aborted != 1 {
		t.Errorf("aborted %d, want 1", st.Aborted)
	}
}

// Transactions that only insert do not conflict: two of them writing the
// same key commit side by side. This is the race a ledger INSERT alone
// cannot close.
// https://cloud.google.com/bigquery/docs/transactions#transaction_concurrency
// https://cloud.google.com/bigquery/docs/data-manipulation-language#dml_statement_conflicts
func TestInsertOnlyTransactionsCommitSideBySide(t *testing.T) {
	h := newHarness(t, Config{})
	ledger := func() Statement {
		st := insertRows(ledgerName, "p1")
		st.Rows = []Row{{"payload_id": "p1"}}
		st.Unique = "payload_id"
		st.ErrorMessage = func(v any) string { return fmt.Sprintf("payload %v is already in the ledger", v) }
		return st
	}
	first := h.submit(ledger(), insertRows("t", "1"))
	second := h.submit(ledger(), insertRows("t", "1"))
	h.advance(time.Second, first, second)
	for _, hd := range []*Handle{first, second} {
		if _, err := wait(t, hd); err != nil {
			t.Fatalf("insert-only transaction: %v", err)
		}
	}
	if got := h.sim.Lookup(ledgerName, "payload_id", []any{"p1"}); len(got) != 2 {
		t.Errorf("ledger holds p1 %d times, want 2 (both committed)", len(got))
	}
	// Once committed, the ledger's check refuses it.
	third := h.submit(ledger())
	h.advance(time.Second, third)
	if _, err := wait(t, third); err == nil || !strings.Contains(err.Error(), "already in the ledger") {
		t.Errorf("third: %v, want already in the ledger", err)
	}
	// An UPDATE of the ledger rows, even one that changes nothing, makes
	// each a mutating transaction: of two that overlap, the later to
	// commit is aborted.
	fence := Statement{Table: ledgerName, Update: true, Where: []Predicate{{Conds: []Cond{{Column: "payload_id", Value: "p2"}}}}}
	p2 := func() Statement {
		st := ledger()
		st.Rows = []Row{{"payload_id": "p2"}}
		return st
	}
	fourth := h.submit(p2(), fence, insertRows("t", "2"))
	fifth := h.submit(p2(), fence, insertRows("t", "2"))
	h.advance(time.Second, fourth, fifth)
	_, err4 := wait(t, fourth)
	_, err5 := wait(t, fifth)
	if (err4 == nil) == (err5 == nil) || !strings.Contains(fmt.Sprint(err4, err5), "Transaction is aborted due to concurrent update") {
		t.Errorf("fenced: %v and %v, want one committed and one aborted", err4, err5)
	}
	if got := h.sim.Lookup(ledgerName, "payload_id", []any{"p2"}); len(got) != 1 {
		t.Errorf("ledger holds p2 %d times, want 1", len(got))
	}
}

// "Your project can run up to 25 DML statements every 10 seconds for each
// table. Both INSERT and mutating DML statements contribute to this
// limit." Beyond it: "Exceeded rate limits: too many table dml insert
// operations for this table".
// https://cloud.google.com/bigquery/quotas#data-manipulation-language-statements
func TestDMLRate(t *testing.T) {
	h := newHarness(t, Config{})
	var stmts []Statement
	for range 20 {
		stmts = append(stmts, insertRows("t", "1"))
	}
	ok := h.submit(stmts...)
	h.advance(time.Second, ok)
	if _, err := wait(t, ok); err != nil {
		t.Fatal(err)
	}
	over := h.submit(insertRows("t", "2"), insertRows("t", "3"), insertRows("t", "4"), deleteWhere("t", "5"), insertRows("t", "6"), insertRows("t", "7"))
	_, err := wait(t, over)
	var se *Error
	if !errors.As(err, &se) || se.Reason != "rateLimitExceeded" || !strings.Contains(se.Message, "Exceeded rate limits: too many table dml insert operations for this table") {
		t.Fatalf("26th statement within 10 s: %v, want rateLimitExceeded", err)
	}
	if v := h.sim.Stats().Violations[RuleDMLRate]; v != 1 {
		t.Errorf("violations %d, want 1", v)
	}
	// Another table has its own budget, and 10 s later this one has its
	// budget back.
	other := h.submit(insertRows("u", "1"))
	h.advance(9*time.Second, other)
	again := h.submit(stmts[:20]...)
	h.advance(time.Second, again)
	if _, err := wait(t, again); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

// "BigQuery runs up to two concurrent mutating DML statements (UPDATE,
// DELETE, and MERGE) for each table. Additional mutating DML statements
// for a table are queued." "A table can have up to 20 mutating DML
// statements in the queue waiting to run. If you submit additional
// mutating DML statements for the table, then those statements fail."
// https://cloud.google.com/bigquery/quotas#data-manipulation-language-statements
func TestMutatingQueue(t *testing.T) {
	h := newHarness(t, Config{DMLRate: 1000})
	var jobs []*Handle
	for i := range 22 {
		jobs = append(jobs, h.submit(deleteWhere("t", fmt.Sprint(i))))
	}
	h.sim.mu.Lock()
	running, queued := h.sim.tables["t"].running, h.sim.tables["t"].queued
	h.sim.mu.Unlock()
	if running != 2 || queued != 20 {
		t.Fatalf("running %d, queued %d; want 2 and 20", running, queued)
	}
	over := h.submit(deleteWhere("t", "x"))
	_, err := wait(t, over)
	if err == nil || !strings.Contains(err.Error(), "Too many DML statements outstanding") {
		t.Fatalf("23rd mutating job: %v, want Too many DML statements outstanding", err)
	}
	if v := h.sim.Stats().Violations[RuleQueue]; v != 1 {
		t.Errorf("violations %d, want 1", v)
	}
	// Inserts do not queue.
	ins := h.submit(insertRows("t", "i"))
	h.advance(time.Second, ins)
	if _, err := wait(t, ins); err != nil {
		t.Errorf("insert beside the queue: %v", err)
	}
	// The queue drains, two at a time; each job takes its snapshot when it
	// leaves the queue. The first two ended with the insert.
	h.waitFor(jobs[0].Done)
	h.waitFor(jobs[1].Done)
	jobs = jobs[2:]
	for len(jobs) > 0 {
		n := min(2, len(jobs))
		h.waitFor(func() bool { return h.clock.Waiters() >= n })
		h.advance(time.Second, jobs[:n]...)
		jobs = jobs[n:]
	}
	if st := h.sim.Stats(); st.MaxQueued != 20 {
		t.Errorf("max queued %d, want 20", st.MaxQueued)
	}
}

// Query jobs: "Maximum query length 1,024K characters", "Maximum number of
// query parameters 10,000", "Maximum request size 10 MB"; transactions:
// "A transaction can modify data in at most 100 tables".
// https://cloud.google.com/bigquery/quotas#query_jobs
// https://cloud.google.com/bigquery/docs/transactions#limitations
func TestSizeLimits(t *testing.T) {
	h := newHarness(t, Config{})
	many := make([]Statement, 0, 100)
	for i := range 100 {
		name := fmt.Sprintf("m%d", i)
		if _, err := h.sim.CreateTable(name, schema, nil); err != nil {
			t.Fatal(err)
		}
		many = append(many, insertRows(name, "1"))
	}
	for _, c := range []struct {
		rule string
		job  Job
		want string
	}{
		{RuleQueryChars, Job{Chars: 1024*1024 + 1}, "The query is too large. The maximum standard SQL query length is 1024.00K characters"},
		{RuleParams, Job{Params: 10_001}, "Too many query parameters"},
		{RuleRequestSize, Job{RequestBytes: 10<<20 + 1}, "Request payload size exceeds the limit: 10485760 bytes."},
		{RuleTables, Job{Statements: many, TempTables: 1}, "a transaction can modify at most 100 tables"},
	} {
		c.job.ID = "size-" + c.rule
		hd, err := h.sim.Submit(context.Background(), c.job)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wait(t, hd); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.rule, err, c.want)
		}
		if v := h.sim.Stats().Violations[c.rule]; v != 1 {
			t.Errorf("%s: violations %d, want 1", c.rule, v)
		}
	}
	// At the limits, a job runs.
	hd := h.submit(many[:99]...)
	h.advance(time.Second, hd)
	if _, err := wait(t, hd); err != nil {
		t.Errorf("99 tables and a temporary one: %v", err)
	}
}

// Job latency: log-normal with the configured median and 99th percentile
// (2 s and 5 s by default). Not a documented rule: a model of what jobs
// of this size take.
func TestLatencyDistribution(t *testing.T) {
	sim, err := New(Config{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	draws := make([]time.Duration, 20_000)
	for i := range draws {
		draws[i] = sim.latency()
	}
	slices.Sort(draws)
	median, p99 := draws[len(draws)/2], draws[len(draws)*99/100]
	if median < 1900*time.Millisecond || median > 2100*time.Millisecond {
		t.Errorf("median %s, want about 2s", median)
	}
	if p99 < 4500*time.Millisecond || p99 > 5500*time.Millisecond {
		t.Errorf("p99 %s, want about 5s", p99)
	}
}

// A job runs on BigQuery, not in its submitter: the submitter going away
// (its context cancelled, its process killed) leaves the job running to
// its end; only jobs.cancel stops it.
// https://cloud.google.com/bigquery/docs/managing-jobs#cancel_jobs
func TestJobOutlivesSubmitter(t *testing.T) {
	h := newHarness(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	jobSeq++
	hd, err := h.sim.Submit(ctx, Job{ID: "orphan", Statements: []Statement{insertRows("t", "1")}})
	if err != nil {
		t.Fatal(err)
	}
	h.waitFor(func() bool { return h.clock.Waiters() == 1 })
	cancel()
	if _, err := hd.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with the submitter's context: %v", err)
	}
	h.advance(time.Second, hd)
	if got := values(h.sim.Rows("t")); !slices.Equal(got, []string{"1"}) {
		t.Errorf("rows %v: the job did not commit after its submitter went", got)
	}
	// Another process finds it by id.
	again, err := h.sim.Attach("orphan")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wait(t, again); err != nil {
		t.Error(err)
	}
	if _, err := h.sim.Submit(context.Background(), Job{ID: "orphan"}); err == nil || !strings.Contains(err.Error(), "Already Exists: Job") {
		t.Errorf("resubmitting the id: %v, want Already Exists", err)
	}
}

// On-demand DML bills the bytes it scans: "DELETE ... the sum of bytes
// processed for all the columns referenced in the table scanned", less
// what clustering prunes, and at least 10 MB per table referenced.
// https://cloud.google.com/bigquery/docs/data-manipulation-language#on-demand_query_size_calculation
// https://cloud.google.com/bigquery/docs/clustered-tables#block-pruning
// https://cloud.google.com/bigquery/pricing#on_demand_pricing
func TestBytesBilled(t *testing.T) {
	h := newHarness(t, Config{TableBytes: 1 << 30, BlockBytes: 16 << 20})
	if _, err := h.sim.CreateTable("clustered", schema, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	twoColumns := Statement{Table: "t", Where: []Predicate{{Conds: []Cond{{Column: "a", Value: "1"}, {Column: "b", Value: "x"}}}}}
	clustered := deleteWhere("clustered", "1", "2", "3")
	insertOnly := insertRows("u", "1")
	for _, c := range []struct {
		name string
		st   Statement
		want int64
	}{
		{"DELETE referencing 2 of 4 columns of a 1 GB table", twoColumns, 1 << 29},
		{"DELETE of 3 clustering values", clustered, 3 * 16 << 20},
		{"INSERT VALUES", insertOnly, 0},
	} {
		hd := h.submit(c.st)
		h.advance(time.Second, hd)
		res, err := wait(t, hd)
		if err != nil {
			t.Fatal(err)
		}
		if res.BilledBytes != c.want {
			t.Errorf("%s: billed %d, want %d", c.name, res.BilledBytes, c.want)
		}
	}
	small := newHarness(t, Config{TableBytes: 1 << 20})
	hd := small.submit(deleteWhere("t", "1"))
	small.advance(time.Second, hd)
	if res, _ := wait(t, hd); res.BilledBytes != MinBilledBytes {
		t.Errorf("small table: billed %d, want the 10 MB minimum", res.BilledBytes)
	}
}
