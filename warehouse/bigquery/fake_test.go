package bigquery

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// fakeBackend stands in for BigQuery in unit tests. It keeps table
// schemas with ETags and a ledger, runs no SQL, and counts every call.
// A submitted job "commits" by adding its ledger ids; tests decide jobs'
// fates with onJob and simulate lost replies with loseReply.
type fakeBackend struct {
	mu      sync.Mutex
	tables  map[string]*tableInfo
	etags   map[string]int
	ledger  map[string]bool
	jobs    map[string]*fakeJob
	scripts []string
	// inserted counts the rows streamed into each table.
	inserted map[string]int
	// submitted lists each submitted job's payload ids.
	submitted [][]string

	datasetMissing bool
	calls          map[string]int
	// onJob, when set, decides the fate of a job given its payload ids:
	// nil commits it.
	onJob func(ids []string, script string) error
	// loseReply, when set, makes submit return this error after creating
	// the job: the job exists (committed unless pending) but the caller
	// cannot know.
	loseReply func(jobID string) error
	// pending jobs created while this is set do not commit until waited on.
	pending bool
}

type fakeJob struct {
	b       *fakeBackend
	id      string
	ids     []string
	err     error
	pending bool
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		tables:   map[string]*tableInfo{},
		etags:    map[string]int{},
		ledger:   map[string]bool{},
		jobs:     map[string]*fakeJob{},
		calls:    map[string]int{},
		inserted: map[string]int{},
	}
}

func (f *fakeBackend) count(call string) {
	f.calls[call]++
}

func (f *fakeBackend) callCount(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[call]
}

func apiError(code int, reason, message string) error {
	return &googleapi.Error{Code: code, Message: message, Errors: []googleapi.ErrorItem{{Reason: reason, Message: message}}}
}

func (f *fakeBackend) datasetLocation(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("dataset.get")
	if f.datasetMissing {
		return "", apiError(http.StatusNotFound, "notFound", "Not found: Dataset proj:ds")
	}
	return "US", nil
}

func (f *fakeBackend) createDataset(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("dataset.create")
	f.datasetMissing = false
	return nil
}

func (f *fakeBackend) table(_ context.Context, name string) (*tableInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("tables.get")
	return f.tables[name], nil
}

// setTable puts a table behind the adapter's back.
func (f *fakeBackend) setTable(name string, schema bigquery.Schema) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.etags[name]++
	f.tables[name] = newTableInfo(name, schema, fmt.Sprint(f.etags[name]))
}

func (f *fakeBackend) createTable(_ context.Context, name string, schema bigquery.Schema, _ []string) (*tableInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("tables.insert")
	if _, ok := f.tables[name]; ok {
		return nil, apiError(http.StatusConflict, "duplicate", "Already Exists: Table proj:ds."+name)
	}
	f.etags[name]++
	f.tables[name] = newTableInfo(name, slices.Clone(schema), fmt.Sprint(f.etags[name]))
	return f.tables[name], nil
}

func (f *fakeBackend) updateSchema(_ context.Context, name string, schema bigquery.Schema, etag string) (*tableInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("tables.patch")
	t, ok := f.tables[name]
	if !ok {
		return nil, apiError(http.StatusNotFound, "notFound", "Not found: Table proj:ds."+name)
	}
	if etag != t.etag {
		return nil, apiError(http.StatusPreconditionFailed, "conditionNotMet", "Precondition check failed.")
	}
	f.etags[name]++
	f.tables[name] = newTableInfo(name, slices.Clone(schema), fmt.Sprint(f.etags[name]))
	return f.tables[name], nil
}

func (f *fakeBackend) tableNames(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range f.tables {
		names = append(names, n)
	}
	return names, nil
}

func (f *fakeBackend) insertRows(_ context.Context, name string, rows []bigquery.ValueSaver) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("tabledata.insertAll")
	if _, ok := f.tables[name]; !ok {
		return apiError(http.StatusNotFound, "notFound", "Not found: Table proj:ds."+name)
	}
	f.inserted[name] += len(rows)
	return nil
}

func (f *fakeBackend) query(_ context.Context, sql string, params []bigquery.QueryParameter) ([][]bigquery.Value, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("query")
	if !strings.Contains(sql, warehouse.LedgerTable) {
		return nil, fmt.Errorf("fake backend runs only ledger lookups, not %q", sql)
	}
	var rows [][]bigquery.Value
	for _, p := range params {
		if id, ok := p.Value.(string); ok && f.ledger[id] {
			rows = append(rows, []bigquery.Value{id})
		}
	}
	return rows, nil
}

var (
	ledgerList   = regexp.MustCompile(`FROM UNNEST\((.*)\) AS id LEFT JOIN`)
	ledgerParams = regexp.MustCompile(`@(p\d+)`)
)

// scriptIDs reads a job script's payload ids back from its ledger
// statement.
func scriptIDs(script string, params []bigquery.QueryParameter) []string {
	m := ledgerList.FindStringSubmatch(script)
	if m == nil {
		return nil
	}
	byName := map[string]string{}
	for _, p := range params {
		if v, ok := p.Value.(*bigquery.QueryParameterValue); ok {
			if s, ok := v.Value.(string); ok {
				byName[p.Name] = s
			}
		}
	}
	var ids []string
	for _, name := range ledgerParams.FindAllStringSubmatch(m[1], -1) {
		ids = append(ids, byName[name[1]])
	}
	return ids
}

func (f *fakeBackend) submit(_ context.Context, jobID, sql string, params []bigquery.QueryParameter, _ *jobPlan) (job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("jobs.insert")
	if _, ok := f.jobs[jobID]; ok {
		return nil, apiError(http.StatusConflict, "duplicate", "Already Exists: Job proj:US."+jobID)
	}
	j := &fakeJob{b: f, id: jobID, ids: scriptIDs(sql, params), pending: f.pending}
	f.scripts = append(f.scripts, sql)
	f.submitted = append(f.submitted, j.ids)
	if f.onJob != nil {
		j.err = f.onJob(j.ids, sql)
	}
	f.jobs[jobID] = j
	if !j.pending {
		f.finish(j)
	}
	if f.loseReply != nil {
		if err := f.loseReply(jobID); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// finish commits or fails j. f.mu must be held.
func (f *fakeBackend) finish(j *fakeJob) {
	j.pending = false
	if j.err != nil {
		return
	}
	for _, id := range j.ids {
		if f.ledger[id] {
			j.err = &bigquery.Error{Reason: "invalidQuery", Message: ledgerConflictMarker + ": payload " + id + " is already in the ledger"}
			return
		}
	}
	for _, id := range j.ids {
		f.ledger[id] = true
	}
}

func (f *fakeBackend) attach(_ context.Context, jobID string) (job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("jobs.get")
	j, ok := f.jobs[jobID]
	if !ok {
		return nil, apiError(http.StatusNotFound, "notFound", "Not found: Job "+jobID)
	}
	return j, nil
}

func (j *fakeJob) result(context.Context, bool) ([][]bigquery.Value, error) {
	j.b.mu.Lock()
	defer j.b.mu.Unlock()
	if j.pending {
		j.b.finish(j)
	}
	if j.err != nil {
		return nil, &jobFailedError{err: j.err}
	}
	return nil, nil
}

func (f *fakeBackend) setLocation(string) {}
func (f *fakeBackend) close() error       { return nil }

// dmlPerTable counts the user-table DML statements of the scripts run.
func (f *fakeBackend) dmlPerTable() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	counts := map[string]int{}
	stmt := regexp.MustCompile("(?m)^(?:INSERT INTO|DELETE FROM) `proj`\\.`ds`\\.`([A-Za-z0-9_]+)`")
	for _, s := range f.scripts {
		for _, m := range stmt.FindAllStringSubmatch(s, -1) {
			if m[1] != warehouse.LedgerTable {
				counts[m[1]]++
			}
		}
	}
	return counts
}

func openFake(t *testing.T, f *fakeBackend, cfg Config) *Warehouse {
	t.Helper()
	cfg.ProjectID, cfg.DatasetID = "proj", "ds"
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w, err := open(context.Background(), cfg, nil, f)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// ---- payload builders ----

func icol(name string, v any) messages.Column {
	return messages.Column{Name: name, Type: messages.ColumnType{Base: messages.TypeInt64}, Value: v}
}

func scol(name string, v any) messages.Column {
	return messages.Column{Name: name, Type: messages.ColumnType{Base: messages.TypeString}, Value: v}
}

func mustApply(t *testing.T, w *Warehouse, group ...warehouse.Payload) []warehouse.Outcome {
	t.Helper()
	outcomes, err := w.Apply(context.Background(), group)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return outcomes
}

func statuses(outcomes []warehouse.Outcome) string {
	var parts []string
	for _, o := range outcomes {
		switch o.Status {
		case warehouse.Applied:
			parts = append(parts, "Applied")
		case warehouse.Duplicate:
			parts = append(parts, "Duplicate")
		case warehouse.Rejected:
			parts = append(parts, "Rejected")
		default:
			parts = append(parts, fmt.Sprint(o.Status))
		}
	}
	return strings.Join(parts, " ")
}
