// Package bqsim simulates the rules BigQuery imposes on DML jobs, so that
// the apply stage can be measured at production scale on one machine. The
// goccy emulator runs BigQuery's SQL but enforces none of its limits; this
// simulator runs no SQL but enforces the limits, as documented:
//
//   - snapshot isolation per job, and first-committer-wins between
//     transactions that mutate (DELETE) the same table: the later one is
//     aborted ("Transaction is aborted due to concurrent update");
//     transactions that only insert commit side by side;
//   - at most 25 DML statements per table every 10 seconds, INSERT and
//     mutating statements counted together;
//   - at most 2 mutating jobs running per table, 20 more queued, and
//     beyond that a failure ("Too many DML statements outstanding");
//   - 1,024K characters of SQL, 10,000 query parameters, 10 MB per
//     request, 100 tables modified per transaction;
//   - job latency drawn from a log-normal distribution (default median
//     2 s, 99th percentile 5 s);
//   - a job, once submitted, runs to its end whatever becomes of its
//     submitter;
//   - bytes billed per statement from a table-size model: the referenced
//     columns' share of the table, less what clustering prunes, at least
//     10 MB per table referenced.
//
// The adapter describes each job to the simulator as a Job: its
// statements with their rows and predicates, rather than SQL text
// (warehouse/bigquery's simBackend builds it from the job's plan).
package bqsim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
)

// BigQuery's documented limits (docs.cloud.google.com/bigquery/quotas).
const (
	DefaultDMLRate            = 25
	DefaultDMLWindow          = 10 * time.Second
	DefaultMaxRunningMutating = 2
	DefaultMaxQueuedMutating  = 20
	DefaultMaxQueryChars      = 1024 * 1024
	DefaultMaxParams          = 10_000
	DefaultMaxRequestBytes    = 10 << 20
	DefaultMaxTables          = 100
	// MinBilledBytes is the least on-demand pricing bills per table a
	// query references.
	MinBilledBytes = 10 << 20
)

// Config configures a Sim. The zero value is BigQuery as documented, with
// 2 s median job latency.
type Config struct {
	// Clock is the simulator's time. Optional, default the real clock.
	Clock Clock
	// Latency is the median job latency. Optional, default 2s; negative
	// means none.
	Latency time.Duration
	// LatencyP99 is the 99th percentile. Optional, default 2.5 × Latency.
	LatencyP99 time.Duration
	// Seed seeds the latency draws. Optional.
	Seed uint64

	DMLRate            int
	DMLWindow          time.Duration
	MaxRunningMutating int
	MaxQueuedMutating  int
	MaxQueryChars      int
	MaxParams          int
	MaxRequestBytes    int
	MaxTables          int

	// TableBytes is the modelled size of every payload table: the data it
	// held before the run. Optional, default 1 GB.
	TableBytes int64
	// LedgerBytes is the modelled size of the ledger. Optional, default
	// TableBytes / 10.
	LedgerBytes int64
	// BlockBytes is how much a lookup of one clustering value reads in a
	// clustered table. Optional, default 16 MB.
	BlockBytes int64
}

func (c *Config) setDefaults() {
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Latency == 0 {
		c.Latency = 2 * time.Second
	}
	if c.Latency < 0 {
		c.Latency = 0
	}
	if c.LatencyP99 == 0 {
		c.LatencyP99 = c.Latency * 5 / 2
	}
	setDefault(&c.DMLRate, DefaultDMLRate)
	if c.DMLWindow == 0 {
		c.DMLWindow = DefaultDMLWindow
	}
	setDefault(&c.MaxRunningMutating, DefaultMaxRunningMutating)
	setDefault(&c.MaxQueuedMutating, DefaultMaxQueuedMutating)
	setDefault(&c.MaxQueryChars, DefaultMaxQueryChars)
	setDefault(&c.MaxParams, DefaultMaxParams)
	setDefault(&c.MaxRequestBytes, DefaultMaxRequestBytes)
	setDefault(&c.MaxTables, DefaultMaxTables)
	if c.TableBytes == 0 {
		c.TableBytes = 1 << 30
	}
	if c.LedgerBytes == 0 {
		c.LedgerBytes = c.TableBytes / 10
	}
	if c.BlockBytes == 0 {
		c.BlockBytes = 16 << 20
	}
}

func setDefault(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.LatencyP99 < c.Latency {
		errs = append(errs, fmt.Errorf("LatencyP99 (%s) must be at least Latency (%s)", c.LatencyP99, c.Latency))
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"DMLRate", c.DMLRate}, {"MaxRunningMutating", c.MaxRunningMutating}, {"MaxQueuedMutating", c.MaxQueuedMutating},
		{"MaxQueryChars", c.MaxQueryChars}, {"MaxParams", c.MaxParams}, {"MaxRequestBytes", c.MaxRequestBytes}, {"MaxTables", c.MaxTables}} {
		if v.n < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", v.name, v.n))
		}
	}
	return errors.Join(errs...)
}

// Job is one query job as the simulator sees it: a multi-statement
// transaction.
type Job struct {
	ID string
	// Chars, Params and RequestBytes size the request.
	Chars, Params, RequestBytes int
	// TempTables counts the script's temporary tables, which count toward
	// the tables a transaction modifies but not toward DML quotas.
	TempTables int
	Statements []Statement
}

// Statement is one DML statement of a job.
type Statement struct {
	Table string
	// Insert: Rows are inserted. Otherwise it is a DELETE of the rows that
	// match any of Where, or with Update an UPDATE of them that changes no
	// value: a mutating statement all the same.
	Insert bool
	Update bool
	Rows   []Row
	// Unique, for an insert, names a column whose values the statement
	// fails on (ErrorMessage) when a row visible to the job has them
	// already: the ledger's check. It bills as a lookup of the column.
	Unique       string
	ErrorMessage func(value any) string
	Where        []Predicate
}

// Row is a row's non-NULL values by column name.
type Row map[string]any

// Predicate is a conjunction of conditions. Tag names whom the rows it
// deletes are counted for: a row is counted for the first predicate of
// its statement that matches it.
type Predicate struct {
	Tag   int
	Conds []Cond
}

// Cond is column = Value, or column IS NULL when Value is nil.
type Cond struct {
	Column string
	Value  any
}

// Result is what a committed job did.
type Result struct {
	// Deleted counts the rows deleted per predicate Tag.
	Deleted map[int]int64
	// BilledBytes is what the job bills.
	BilledBytes int64
}

// Error is a failure as BigQuery reports it: the HTTP status, the error
// reason and its message.
type Error struct {
	Code    int
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Message }

// TableMeta is a table's metadata.
type TableMeta struct {
	Name       string
	Schema     bigquery.Schema
	Clustering []string
	ETag       string
}

// Stats counts what the simulator saw.
type Stats struct {
	Jobs, Committed, Failed int
	// Aborted counts jobs cancelled by a concurrent mutating transaction.
	Aborted int
	// DML counts the statements of committed jobs on permanent tables.
	DML int
	// Violations counts jobs failed by a quota or limit, by rule.
	Violations  map[string]int
	BilledBytes int64
	// MaxQueued is the longest mutating queue seen on any table.
	MaxQueued int
}

// ViolationCount is the sum of Violations.
func (s Stats) ViolationCount() int {
	n := 0
	for _, v := range s.Violations {
		n += v
	}
	return n
}

// Rules a job can violate, the keys of Stats.Violations.
const (
	RuleDMLRate     = "dml_rate"
	RuleQueue       = "mutating_queue"
	RuleQueryChars  = "query_chars"
	RuleParams      = "params"
	RuleRequestSize = "request_bytes"
	RuleTables      = "tables_per_transaction"
)

type row struct {
	values  Row
	created int64 // commit sequence that created it
	deleted int64 // commit sequence that deleted it, 0 while live
}

type table struct {
	meta      TableMeta
	etag      int
	rows      []*row
	live      int
	index     map[string]map[any][]*row
	mutatedAt int64 // commit sequence of the last mutating commit
	running   int
	// queued counts the waiting jobs that mutate the table.
	queued int
	dml    []time.Time
}

type jobState struct {
	job     Job
	done    chan struct{}
	result  Result
	err     error
	snap    int64
	mutates []string
	// admitted is closed when the job may start.
	admitted chan struct{}
	queued   bool
}

// Sim is the simulated BigQuery. It is safe for concurrent use.
type Sim struct {
	cfg   Config
	sigma float64

	mu     sync.Mutex
	rng    *rand.Rand
	tables map[string]*table
	jobs   map[string]*jobState
	// waiting are the mutating jobs queued, in arrival order.
	waiting []*jobState
	seq     int64
	stats   Stats
	wg      sync.WaitGroup
}

// New returns a simulator with no tables.
func New(cfg Config) (*Sim, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid bqsim config: %w", err)
	}
	sigma := 0.0
	if cfg.Latency > 0 {
		// z of the 99th percentile of the standard normal.
		sigma = math.Log(float64(cfg.LatencyP99)/float64(cfg.Latency)) / 2.3263
	}
	return &Sim{
		cfg: cfg, sigma: sigma,
		rng:    rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		tables: map[string]*table{},
		jobs:   map[string]*jobState{},
		stats:  Stats{Violations: map[string]int{}},
	}, nil
}

// Stats returns the counts so far.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Violations = map[string]int{}
	for k, v := range s.stats.Violations {
		st.Violations[k] = v
	}
	return st
}

// Wait waits for every job submitted so far to end.
func (s *Sim) Wait() { s.wg.Wait() }

// ---- tables API ----

func notFound(what string) error {
	return &Error{Code: http.StatusNotFound, Reason: "notFound", Message: "Not found: " + what}
}

// Table returns a table's metadata; ok is false when it does not exist.
func (s *Sim) Table(name string) (TableMeta, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[name]
	if !ok {
		return TableMeta{}, false
	}
	return t.meta, true
}

// TableNames lists the tables, sorted.
func (s *Sim) TableNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.tables))
	for n := range s.tables {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CreateTable creates a table; an existing one is a 409 duplicate.
func (s *Sim) CreateTable(name string, schema bigquery.Schema, clustering []string) (TableMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tables[name]; ok {
		return TableMeta{}, &Error{Code: http.StatusConflict, Reason: "duplicate", Message: "Already Exists: Table " + name}
	}
	t := &table{index: map[string]map[any][]*row{}, etag: 1}
	t.meta = TableMeta{Name: name, Schema: slices.Clone(schema), Clustering: slices.Clone(clustering), ETag: "1"}
	s.tables[name] = t
	return t.meta, nil
}

// UpdateSchema replaces a table's schema if its ETag is still etag (412
// otherwise).
func (s *Sim) UpdateSchema(name string, schema bigquery.Schema, etag string) (TableMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[name]
	if !ok {
		return TableMeta{}, notFound("Table " + name)
	}
	if etag != "" && etag != t.meta.ETag {
		return TableMeta{}, &Error{Code: http.StatusPreconditionFailed, Reason: "conditionNotMet", Message: "Precondition check failed."}
	}
	t.etag++
	t.meta.Schema = slices.Clone(schema)
	t.meta.ETag = fmt.Sprint(t.etag)
	return t.meta, nil
}

// Rows returns the live rows of a table, committed ones only.
func (s *Sim) Rows(name string) []Row {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[name]
	if !ok {
		return nil
	}
	var rows []Row
	for _, r := range t.rows {
		if r.deleted == 0 {
			rows = append(rows, r.values)
		}
	}
	return rows
}

// RowCount is the number of live committed rows of a table.
func (s *Sim) RowCount(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[name]
	if !ok {
		return 0
	}
	return t.live
}

// Lookup returns the live committed rows whose column equals one of
// values.
func (s *Sim) Lookup(name, column string, values []any) []Row {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[name]
	if !ok {
		return nil
	}
	var rows []Row
	for _, v := range values {
		for _, r := range t.index[column][v] {
			if r.deleted == 0 {
				rows = append(rows, r.values)
			}
		}
	}
	return rows
}

// ---- jobs ----

// ErrDuplicateJob is the error Submit returns for a job id already taken:
// BigQuery's 409.
func duplicateJob(id string) error {
	return &Error{Code: http.StatusConflict, Reason: "duplicate", Message: "Already Exists: Job " + id}
}

// Handle is a submitted job.
type Handle struct {
	s  *Sim
	st *jobState
}

// Submit starts a job. The job runs on its own: ctx bounds the submission
// only, as with jobs.insert, and a submitter that goes away leaves the job
// running.
func (s *Sim) Submit(ctx context.Context, job Job) (*Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[job.ID]; ok {
		return nil, duplicateJob(job.ID)
	}
	st := &jobState{job: job, done: make(chan struct{}), admitted: make(chan struct{})}
	s.jobs[job.ID] = st
	s.stats.Jobs++
	if err := s.checkSize(job); err != nil {
		s.finishLocked(st, err)
		return &Handle{s: s, st: st}, nil
	}
	if err := s.countDMLLocked(job); err != nil {
		s.finishLocked(st, err)
		return &Handle{s: s, st: st}, nil
	}
	s.wg.Add(1)
	go s.run(st)
	return &Handle{s: s, st: st}, nil
}

// Attach finds a job submitted earlier.
func (s *Sim) Attach(id string) (*Handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.jobs[id]
	if !ok {
		return nil, notFound("Job " + id)
	}
	return &Handle{s: s, st: st}, nil
}

// Wait waits for the job to end. An error is the job's failure, an *Error.
func (h *Handle) Wait(ctx context.Context) (Result, error) {
	select {
	case <-h.st.done:
		return h.st.result, h.st.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// Done reports whether the job has ended.
func (h *Handle) Done() bool {
	select {
	case <-h.st.done:
		return true
	default:
		return false
	}
}

func (s *Sim) violation(rule string) { s.stats.Violations[rule]++ }

// checkSize applies the request's limits. s.mu is held.
func (s *Sim) checkSize(job Job) error {
	cfg := s.cfg
	tables := map[string]bool{}
	for _, st := range job.Statements {
		tables[st.Table] = true
	}
	switch n := len(tables) + job.TempTables; {
	case job.RequestBytes > cfg.MaxRequestBytes:
		s.violation(RuleRequestSize)
		return &Error{Code: http.StatusBadRequest, Reason: "invalid",
			Message: fmt.Sprintf("Request payload size exceeds the limit: %d bytes.", cfg.MaxRequestBytes)}
	case job.Chars > cfg.MaxQueryChars:
		s.violation(RuleQueryChars)
		return &Error{Code: http.StatusBadRequest, Reason: "invalidQuery",
			Message: fmt.Sprintf("The query is too large. The maximum standard SQL query length is %.2fK characters, including comments and white space characters.", float64(cfg.MaxQueryChars)/1024)}
	case job.Params > cfg.MaxParams:
		s.violation(RuleParams)
		return &Error{Code: http.StatusBadRequest, Reason: "invalidQuery",
			Message: fmt.Sprintf("Too many query parameters: %d; the maximum is %d.", job.Params, cfg.MaxParams)}
	case n > cfg.MaxTables:
		s.violation(RuleTables)
		return &Error{Code: http.StatusBadRequest, Reason: "invalidQuery",
			Message: fmt.Sprintf("Transaction modifies %d tables; a transaction can modify at most %d tables.", n, cfg.MaxTables)}
	}
	for name := range tables {
		if _, ok := s.tables[name]; !ok {
			return notFound("Table " + name)
		}
	}
	return nil
}

func (s *Sim) finishLocked(st *jobState, err error) {
	st.err = err
	if err != nil {
		s.stats.Failed++
	}
	close(st.done)
}

// mutatedTables are the tables a job deletes from, sorted.
func mutatedTables(job Job) []string {
	var names []string
	for _, st := range job.Statements {
		if !st.Insert && !slices.Contains(names, st.Table) {
			names = append(names, st.Table)
		}
	}
	sort.Strings(names)
	return names
}

func (s *Sim) latency() time.Duration {
	if s.cfg.Latency == 0 {
		return 0
	}
	s.mu.Lock()
	z := s.rng.NormFloat64()
	s.mu.Unlock()
	return time.Duration(float64(s.cfg.Latency) * math.Exp(s.sigma*z))
}

func (s *Sim) run(st *jobState) {
	defer s.wg.Done()
	st.mutates = mutatedTables(st.job)
	s.mu.Lock()
	if err := s.admitLocked(st); err != nil {
		s.finishLocked(st, err)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	<-st.admitted

	s.mu.Lock()
	if err := s.startLocked(st); err != nil {
		s.releaseLocked(st)
		s.finishLocked(st, err)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()

	<-s.cfg.Clock.After(s.latency())

	s.mu.Lock()
	defer s.mu.Unlock()
	result, err := s.commitLocked(st)
	s.releaseLocked(st)
	st.result = result
	s.finishLocked(st, err)
}

// admitLocked starts the job when every table it mutates has a free
// running slot and no job waiting before it, or queues it, or fails it
// when a table's queue is full.
func (s *Sim) admitLocked(st *jobState) error {
	free := true
	for _, name := range st.mutates {
		t := s.tables[name]
		if t.running >= s.cfg.MaxRunningMutating || t.queued > 0 {
			free = false
		}
	}
	if free {
		for _, name := range st.mutates {
			s.tables[name].running++
		}
		close(st.admitted)
		return nil
	}
	for _, name := range st.mutates {
		if t := s.tables[name]; t.queued >= s.cfg.MaxQueuedMutating {
			s.violation(RuleQueue)
			return &Error{Code: http.StatusBadRequest, Reason: "resourcesExceeded",
				Message: fmt.Sprintf("Resources exceeded during query execution: Too many DML statements outstanding against table %s, limit is %d.", name, s.cfg.MaxQueuedMutating)}
		}
	}
	for _, name := range st.mutates {
		t := s.tables[name]
		t.queued++
		s.stats.MaxQueued = max(s.stats.MaxQueued, t.queued)
	}
	st.queued = true
	s.waiting = append(s.waiting, st)
	return nil
}

// releaseLocked frees the job's slots and starts the waiting jobs that
// now can, in order: a job waits behind an earlier one on any table they
// share.
func (s *Sim) releaseLocked(st *jobState) {
	for _, name := range st.mutates {
		s.tables[name].running--
	}
	blocked := map[string]bool{}
	kept := s.waiting[:0]
	for _, w := range s.waiting {
		ok := true
		for _, name := range w.mutates {
			if blocked[name] || s.tables[name].running >= s.cfg.MaxRunningMutating {
				ok = false
			}
		}
		if !ok {
			for _, name := range w.mutates {
				blocked[name] = true
			}
			kept = append(kept, w)
			continue
		}
		for _, name := range w.mutates {
			t := s.tables[name]
			t.running++
			t.queued--
		}
		w.queued = false
		close(w.admitted)
	}
	s.waiting = kept
}

// startLocked takes the job's snapshot.
func (s *Sim) startLocked(st *jobState) error {
	st.snap = s.seq
	return nil
}

// countDMLLocked counts the job's DML statements against each table's
// rate when BigQuery accepts the job, whether it then waits in a queue,
// runs, or is aborted.
func (s *Sim) countDMLLocked(job Job) error {
	now := s.cfg.Clock.Now()
	perTable := map[string]int{}
	for _, stmt := range job.Statements {
		perTable[stmt.Table]++
	}
	names := make([]string, 0, len(perTable))
	for n := range perTable {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t := s.tables[name]
		cut := 0
		for cut < len(t.dml) && !t.dml[cut].After(now.Add(-s.cfg.DMLWindow)) {
			cut++
		}
		t.dml = t.dml[cut:]
		if len(t.dml)+perTable[name] > s.cfg.DMLRate {
			s.violation(RuleDMLRate)
			return &Error{Code: http.StatusForbidden, Reason: "rateLimitExceeded",
				Message: fmt.Sprintf("Exceeded rate limits: too many table dml insert operations for this table (%s). For more information, see https://cloud.google.com/bigquery/docs/troubleshoot-quotas", name)}
		}
	}
	for _, name := range names {
		t := s.tables[name]
		for range perTable[name] {
			t.dml = append(t.dml, now)
		}
	}
	return nil
}

// visible: committed by the job's snapshot and not deleted. Deletes by
// others after the snapshot would have aborted a mutating job, and an
// insert-only one reads rows, not their deletion.
func visible(r *row, snap int64) bool {
	return r.created <= snap && (r.deleted == 0 || r.deleted > snap)
}

func matches(values Row, p Predicate) bool {
	for _, c := range p.Conds {
		v, ok := values[c.Column]
		if c.Value == nil {
			if ok && v != nil {
				return false
			}
			continue
		}
		if !ok || v != c.Value {
			return false
		}
	}
	return true
}

// commitLocked runs the job's statements against its snapshot and its own
// writes, and commits them unless a mutating transaction on one of its
// mutated tables committed since the snapshot.
func (s *Sim) commitLocked(st *jobState) (Result, error) {
	for _, name := range st.mutates {
		if s.tables[name].mutatedAt > st.snap {
			s.stats.Aborted++
			return Result{}, &Error{Code: http.StatusBadRequest, Reason: "invalidQuery",
				Message: fmt.Sprintf("Transaction is aborted due to concurrent update against table %s.", name)}
		}
	}
	type pendingRow struct {
		table   string
		values  Row
		deleted bool
	}
	var (
		inserted []*pendingRow
		deleted  = map[*row]*table{}
		result   = Result{Deleted: map[int]int64{}}
	)
	for _, stmt := range st.job.Statements {
		t := s.tables[stmt.Table]
		if stmt.Insert {
			if stmt.Unique != "" {
				for _, r := range stmt.Rows {
					v := r[stmt.Unique]
					for _, old := range t.index[stmt.Unique][v] {
						if visible(old, st.snap) && deleted[old] == nil {
							return Result{}, &Error{Code: http.StatusBadRequest, Reason: "invalidQuery", Message: stmt.ErrorMessage(v)}
						}
					}
					for _, p := range inserted {
						if p.table == stmt.Table && !p.deleted && p.values[stmt.Unique] == v {
							return Result{}, &Error{Code: http.StatusBadRequest, Reason: "invalidQuery", Message: stmt.ErrorMessage(v)}
						}
					}
				}
				result.BilledBytes += s.lookupBytes(t, stmt.Unique, len(stmt.Rows))
			}
			for _, r := range stmt.Rows {
				inserted = append(inserted, &pendingRow{table: stmt.Table, values: r})
			}
			continue
		}
		result.BilledBytes += s.deleteBytes(t, stmt.Where)
		if stmt.Update {
			continue
		}
		for _, r := range s.candidates(t, stmt.Where) {
			if !visible(r, st.snap) || deleted[r] != nil {
				continue
			}
			for _, p := range stmt.Where {
				if matches(r.values, p) {
					deleted[r] = t
					result.Deleted[p.Tag]++
					break
				}
			}
		}
		for _, r := range inserted {
			if r.table != stmt.Table || r.deleted {
				continue
			}
			for _, p := range stmt.Where {
				if matches(r.values, p) {
					r.deleted = true
					result.Deleted[p.Tag]++
					break
				}
			}
		}
	}
	s.seq++
	for r, t := range deleted {
		r.deleted = s.seq
		t.live--
	}
	for _, p := range inserted {
		if p.deleted {
			continue
		}
		t := s.tables[p.table]
		r := &row{values: p.values, created: s.seq}
		t.rows = append(t.rows, r)
		t.live++
		for col, v := range p.values {
			byValue := t.index[col]
			if byValue == nil {
				byValue = map[any][]*row{}
				t.index[col] = byValue
			}
			byValue[v] = append(byValue[v], r)
		}
	}
	for _, name := range st.mutates {
		s.tables[name].mutatedAt = s.seq
	}
	s.stats.Committed++
	s.stats.DML += len(st.job.Statements)
	s.stats.BilledBytes += result.BilledBytes
	return result, nil
}

// candidates are the rows that may match any of preds, found through the
// index of each predicate's first non-NULL condition.
func (s *Sim) candidates(t *table, preds []Predicate) []*row {
	seen := map[*row]bool{}
	var out []*row
	for _, p := range preds {
		var rows []*row
		indexed := false
		for _, c := range p.Conds {
			if c.Value != nil {
				rows, indexed = t.index[c.Column][c.Value], true
				break
			}
		}
		if !indexed {
			rows = t.rows
		}
		for _, r := range rows {
			if !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	return out
}

// ---- bytes billed ----

func (s *Sim) tableBytes(t *table) int64 {
	if t.meta.Name == ledgerName {
		return s.cfg.LedgerBytes
	}
	return s.cfg.TableBytes
}

// ledgerName is the table billed at LedgerBytes.
const ledgerName = "_gatekeeper_ledger"

// columnShare is the modelled bytes of cols: the table's size shared
// evenly among its columns.
func (s *Sim) columnShare(t *table, cols int) int64 {
	n := max(len(t.meta.Schema), 1)
	return s.tableBytes(t) * int64(min(cols, n)) / int64(n)
}

// pruned bounds scanned bytes by clustering: when every predicate fixes
// the first clustering column, only the blocks of those values are read.
func (s *Sim) pruned(t *table, scanned int64, keys int) int64 {
	if keys > 0 {
		scanned = min(scanned, int64(keys)*s.cfg.BlockBytes)
	}
	return max(scanned, MinBilledBytes)
}

func (s *Sim) lookupBytes(t *table, column string, values int) int64 {
	scanned := s.columnShare(t, 1)
	if len(t.meta.Clustering) > 0 && t.meta.Clustering[0] == column {
		return s.pruned(t, scanned, values)
	}
	return s.pruned(t, scanned, 0)
}

func (s *Sim) deleteBytes(t *table, preds []Predicate) int64 {
	cols := map[string]bool{}
	for _, p := range preds {
		for _, c := range p.Conds {
			cols[c.Column] = true
		}
	}
	scanned := s.columnShare(t, len(cols))
	if len(t.meta.Clustering) == 0 {
		return s.pruned(t, scanned, 0)
	}
	first := t.meta.Clustering[0]
	keys := map[any]bool{}
	for _, p := range preds {
		fixed := false
		for _, c := range p.Conds {
			if c.Column == first && c.Value != nil {
				keys[c.Value] = true
				fixed = true
				break
			}
		}
		if !fixed {
			return s.pruned(t, scanned, 0)
		}
	}
	return s.pruned(t, scanned, len(keys))
}
