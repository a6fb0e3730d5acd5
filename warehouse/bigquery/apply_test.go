package bigquery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

func int64Field(name string) *bigquery.FieldSchema {
	return &bigquery.FieldSchema{Name: name, Type: "INT64"}
}

func fieldNames(s bigquery.Schema) []string {
	var names []string
	for _, f := range s {
		names = append(names, f.Name)
	}
	return names
}

func TestOpenCreatesTheDatasetTheLedgerAndTheEventsLog(t *testing.T) {
	f := newFakeBackend()
	f.datasetMissing = true
	openFake(t, f, Config{})
	if got := f.callCount("dataset.create"); got != 1 {
		t.Fatalf("dataset created %d times, want 1", got)
	}
	ledger := f.tables[warehouse.LedgerTable]
	if ledger == nil || !slices.Equal(fieldNames(ledger.schema), []string{"payload_id", "applied_at", "rows_affected", "payload_hash"}) {
		t.Fatalf("ledger table = %+v", ledger)
	}
	if events := f.tables[warehouse.EventsTable]; events == nil || len(events.columns) != len(eventFields) {
		t.Fatalf("events table = %+v", events)
	}

	f = newFakeBackend()
	f.datasetMissing = true
	cfg := Config{ProjectID: "proj", DatasetID: "ds", DoNotCreateDatasetIfMissing: true}
	cfg.setDefaults()
	if _, err := open(context.Background(), cfg, nil, f); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("open without the dataset = %v, want an error saying it does not exist", err)
	}
	if f.callCount("dataset.create") != 0 {
		t.Fatal("dataset created although DoNotCreateDatasetIfMissing")
	}
}

func TestAddsColumnsWithOneUpdatePerTable(t *testing.T) {
	f := newFakeBackend()
	f.setTable("t", bigquery.Schema{int64Field("a")})
	etagBefore := f.tables["t"].etag
	w := openFake(t, f, Config{})

	outcomes := mustApply(t, w,
		warehousetest.Payload("p1", warehousetest.Insert("t", icol("a", int64(1)), scol("b", "x"))),
		warehousetest.Payload("p2", warehousetest.Insert("t", scol("B", "y"), icol("c", int64(2)))),
		// c exists by now: p2 adds it.
		warehousetest.Payload("p3", warehousetest.Delete("t", icol("c", int64(2)))),
		warehousetest.Payload("p4", warehousetest.Insert("u", icol("x", int64(1)))),
		warehousetest.Payload("p5", warehousetest.Insert("u", icol("y", int64(1))), warehousetest.Delete("u", icol("y", int64(1)))),
	)
	if got := statuses(outcomes); got != "Applied Applied Applied Applied Applied" {
		t.Fatalf("outcomes %s", got)
	}
	if got := f.callCount("tables.patch"); got != 1 {
		t.Errorf("%d schema updates, want 1 for all of t's new columns", got)
	}
	if got := fieldNames(f.tables["t"].schema); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("t's columns %v, want [a b c]: b once despite two spellings, in order of appearance", got)
	}
	if f.tables["t"].etag == etagBefore {
		t.Error("t's schema updated without its ETag changing")
	}
	if got := f.callCount("tables.insert") - 2; got != 1 { // the ledger and the events log are two
		t.Errorf("%d tables created, want 1 (u)", got)
	}
	if got := fieldNames(f.tables["u"].schema); !slices.Equal(got, []string{"x", "y"}) {
		t.Errorf("u's columns %v, want [x y] in one create", got)
	}
	if got := f.callCount("jobs.insert"); got != 1 {
		t.Errorf("%d jobs, want 1", got)
	}
}

func TestRejectedPayloadChangesNoSchema(t *testing.T) {
	f := newFakeBackend()
	f.setTable("t", bigquery.Schema{int64Field("a")})
	w := openFake(t, f, Config{})
	outcomes := mustApply(t, w,
		warehousetest.Payload("bad", warehousetest.Insert("t", scol("new_col", "v")), warehousetest.Insert("new_table", icol("x", int64(1))),
			warehousetest.Delete("missing", icol("a", int64(1)))),
		warehousetest.Payload("good", warehousetest.Insert("t", icol("a", int64(2)))),
	)
	if got := statuses(outcomes); got != "Rejected Applied" {
		t.Fatalf("outcomes %s", got)
	}
	if !errors.Is(outcomes[0].Err, warehouse.ErrTableNotFound) || messages.ClassOf(outcomes[0].Err) != messages.ClassPermanent {
		t.Fatalf("rejection %v: want a permanent ErrTableNotFound", outcomes[0].Err)
	}
	if f.callCount("tables.patch") != 0 || f.tables["new_table"] != nil {
		t.Fatal("the rejected payload's schema changes were made")
	}
}

func TestSchemaConflictsReject(t *testing.T) {
	f := newFakeBackend()
	f.setTable("t", bigquery.Schema{int64Field("a"), {Name: "g", Type: "GEOGRAPHY"}, {Name: "r", Type: "STRING", Required: true}})
	w := openFake(t, f, Config{})
	outcomes := mustApply(t, w,
		warehousetest.Payload("type", warehousetest.Insert("t", scol("a", "x"), scol("r", "v"))),
		warehousetest.Payload("foreign", warehousetest.Delete("t", scol("g", "POINT(1 1)"))),
		warehousetest.Payload("required", warehousetest.Insert("t", icol("a", int64(1)))),
		warehousetest.Payload("column", warehousetest.Delete("t", icol("zz", int64(1)))),
		warehousetest.Payload("ok", warehousetest.Insert("t", icol("a", int64(1)), scol("r", "v"))),
	)
	if got := statuses(outcomes); got != "Rejected Rejected Rejected Rejected Applied" {
		t.Fatalf("outcomes %s", got)
	}
	for i, want := range []error{warehouse.ErrTypeConflict, warehouse.ErrTypeConflict, errRequiredColumn, warehouse.ErrColumnNotFound} {
		if !errors.Is(outcomes[i].Err, want) {
			t.Errorf("outcome %d: %v, want %v", i, outcomes[i].Err, want)
		}
	}
}

func TestRejectionIsDecidedOnAFreshRead(t *testing.T) {
	f := newFakeBackend()
	w := openFake(t, f, Config{MetadataTTL: time.Hour})
	outcomes := mustApply(t, w, warehousetest.Payload("early", warehousetest.Delete("late", icol("a", int64(1)))))
	if got := statuses(outcomes); got != "Rejected" {
		t.Fatalf("outcomes %s", got)
	}
	// Another process creates the table; the cache still says missing.
	f.setTable("late", bigquery.Schema{int64Field("a")})
	reads := f.callCount("tables.get")
	outcomes = mustApply(t, w, warehousetest.Payload("on-time", warehousetest.Delete("late", icol("a", int64(1)))))
	if got := statuses(outcomes); got != "Applied" {
		t.Fatalf("outcomes %s: a cached 'missing' must be read again before rejecting", got)
	}
	if got := f.callCount("tables.get") - reads; got != 1 {
		t.Fatalf("%d metadata reads, want 1", got)
	}
	// Cached and present: no read at all.
	reads = f.callCount("tables.get")
	mustApply(t, w, warehousetest.Payload("cached", warehousetest.Delete("late", icol("a", int64(1)))))
	if got := f.callCount("tables.get") - reads; got != 0 {
		t.Fatalf("%d metadata reads for a cached table, want 0", got)
	}
}

func TestSchemaChangedConcurrentlyIsReadAgain(t *testing.T) {
	f := newFakeBackend()
	f.setTable("t", bigquery.Schema{int64Field("a")})
	w := openFake(t, f, Config{MetadataTTL: time.Hour})
	mustApply(t, w, warehousetest.Payload("p1", warehousetest.Insert("t", icol("a", int64(1)))))
	// Another process adds a column: the cached ETag is stale now.
	f.setTable("t", bigquery.Schema{int64Field("a"), int64Field("other")})
	outcomes := mustApply(t, w, warehousetest.Payload("p2", warehousetest.Insert("t", icol("a", int64(2)), scol("mine", "x"))))
	if got := statuses(outcomes); got != "Applied" {
		t.Fatalf("outcomes %s", got)
	}
	if got := fieldNames(f.tables["t"].schema); !slices.Equal(got, []string{"a", "other", "mine"}) {
		t.Fatalf("t's columns %v: the other process's column was lost", got)
	}
	if got := f.callCount("tables.patch"); got != 2 {
		t.Fatalf("%d schema updates, want 2 (one refused for its stale ETag)", got)
	}
}

func TestSameIDTwiceInAGroupAppliesOnce(t *testing.T) {
	f := newFakeBackend()
	w := openFake(t, f, Config{})
	p := warehousetest.Payload("twice", warehousetest.Insert("t", icol("a", int64(1))))
	outcomes := mustApply(t, w, p, warehousetest.Payload("other", warehousetest.Insert("t", icol("a", int64(2)))), p)
	if got := statuses(outcomes); got != "Applied Applied Duplicate" {
		t.Fatalf("outcomes %s", got)
	}
	if got := f.callCount("jobs.insert"); got != 1 {
		t.Fatalf("%d jobs, want 1", got)
	}
	outcomes = mustApply(t, w, p)
	if got := statuses(outcomes); got != "Duplicate" {
		t.Fatalf("second Apply: %s", got)
	}
}

// A job whose reply was lost while it was still running: the retry gets
// the same job id, BigQuery refuses it as a duplicate, and Apply waits for
// the first job instead of running the payloads again.
func TestResubmittedJobWaitsForTheFirst(t *testing.T) {
	f := newFakeBackend()
	w := openFake(t, f, Config{})
	f.pending = true
	f.loseReply = func(string) error { return apiError(http.StatusServiceUnavailable, "backendError", "connection reset") }
	group := []warehouse.Payload{warehousetest.Payload("p1", warehousetest.Insert("t", icol("a", int64(1))))}
	_, err := w.Apply(context.Background(), group)
	if messages.ClassOf(err) != messages.ClassOutage {
		t.Fatalf("Apply with a lost reply (503) = %v, want an outage", err)
	}
	f.loseReply = nil
	outcomes := mustApply(t, w, group...)
	if got := statuses(outcomes); got != "Applied" {
		t.Fatalf("retry: %s", got)
	}
	if got := len(f.jobs); got != 1 {
		t.Fatalf("%d jobs exist, want 1", got)
	}
	if got := f.callCount("jobs.get"); got != 1 {
		t.Fatalf("attached %d times, want 1", got)
	}
}

// A job whose reply was lost after it committed: the retry finds its
// payloads in the ledger.
func TestLostReplyOfACommittedJob(t *testing.T) {
	f := newFakeBackend()
	w := openFake(t, f, Config{})
	f.loseReply = func(string) error { return apiError(http.StatusBadGateway, "", "bad gateway") }
	group := []warehouse.Payload{warehousetest.Payload("p1", warehousetest.Insert("t", icol("a", int64(1))))}
	if _, err := w.Apply(context.Background(), group); messages.ClassOf(err) != messages.ClassOutage {
		t.Fatalf("Apply with a lost reply (502) = %v, want an outage", err)
	}
	f.loseReply = nil
	if got := statuses(mustApply(t, w, group...)); got != "Duplicate" {
		t.Fatalf("retry: %s", got)
	}
	if got := f.callCount("jobs.insert"); got != 1 {
		t.Fatalf("%d job submissions, want 1", got)
	}
}

func TestFailedJobIsRetriedUnderANewID(t *testing.T) {
	f := newFakeBackend()
	w := openFake(t, f, Config{})
	fail := true
	f.onJob = func([]string, string) error {
		if fail {
			fail = false
			return &bigquery.Error{Reason: "invalidQuery", Message: "Transaction is aborted due to concurrent update against table proj:ds.t"}
		}
		return nil
	}
	group := []warehouse.Payload{warehousetest.Payload("p1", warehousetest.Insert("t", icol("a", int64(1))))}
	if _, err := w.Apply(context.Background(), group); messages.ClassOf(err) != messages.ClassTransient {
		t.Fatalf("Apply of an aborted transaction = %v, want a transient error", err)
	}
	if got := statuses(mustApply(t, w, group...)); got != "Applied" {
		t.Fatalf("retry: %s", got)
	}
	var ids []string
	for id := range f.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) != 2 || !strings.HasSuffix(ids[0], "_0") || !strings.HasSuffix(ids[1], "_1") ||
		strings.TrimSuffix(ids[0], "_0") != strings.TrimSuffix(ids[1], "_1") {
		t.Fatalf("job ids %v, want attempts _0 and _1 of one key", ids)
	}
}

func TestConcurrentWriterIsCaughtByTheScript(t *testing.T) {
	f := newFakeBackend()
	w := openFake(t, f, Config{})
	f.onJob = func(ids []string, _ string) error {
		// Another process commits the payload between the ledger read
		// and this job.
		f.ledger[ids[0]] = true
		return nil
	}
	group := []warehouse.Payload{warehousetest.Payload("p1", warehousetest.Insert("t", icol("a", int64(1))))}
	_, err := w.Apply(context.Background(), group)
	if messages.ClassOf(err) != messages.ClassTransient || !strings.Contains(err.Error(), ledgerConflictMarker) {
		t.Fatalf("Apply racing another writer = %v, want a transient ledger conflict", err)
	}
	f.onJob = nil
	if got := statuses(mustApply(t, w, group...)); got != "Duplicate" {
		t.Fatalf("retry: %s", got)
	}
}

func TestPermanentJobFailureIsBisectedToThePayloadAtFault(t *testing.T) {
	f := newFakeBackend()
	w := openFake(t, f, Config{})
	f.onJob = func(ids []string, _ string) error {
		if slices.Contains(ids, "bad") {
			return &bigquery.Error{Reason: "invalidQuery", Message: "Value has type STRING which cannot be inserted into column a, which has type INT64"}
		}
		return nil
	}
	var group []warehouse.Payload
	for i := range 8 {
		id := fmt.Sprintf("p%d", i)
		if i == 5 {
			id = "bad"
		}
		group = append(group, warehousetest.Payload(id, warehousetest.Insert("t", icol("a", int64(i)))))
	}
	outcomes := mustApply(t, w, group...)
	if got := statuses(outcomes); got != "Applied Applied Applied Applied Applied Rejected Applied Applied" {
		t.Fatalf("outcomes %s", got)
	}
	if !errors.Is(outcomes[5].Err, warehouse.ErrTypeConflict) || messages.ClassOf(outcomes[5].Err) != messages.ClassPermanent {
		t.Fatalf("rejection %v: want a permanent ErrTypeConflict", outcomes[5].Err)
	}
	// 1 failed job of 8, then halves: [0-3] ok, [4-7] fails, [4-5]
	// fails, [4] ok, [5] fails, [6-7] ok.
	if got := f.callCount("jobs.insert"); got != 7 {
		t.Fatalf("%d jobs, want 7", got)
	}
	for _, id := range []string{"p0", "p4", "p6", "p7"} {
		if !f.ledger[id] {
			t.Errorf("%s not in the ledger", id)
		}
	}
	if f.ledger["bad"] {
		t.Error("bad is in the ledger")
	}
}

func TestSplitsGroupsWithinLimits(t *testing.T) {
	t.Run("parameters", func(t *testing.T) {
		f := newFakeBackend()
		w := openFake(t, f, Config{MaxParams: 20})
		var group []warehouse.Payload
		for i := range 12 {
			// 1 id + 3 values = 4 parameters: 5 payloads per job.
			group = append(group, warehousetest.Payload(fmt.Sprint("p", i), warehousetest.Insert("t", icol("a", int64(i)), icol("b", int64(i)), icol("c", int64(i)))))
		}
		if got := statuses(mustApply(t, w, group...)); strings.Count(got, "Applied") != 12 {
			t.Fatalf("outcomes %s", got)
		}
		if got := f.callCount("jobs.insert"); got != 3 {
			t.Fatalf("%d jobs, want 3", got)
		}
		var order []string
		for _, ids := range f.submitted {
			if len(ids) > 5 {
				t.Errorf("job with %d payloads, %d parameters", len(ids), 4*len(ids))
			}
			order = append(order, ids...)
		}
		var want []string
		for i := range 12 {
			want = append(want, fmt.Sprint("p", i))
		}
		if !slices.Equal(order, want) {
			t.Fatalf("jobs applied %v, want %v in order", order, want)
		}
	})
	t.Run("tables", func(t *testing.T) {
		f := newFakeBackend()
		w := openFake(t, f, Config{MaxTables: 3})
		var group []warehouse.Payload
		for i := range 5 {
			group = append(group, warehousetest.Payload(fmt.Sprint("p", i), warehousetest.Insert(fmt.Sprint("t", i), icol("a", int64(i)))))
		}
		mustApply(t, w, group...)
		// The ledger is one of the 3 tables: 2 payload tables per job.
		if got := f.callCount("jobs.insert"); got != 3 {
			t.Fatalf("%d jobs, want 3", got)
		}
		// With deletes, the temporary table counting them is another.
		group = nil
		for i := range 4 {
			group = append(group, warehousetest.Payload(fmt.Sprint("d", i), warehousetest.Delete(fmt.Sprint("t", i), icol("a", int64(i)))))
		}
		if got := statuses(mustApply(t, w, group...)); got != "Applied Applied Applied Applied" {
			t.Fatalf("deletes: %s", got)
		}
		if got := f.callCount("jobs.insert") - 3; got != 4 {
			t.Fatalf("%d jobs for 4 deletes on 4 tables, want 4", got)
		}
	})
	t.Run("script bytes", func(t *testing.T) {
		f := newFakeBackend()
		w := openFake(t, f, Config{MaxScriptBytes: minScriptBytes})
		var group []warehouse.Payload
		for i := range 150 {
			group = append(group, warehousetest.Payload(fmt.Sprint("p", i), warehousetest.Insert("t", icol("a", int64(i)), icol("b", int64(i)), icol("c", int64(i)))))
		}
		var huge []messages.Activity
		for i := range 100 {
			huge = append(huge, warehousetest.Delete("t", icol("a", int64(i))))
		}
		group = append(group, warehousetest.Payload("huge", huge...))
		outcomes := mustApply(t, w, group...)
		if outcomes[150].Status != warehouse.Rejected || !strings.Contains(outcomes[150].Err.Error(), "script") ||
			messages.ClassOf(outcomes[150].Err) != messages.ClassPermanent {
			t.Fatalf("huge payload: %s %v, want Rejected for its script size", statuses(outcomes[150:]), outcomes[150].Err)
		}
		if got := statuses(outcomes[:150]); strings.Count(got, "Applied") != 150 {
			t.Fatalf("outcomes %s", got)
		}
		for _, s := range f.scripts {
			if len(s) > minScriptBytes {
				t.Errorf("script of %d bytes, limit %d", len(s), minScriptBytes)
			}
		}
		if got := f.callCount("jobs.insert"); got < 3 {
			t.Fatalf("150 payloads in %d jobs of at most 4 KiB of script?", got)
		}
		t.Logf("150 payloads in %d jobs of at most %d bytes", f.callCount("jobs.insert"), minScriptBytes)
	})
	t.Run("a payload over the parameter limit", func(t *testing.T) {
		f := newFakeBackend()
		w := openFake(t, f, Config{MaxParams: 10})
		var cols []messages.Column
		for i := range 10 {
			cols = append(cols, icol(fmt.Sprint("c", i), int64(i)))
		}
		outcomes := mustApply(t, w, warehousetest.Payload("wide", warehousetest.Insert("t", cols...)), warehousetest.Payload("narrow", warehousetest.Insert("t", icol("c0", int64(1)))))
		if got := statuses(outcomes); got != "Rejected Applied" {
			t.Fatalf("outcomes %s", got)
		}
		if !strings.Contains(outcomes[0].Err.Error(), "11 query parameters") {
			t.Fatalf("rejection %v does not say why", outcomes[0].Err)
		}
	})
}

// The example payload shape at scale: every payload deletes by three
// columns and inserts three. Reports how many jobs, DML statements and
// metadata calls 1,000 of them cost.
func TestThousandPayloadsOnOneTable(t *testing.T) {
	build := func(n int) []warehouse.Payload {
		var group []warehouse.Payload
		for i := range n {
			group = append(group, warehousetest.Payload(fmt.Sprintf("payload-%04d", i),
				warehousetest.Delete("table1", icol("a", int64(i)), scol("c", "2019-04-28 10:24:30.183414"), scol("e", "something")),
				warehousetest.Insert("table1", icol("a", int64(i)), scol("b", "Backup and Restore"), scol("c", "2018-03-27 11:58:28.988414")),
			))
		}
		return group
	}
	for _, tc := range []struct {
		name      string
		groupSize int
		wantJobs  int
	}{
		{"one Apply of 1000", 1000, 1},
		{"GroupCommitter's default groups of 200", 200, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeBackend()
			f.setTable("table1", bigquery.Schema{int64Field("a"), {Name: "b", Type: "STRING"}, {Name: "c", Type: "STRING"}, {Name: "e", Type: "STRING"}})
			w := openFake(t, f, Config{})
			metadataBefore := f.callCount("tables.get")
			group := build(1000)
			began := time.Now()
			for start := 0; start < len(group); start += tc.groupSize {
				outcomes := mustApply(t, w, group[start:start+tc.groupSize]...)
				if got := statuses(outcomes); strings.Count(got, "Applied") != tc.groupSize {
					t.Fatalf("outcomes %s", got)
				}
			}
			took := time.Since(began)
			jobs := f.callCount("jobs.insert")
			dml := f.dmlPerTable()["table1"]
			var scriptBytes int
			for _, s := range f.scripts {
				scriptBytes = max(scriptBytes, len(s))
			}
			t.Logf("1000 payloads in groups of %d: %d jobs, %d DML statements on table1, %d metadata reads, %d schema updates, largest script %d bytes, adapter CPU time %v",
				tc.groupSize, jobs, dml, f.callCount("tables.get")-metadataBefore, f.callCount("tables.patch"), scriptBytes, took)
			if jobs != tc.wantJobs {
				t.Errorf("%d jobs, want %d", jobs, tc.wantJobs)
			}
			if dml != 2*tc.wantJobs {
				t.Errorf("%d DML statements on table1, want %d (one DELETE and one INSERT per job)", dml, 2*tc.wantJobs)
			}
			if got := f.callCount("tables.get") - metadataBefore; got > 1 {
				t.Errorf("%d metadata reads, want at most 1", got)
			}
		})
	}
}

func TestClosedWarehouseRefusesCalls(t *testing.T) {
	f := newFakeBackend()
	w := openFake(t, f, Config{})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := w.Apply(context.Background(), []warehouse.Payload{warehousetest.Payload("p", warehousetest.Insert("t", icol("a", int64(1))))})
	if !errors.Is(err, ErrClosed) || messages.ClassOf(err) != messages.ClassTransient {
		t.Fatalf("Apply after Close = %v, want transient ErrClosed", err)
	}
	if err := w.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after Close = %v", err)
	}
}
