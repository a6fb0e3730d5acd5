// Package warehousetest is the conformance suite every warehouse adapter
// passes: the semantics of Apply (one outcome per payload, each payload all
// or nothing, the ledger, type mapping and value round trips) are defined
// here once, without SQL, so SQLite and BigQuery cannot drift apart.
//
// An adapter's test calls Run with the Features of the backend it tests and
// a Factory:
//
//	func TestConformance(t *testing.T) {
//		features := warehousetest.Features{AddsColumns: true}
//		warehousetest.Run(t, features, func(t *testing.T) warehouse.Store {
//			w := openFreshWarehouse(t)
//			t.Cleanup(func() { w.Close() })
//			return w
//		})
//	}
//
// Scenarios that need a feature the backend lacks are skipped. Every other
// scenario gets its own fresh warehouse and runs in parallel with the
// others; use go test's -parallel flag to throttle a remote backend.
package warehousetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// Factory opens a fresh, empty warehouse for one scenario and arranges its
// cleanup (t.Cleanup).
type Factory func(t *testing.T) warehouse.Store

// Features are what a backend under test can do. A scenario that needs a
// feature the backend lacks is skipped, saying which; the zero value lacks
// everything optional, so an adapter claims each feature it has.
type Features struct {
	// AddsColumns: an insert naming columns an existing table lacks adds
	// them, and later activities and payloads can use them at once.
	AddsColumns bool
	// LedgerRowsAffected: the ledger records each applied payload's rows
	// affected, and State reports them; without it State may report -1.
	LedgerRowsAffected bool
}

type scenario struct {
	name string
	run  func(t *testing.T, w warehouse.Store)
	// runWith, for scenarios whose expectations depend on the features,
	// runs instead of run.
	runWith func(t *testing.T, f Features, w warehouse.Store)
	// addsColumns scenarios need Features.AddsColumns.
	addsColumns bool
}

var scenarios = []scenario{
	{name: "empty_warehouse_lists_no_tables", run: emptyWarehouseListsNoTables},
	{name: "empty_group_is_no_error", run: emptyGroupIsNoError},
	{name: "insert_creates_table_with_exact_types", run: insertCreatesTableWithExactTypes},
	{name: "insert_adds_missing_columns", run: insertAddsMissingColumns, addsColumns: true},
	{name: "column_names_are_case_insensitive", run: columnNamesAreCaseInsensitive},
	{name: "incompatible_column_type_rejects_payload", run: incompatibleColumnTypeRejectsPayload},
	{name: "delete_removes_exactly_the_matching_rows", run: deleteRemovesExactlyTheMatchingRows},
	{name: "delete_matches_every_type", run: deleteMatchesEveryType},
	{name: "delete_on_missing_table_rejects_payload", run: deleteOnMissingTableRejectsPayload},
	{name: "delete_on_missing_column_rejects_payload", run: deleteOnMissingColumnRejectsPayload},
	{name: "delete_with_conflicting_type_rejects_payload", run: deleteWithConflictingTypeRejectsPayload},
	{name: "activities_apply_in_order", run: activitiesApplyInOrder},
	{name: "delete_may_use_what_earlier_inserts_created", run: deleteMayUseWhatEarlierInsertsCreated, addsColumns: true},
	{name: "second_apply_of_a_payload_is_duplicate", run: secondApplyOfAPayloadIsDuplicate},
	{name: "duplicate_is_reported_even_when_it_would_now_fail", run: duplicateIsReportedEvenWhenItWouldNowFail},
	{name: "same_id_twice_in_one_group", run: sameIDTwiceInOneGroup},
	{name: "same_id_with_a_different_hash_is_rejected", run: sameIDWithADifferentHashIsRejected},
	{name: "same_payload_applied_concurrently_applies_once", run: samePayloadAppliedConcurrentlyAppliesOnce},
	{name: "failing_payload_does_not_affect_its_group", run: failingPayloadDoesNotAffectItsGroup},
	{name: "payload_sees_earlier_payloads_of_its_group", run: payloadSeesEarlierPayloadsOfItsGroup, addsColumns: true},
	{name: "rejected_payload_leaves_no_schema_for_later_payloads", run: rejectedPayloadLeavesNoSchemaForLaterPayloads},
	{name: "awkward_values_and_names_round_trip", run: awkwardValuesAndNamesRoundTrip},
	{name: "applied_reports_only_committed_payloads", run: appliedReportsOnlyCommittedPayloads},
	{name: "rows_honours_limit_and_order", run: rowsHonoursLimitAndOrder},
	{name: "events_append_is_idempotent_by_id", run: appendIsIdempotentByID},
	{name: "events_entries_follow_the_latest_event", run: entriesFollowTheLatestEvent},
	{name: "events_entries_filters", run: entriesFilters},
	{name: "events_entries_honour_limit_and_order", run: entriesHonourLimitAndOrder},
	{name: "events_entries_walk_once_while_the_log_changes", run: entriesWalkOnceWhileTheLogChanges},
	{name: "events_entries_search_by_id_prefix", run: entriesSearchByIDPrefix},
	{name: "events_acks_keep_each_causes_latest", run: acksKeepEachCausesLatest},
	{name: "events_failure_groups_add_up", run: failureGroupsAddUp},
	{name: "check_plans_without_writing", run: checkPlansWithoutWriting},
	{name: "events_history_is_in_event_order", run: historyIsInEventOrder},
	{name: "events_state_reports_ledger_and_log", runWith: stateReportsLedgerAndLog},
}

// Run runs every scenario the features allow against warehouses from
// newWarehouse.
func Run(t *testing.T, features Features, newWarehouse Factory) {
	t.Helper()
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			if s.addsColumns && !features.AddsColumns {
				t.Skip("the backend does not add columns to existing tables (Features.AddsColumns)")
			}
			t.Parallel()
			if s.runWith != nil {
				s.runWith(t, features, newWarehouse(t))
				return
			}
			s.run(t, newWarehouse(t))
		})
	}
}

// ---- building payloads ----

func typ(b messages.BaseType) messages.ColumnType { return messages.ColumnType{Base: b} }

func decimalType(b messages.BaseType, precision, scale int) messages.ColumnType {
	return messages.ColumnType{Base: b, Precision: precision, Scale: scale}
}

var (
	int64Type  = typ(messages.TypeInt64)
	stringType = typ(messages.TypeString)
)

// Col is a column of a test payload.
func Col(name string, t messages.ColumnType, v any) messages.Column {
	return messages.Column{Name: name, Type: t, Value: v}
}

// Insert is an insert activity of a test payload.
func Insert(table string, cols ...messages.Column) messages.Activity {
	return messages.Activity{Op: messages.OpInsert, Table: table, Columns: cols}
}

// Delete is a delete activity of a test payload.
func Delete(table string, cols ...messages.Column) messages.Activity {
	return messages.Activity{Op: messages.OpDelete, Table: table, Columns: cols}
}

// Payload is a test payload; adapters' own tests build theirs with these too.
func Payload(id string, activities ...messages.Activity) warehouse.Payload {
	return warehouse.Payload{ID: id, Activities: activities}
}

// ---- applying and reading ----

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// apply applies group and fails the test on a group-level error. Transient
// errors are retried a few times: a remote backend may have them for
// reasons of its own, and the ledger makes the retry safe.
func apply(t *testing.T, w warehouse.Store, group ...warehouse.Payload) []warehouse.Outcome {
	t.Helper()
	outcomes, err := applyRetrying(testContext(t), t, w, group)
	if err != nil {
		t.Fatalf("Apply(%v): %v", ids(group), err)
	}
	if len(outcomes) != len(group) {
		t.Fatalf("Apply(%v) returned %d outcomes, want %d", ids(group), len(outcomes), len(group))
	}
	return outcomes
}

func applyRetrying(ctx context.Context, t *testing.T, w warehouse.Store, group []warehouse.Payload) ([]warehouse.Outcome, error) {
	var err error
	for attempt := range 5 {
		var outcomes []warehouse.Outcome
		outcomes, err = w.Apply(ctx, group)
		if err == nil || messages.ClassOf(err) != messages.ClassTransient {
			return outcomes, err
		}
		t.Logf("Apply(%v) attempt %d: transient error, retrying: %v", ids(group), attempt+1, err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	return nil, err
}

func ids(group []warehouse.Payload) []string {
	out := make([]string, len(group))
	for i, p := range group {
		out[i] = p.ID
	}
	return out
}

func statusName(s warehouse.Status) string {
	switch s {
	case warehouse.Applied:
		return "Applied"
	case warehouse.Duplicate:
		return "Duplicate"
	case warehouse.Rejected:
		return "Rejected"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

func describe(o warehouse.Outcome) string {
	s := statusName(o.Status)
	if o.Status == warehouse.Applied {
		s += fmt.Sprintf("(rows=%d)", o.RowsAffected)
	}
	if o.Err != nil {
		s += fmt.Sprintf("(%v)", o.Err)
	}
	return s
}

// expectStatuses checks the outcomes' statuses and the invariants every
// outcome keeps: Rejected carries a permanent error, the others none, and
// only Applied counts rows.
func expectStatuses(t *testing.T, got []warehouse.Outcome, want ...warehouse.Status) {
	t.Helper()
	var gotNames, wantNames []string
	for _, o := range got {
		gotNames = append(gotNames, describe(o))
	}
	for _, s := range want {
		wantNames = append(wantNames, statusName(s))
	}
	if len(got) != len(want) {
		t.Fatalf("outcomes %v, want %v", gotNames, wantNames)
	}
	for i, o := range got {
		if o.Status != want[i] {
			t.Fatalf("outcomes %v, want %v", gotNames, wantNames)
		}
		switch o.Status {
		case warehouse.Rejected:
			if o.Err == nil {
				t.Errorf("outcome %d is Rejected without an error", i)
			} else if c := messages.ClassOf(o.Err); c != messages.ClassPermanent {
				t.Errorf("outcome %d: rejection error %v is classified %q, want permanent", i, o.Err, c)
			}
			if o.RowsAffected != 0 {
				t.Errorf("outcome %d is Rejected with RowsAffected %d", i, o.RowsAffected)
			}
		default:
			if o.Err != nil {
				t.Errorf("outcome %d is %s with an error: %v", i, statusName(o.Status), o.Err)
			}
			if o.Status == warehouse.Duplicate && o.RowsAffected != 0 {
				t.Errorf("outcome %d is Duplicate with RowsAffected %d", i, o.RowsAffected)
			}
		}
	}
}

func expectRejectedWith(t *testing.T, o warehouse.Outcome, target error) {
	t.Helper()
	if o.Status != warehouse.Rejected {
		t.Fatalf("outcome is %s, want Rejected with %v", describe(o), target)
	}
	if !errors.Is(o.Err, target) {
		t.Fatalf("rejection error %v is not %v", o.Err, target)
	}
}

func expectRowsAffected(t *testing.T, o warehouse.Outcome, want int64) {
	t.Helper()
	if o.RowsAffected != want {
		t.Errorf("RowsAffected = %d, want %d", o.RowsAffected, want)
	}
}

func tables(t *testing.T, w warehouse.Store) []string {
	t.Helper()
	got, err := w.Tables(testContext(t))
	if err != nil {
		t.Fatalf("Tables: %v", err)
	}
	return got
}

func expectTables(t *testing.T, w warehouse.Store, want ...string) {
	t.Helper()
	got := tables(t, w)
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Tables() = %q, want %q", got, want)
	}
}

func schema(t *testing.T, w warehouse.Store, table string) []warehouse.ColumnSchema {
	t.Helper()
	got, err := w.Schema(testContext(t), table)
	if err != nil {
		t.Fatalf("Schema(%q): %v", table, err)
	}
	return got
}

func expectSchema(t *testing.T, w warehouse.Store, table string, want ...warehouse.ColumnSchema) {
	t.Helper()
	got := schema(t, w, table)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Schema(%q) =\n  %s\nwant\n  %s", table, formatSchema(got), formatSchema(want))
	}
}

func formatSchema(s []warehouse.ColumnSchema) string {
	parts := make([]string, len(s))
	for i, c := range s {
		parts[i] = fmt.Sprintf("%s %+v", c.Name, c.Type)
	}
	return strings.Join(parts, ", ")
}

func rows(t *testing.T, w warehouse.Store, table string) []map[string]any {
	t.Helper()
	got, err := w.Rows(testContext(t), table, 0)
	if err != nil {
		t.Fatalf("Rows(%q): %v", table, err)
	}
	return got
}

type row = map[string]any

func expectRows(t *testing.T, w warehouse.Store, table string, want ...row) {
	t.Helper()
	got := rows(t, w, table)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Rows(%q) =\n  %s\nwant\n  %s", table, formatRows(got), formatRows(want))
	}
}

func formatRows(rs []map[string]any) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		keys := make([]string, 0, len(r))
		for k := range r {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fields := make([]string, len(keys))
		for j, k := range keys {
			fields[j] = fmt.Sprintf("%s=%#v", k, r[k])
		}
		parts[i] = "{" + strings.Join(fields, " ") + "}"
	}
	return strings.Join(parts, "\n  ")
}

func expectApplied(t *testing.T, w warehouse.Store, id string, want bool) {
	t.Helper()
	got, err := w.Applied(testContext(t), id)
	if err != nil {
		t.Fatalf("Applied(%q): %v", id, err)
	}
	if got != want {
		t.Fatalf("Applied(%q) = %v, want %v", id, got, want)
	}
}

// ---- scenarios ----

func emptyWarehouseListsNoTables(t *testing.T, w warehouse.Store) {
	expectTables(t, w)
	if _, err := w.Schema(testContext(t), "nothing_here"); !errors.Is(err, warehouse.ErrTableNotFound) {
		t.Errorf("Schema of a missing table = %v, want ErrTableNotFound", err)
	}
	if _, err := w.Rows(testContext(t), "nothing_here", 0); !errors.Is(err, warehouse.ErrTableNotFound) {
		t.Errorf("Rows of a missing table = %v, want ErrTableNotFound", err)
	}
	expectApplied(t, w, "never-applied", false)
	if err := w.Ping(testContext(t)); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func emptyGroupIsNoError(t *testing.T, w warehouse.Store) {
	for _, group := range [][]warehouse.Payload{nil, {}} {
		outcomes, err := w.Apply(testContext(t), group)
		if err != nil {
			t.Fatalf("Apply(%#v) = %v", group, err)
		}
		if len(outcomes) != 0 {
			t.Fatalf("Apply(%#v) returned %d outcomes", group, len(outcomes))
		}
	}
	expectTables(t, w)
}

// allTypes is one column of every base type, parameterised ones included,
// with a value that a lossy mapping would change: a string that looks like a
// number, an INT64 beyond float64's exact range, decimals with more digits
// than a float64 holds.
func allTypes() (cols []messages.Column, want []warehouse.ColumnSchema) {
	cols = []messages.Column{
		Col("s", stringType, "0123"),
		Col("s_bounded", messages.ColumnType{Base: messages.TypeString, MaxLength: 10}, "Backup"),
		Col("i", int64Type, int64(-9007199254740993)),
		Col("f", typ(messages.TypeFloat64), 3.25),
		Col("n", typ(messages.TypeNumeric), "-12.5"),
		Col("n_ps", decimalType(messages.TypeNumeric, 10, 2), "12345678.9"),
		Col("bn", typ(messages.TypeBigNumeric), "123456789012345678901234567890.123456789"),
		Col("bn_ps", decimalType(messages.TypeBigNumeric, 40, 10), "1.0000000001"),
		Col("b", typ(messages.TypeBool), true),
		Col("d", typ(messages.TypeDate), "2019-04-28"),
		Col("dt", typ(messages.TypeDatetime), "2019-04-28 10:24:30.183414"),
		Col("ts", typ(messages.TypeTimestamp), "2018-03-27T11:58:28.988414Z"),
		Col("tm", typ(messages.TypeTime), "10:24:30.5"),
		Col("j", typ(messages.TypeJSON), `{"a":[1,"x",null],"b":{"c":true}}`),
		Col("by", typ(messages.TypeBytes), []byte{0, 1, 2, 0xff}),
	}
	for _, c := range cols {
		ct := c.Type
		ct.MaxLength = 0 // BigQuery keeps a plain STRING.
		want = append(want, warehouse.ColumnSchema{Name: c.Name, Type: ct})
	}
	return cols, want
}

func rowOf(cols []messages.Column) row {
	r := row{}
	for _, c := range cols {
		r[c.Name] = c.Value
	}
	return r
}

func withValues(cols []messages.Column, values map[string]any) []messages.Column {
	out := slices.Clone(cols)
	for i, c := range out {
		if v, ok := values[c.Name]; ok {
			out[i].Value = v
		}
	}
	return out
}

func nulls(cols []messages.Column) []messages.Column {
	out := slices.Clone(cols)
	for i := range out {
		out[i].Value = nil
	}
	return out
}

func insertCreatesTableWithExactTypes(t *testing.T, w warehouse.Store) {
	cols, wantSchema := allTypes()
	// A second, all-NULL row proves NULL round-trips in every type; it
	// sorts first.
	outcomes := apply(t, w, Payload("p1", Insert("typed", cols...), Insert("typed", nulls(cols)...)))
	expectStatuses(t, outcomes, warehouse.Applied)
	expectRowsAffected(t, outcomes[0], 2)

	expectTables(t, w, "typed")
	expectSchema(t, w, "typed", wantSchema...)
	expectRows(t, w, "typed", rowOf(nulls(cols)), rowOf(cols))
}

func insertAddsMissingColumns(t *testing.T, w warehouse.Store) {
	expectStatuses(t, apply(t, w, Payload("p1", Insert("t", Col("a", int64Type, int64(1))))), warehouse.Applied)
	expectStatuses(t, apply(t, w,
		Payload("p2", Insert("t", Col("a", int64Type, int64(2)), Col("b", stringType, "x"))),
		Payload("p3", Insert("t", Col("b", stringType, "y"), Col("c", typ(messages.TypeNumeric), "1.5"))),
	), warehouse.Applied, warehouse.Applied)

	expectSchema(t, w, "t",
		warehouse.ColumnSchema{Name: "a", Type: int64Type},
		warehouse.ColumnSchema{Name: "b", Type: stringType},
		warehouse.ColumnSchema{Name: "c", Type: typ(messages.TypeNumeric)},
	)
	expectRows(t, w, "t",
		row{"a": nil, "b": "y", "c": "1.5"},
		row{"a": int64(1), "b": nil, "c": nil},
		row{"a": int64(2), "b": "x", "c": nil},
	)
}

func columnNamesAreCaseInsensitive(t *testing.T, w warehouse.Store) {
	outcomes := apply(t, w,
		Payload("p1", Insert("t", Col("Amount", int64Type, int64(1)))),
		Payload("p2", Insert("t", Col("amount", int64Type, int64(2)))),
		Payload("p3", Delete("t", Col("AMOUNT", int64Type, int64(1)))),
	)
	expectStatuses(t, outcomes, warehouse.Applied, warehouse.Applied, warehouse.Applied)
	expectRowsAffected(t, outcomes[2], 1)
	expectSchema(t, w, "t", warehouse.ColumnSchema{Name: "Amount", Type: int64Type})
	expectRows(t, w, "t", row{"Amount": int64(2)})
}

func incompatibleColumnTypeRejectsPayload(t *testing.T, w warehouse.Store) {
	expectStatuses(t, apply(t, w, Payload("setup", Insert("t", Col("a", int64Type, int64(1))))), warehouse.Applied)

	outcomes := apply(t, w, Payload("bad",
		Insert("created_by_bad", Col("x", int64Type, int64(1))),
		Insert("t", Col("added_by_bad", stringType, "v"), Col("a", int64Type, int64(2))),
		Insert("t", Col("a", stringType, "not a number")),
	))
	expectStatuses(t, outcomes, warehouse.Rejected)
	expectRejectedWith(t, outcomes[0], warehouse.ErrTypeConflict)

	expectTables(t, w, "t")
	expectSchema(t, w, "t", warehouse.ColumnSchema{Name: "a", Type: int64Type})
	expectRows(t, w, "t", row{"a": int64(1)})
	expectApplied(t, w, "bad", false)
}

func deleteRemovesExactlyTheMatchingRows(t *testing.T, w warehouse.Store) {
	r := func(a int64, b string, c any) messages.Activity {
		return Insert("t", Col("a", int64Type, a), Col("b", stringType, b), Col("c", stringType, c))
	}
	expectStatuses(t, apply(t, w, Payload("setup",
		r(1, "x", nil), r(1, "y", nil), r(1, "x", "z"), r(2, "x", nil), r(3, "dup", nil), r(3, "dup", nil),
	)), warehouse.Applied)

	outcomes := apply(t, w,
		// NULL matches IS NULL: removes (1,x,NULL) and not (1,x,z).
		Payload("d1", Delete("t", Col("a", int64Type, int64(1)), Col("b", stringType, "x"), Col("c", stringType, nil))),
		// Every matching row goes, duplicates included.
		Payload("d2", Delete("t", Col("a", int64Type, int64(3)), Col("b", stringType, "dup"))),
		// Matching nothing is not an error.
		Payload("d3", Delete("t", Col("a", int64Type, int64(9)))),
	)
	expectStatuses(t, outcomes, warehouse.Applied, warehouse.Applied, warehouse.Applied)
	expectRowsAffected(t, outcomes[0], 1)
	expectRowsAffected(t, outcomes[1], 2)
	expectRowsAffected(t, outcomes[2], 0)
	expectRows(t, w, "t",
		row{"a": int64(1), "b": "x", "c": "z"},
		row{"a": int64(1), "b": "y", "c": nil},
		row{"a": int64(2), "b": "x", "c": nil},
	)
}

func deleteMatchesEveryType(t *testing.T, w warehouse.Store) {
	cols, _ := allTypes()
	other := withValues(cols, map[string]any{"i": int64(7)})
	expectStatuses(t, apply(t, w, Payload("setup", Insert("typed", cols...), Insert("typed", other...))), warehouse.Applied)

	for _, c := range cols {
		// Each column on its own must find the rows holding its value, so
		// no type's equality is broken by how the adapter stores it.
		outcomes := apply(t, w, Payload("probe-"+c.Name,
			Delete("typed", c),
			Insert("typed", cols...),
		))
		expectStatuses(t, outcomes, warehouse.Applied)
		// Both rows share every value but i, so a delete by i removes one
		// row and by any other column two.
		want := int64(2)
		if c.Name == "i" {
			want = 1
		}
		if outcomes[0].RowsAffected != want+1 {
			t.Fatalf("delete by %s (%s) affected %d rows, want %d", c.Name, c.Type.Base, outcomes[0].RowsAffected-1, want)
		}
		if c.Name != "i" {
			// Put the other row back for the next probe.
			expectStatuses(t, apply(t, w, Payload("restore-"+c.Name, Insert("typed", other...))), warehouse.Applied)
		}
	}
	expectStatuses(t, apply(t, w, Payload("all", Delete("typed", cols...))), warehouse.Applied)
	expectRows(t, w, "typed", rowOf(other))
}

// expectUntouched checks that a rejected payload left no trace: no table or
// column its inserts would have created, no row, no ledger entry.
func expectUntouched(t *testing.T, w warehouse.Store, id string) {
	t.Helper()
	expectTables(t, w, "existing")
	expectSchema(t, w, "existing", warehouse.ColumnSchema{Name: "a", Type: int64Type})
	expectRows(t, w, "existing", row{"a": int64(1)})
	expectApplied(t, w, id, false)
}

func setupExisting(t *testing.T, w warehouse.Store) {
	t.Helper()
	expectStatuses(t, apply(t, w, Payload("setup", Insert("existing", Col("a", int64Type, int64(1))))), warehouse.Applied)
}

// writesBeforeTheBadDelete are the activities a rejected payload runs
// before its failing delete: a new table, a new column, a row and a delete.
func writesBeforeTheBadDelete() []messages.Activity {
	return []messages.Activity{
		Insert("new_table", Col("x", int64Type, int64(1))),
		Insert("existing", Col("a", int64Type, int64(2)), Col("new_column", stringType, "v")),
		Delete("existing", Col("a", int64Type, int64(1))),
	}
}

func deleteOnMissingTableRejectsPayload(t *testing.T, w warehouse.Store) {
	setupExisting(t, w)
	activities := append(writesBeforeTheBadDelete(), Delete("missing", Col("a", int64Type, int64(1))))
	outcomes := apply(t, w, Payload("bad", activities...))
	expectStatuses(t, outcomes, warehouse.Rejected)
	expectRejectedWith(t, outcomes[0], warehouse.ErrTableNotFound)
	expectUntouched(t, w, "bad")
}

func deleteOnMissingColumnRejectsPayload(t *testing.T, w warehouse.Store) {
	setupExisting(t, w)
	activities := append(writesBeforeTheBadDelete(), Delete("existing", Col("a", int64Type, int64(2)), Col("missing", int64Type, int64(1))))
	outcomes := apply(t, w, Payload("bad", activities...))
	expectStatuses(t, outcomes, warehouse.Rejected)
	expectRejectedWith(t, outcomes[0], warehouse.ErrColumnNotFound)
	expectUntouched(t, w, "bad")

	// A column only a later activity would add does not count either.
	outcomes = apply(t, w, Payload("bad-order",
		Delete("existing", Col("later", stringType, "v")),
		Insert("existing", Col("a", int64Type, int64(3)), Col("later", stringType, "v")),
	))
	expectStatuses(t, outcomes, warehouse.Rejected)
	expectRejectedWith(t, outcomes[0], warehouse.ErrColumnNotFound)
	expectUntouched(t, w, "bad-order")
}

func deleteWithConflictingTypeRejectsPayload(t *testing.T, w warehouse.Store) {
	setupExisting(t, w)
	activities := append(writesBeforeTheBadDelete(), Delete("existing", Col("a", stringType, "1")))
	outcomes := apply(t, w, Payload("bad", activities...))
	expectStatuses(t, outcomes, warehouse.Rejected)
	expectRejectedWith(t, outcomes[0], warehouse.ErrTypeConflict)
	expectUntouched(t, w, "bad")
}

func activitiesApplyInOrder(t *testing.T, w warehouse.Store) {
	a := func(v int64) messages.Column { return Col("a", int64Type, v) }
	expectStatuses(t, apply(t, w, Payload("setup", Insert("t", a(3)))), warehouse.Applied)

	outcomes := apply(t, w,
		Payload("insert-then-delete", Insert("t", a(1)), Delete("t", a(1))),
		Payload("delete-then-insert", Delete("t", a(3)), Insert("t", a(3))),
	)
	expectStatuses(t, outcomes, warehouse.Applied, warehouse.Applied)
	expectRowsAffected(t, outcomes[0], 2)
	expectRowsAffected(t, outcomes[1], 2)
	expectRows(t, w, "t", row{"a": int64(3)})
}

func deleteMayUseWhatEarlierInsertsCreated(t *testing.T, w warehouse.Store) {
	setupExisting(t, w)
	outcomes := apply(t, w, Payload("p1",
		Insert("fresh", Col("k", int64Type, int64(1)), Col("v", stringType, "gone")),
		Insert("fresh", Col("k", int64Type, int64(2)), Col("v", stringType, "kept")),
		Delete("fresh", Col("v", stringType, "gone")),
		Insert("existing", Col("a", int64Type, int64(5)), Col("added", stringType, "x")),
		Delete("existing", Col("added", stringType, "x")),
	))
	expectStatuses(t, outcomes, warehouse.Applied)
	expectRowsAffected(t, outcomes[0], 5)
	expectRows(t, w, "fresh", row{"k": int64(2), "v": "kept"})
	expectSchema(t, w, "existing",
		warehouse.ColumnSchema{Name: "a", Type: int64Type},
		warehouse.ColumnSchema{Name: "added", Type: stringType},
	)
	expectRows(t, w, "existing", row{"a": int64(1), "added": nil})
}

func secondApplyOfAPayloadIsDuplicate(t *testing.T, w warehouse.Store) {
	p := Payload("once", Insert("t", Col("a", int64Type, int64(1))))
	expectStatuses(t, apply(t, w, p), warehouse.Applied)
	expectStatuses(t, apply(t, w, p), warehouse.Duplicate)
	// The ledger is keyed by id alone: different content, same id, still a
	// duplicate.
	expectStatuses(t, apply(t, w, Payload("once", Insert("t", Col("a", int64Type, int64(2))))), warehouse.Duplicate)
	expectRows(t, w, "t", row{"a": int64(1)})
}

func duplicateIsReportedEvenWhenItWouldNowFail(t *testing.T, w warehouse.Store) {
	expectStatuses(t, apply(t, w, Payload("once", Insert("t", Col("a", int64Type, int64(1))))), warehouse.Applied)
	// The same id again, with activities that cannot apply now (a missing
	// table, a conflicting type) or that would create a table: Duplicate,
	// and nothing of them is written.
	expectStatuses(t, apply(t, w,
		Payload("once", Delete("missing", Col("a", int64Type, int64(1)))),
		Payload("once", Insert("t", Col("a", stringType, "x"))),
		Payload("once", Insert("created_by_a_duplicate", Col("a", int64Type, int64(1)))),
	), warehouse.Duplicate, warehouse.Duplicate, warehouse.Duplicate)
	expectTables(t, w, "t")
	expectRows(t, w, "t", row{"a": int64(1)})
}

// withHash is p carrying the payload hash h.
func withHash(p warehouse.Payload, h string) warehouse.Payload {
	p.Hash = h
	return p
}

// sameIDWithADifferentHashIsRejected: an id the ledger holds under another
// payload hash (an Idempotency-Key reused for other content) is rejected,
// never applied and never reported Duplicate; the same hash, or a hash
// unknown on either side, is a duplicate.
func sameIDWithADifferentHashIsRejected(t *testing.T, w warehouse.Store) {
	const h1, h2 = "1111111111111111111111111111111111111111111111111111111111111111",
		"2222222222222222222222222222222222222222222222222222222222222222"
	first := withHash(Payload("keyed", Insert("t", Col("a", int64Type, int64(1)))), h1)
	other := withHash(Payload("keyed", Insert("t", Col("a", int64Type, int64(2)))), h2)
	expectStatuses(t, apply(t, w, first), warehouse.Applied)

	out := apply(t, w, other)
	expectRejectedWith(t, out[0], warehouse.ErrPayloadMismatch)
	if messages.ClassOf(out[0].Err) != messages.ClassPermanent {
		t.Errorf("mismatch class = %q, want permanent", messages.ClassOf(out[0].Err))
	}
	if want := "payload id keyed was applied with different content: same Idempotency-Key, different payload"; !strings.Contains(out[0].Err.Error(), want) {
		t.Errorf("mismatch error %q does not say %q", out[0].Err, want)
	}
	// Also when the other content could not apply now (a missing table).
	expectRejectedWith(t, apply(t, w, withHash(Payload("keyed", Delete("missing", Col("a", int64Type, int64(1)))), h2))[0],
		warehouse.ErrPayloadMismatch)
	expectStatuses(t, apply(t, w, first, Payload("keyed", Insert("t", Col("a", int64Type, int64(3))))),
		warehouse.Duplicate, warehouse.Duplicate)

	// In one group: the first occurrence applies, a later one with another
	// hash is rejected, one with the same hash is a duplicate.
	g1 := withHash(Payload("group", Insert("t", Col("a", int64Type, int64(10)))), h1)
	g2 := withHash(Payload("group", Insert("t", Col("a", int64Type, int64(20)))), h2)
	out = apply(t, w, g1, g2, g1)
	if out[0].Status != warehouse.Applied || out[2].Status != warehouse.Duplicate {
		t.Fatalf("outcomes %s, %s, %s; want Applied, Rejected, Duplicate", describe(out[0]), describe(out[1]), describe(out[2]))
	}
	expectRejectedWith(t, out[1], warehouse.ErrPayloadMismatch)
	expectRows(t, w, "t", row{"a": int64(1)}, row{"a": int64(10)})
}

func sameIDTwiceInOneGroup(t *testing.T, w warehouse.Store) {
	p := Payload("twice", Insert("t", Col("a", int64Type, int64(1))))
	expectStatuses(t, apply(t, w, p, Payload("other", Insert("t", Col("a", int64Type, int64(2)))), p),
		warehouse.Applied, warehouse.Applied, warehouse.Duplicate)
	expectRows(t, w, "t", row{"a": int64(1)}, row{"a": int64(2)})
}

func samePayloadAppliedConcurrentlyAppliesOnce(t *testing.T, w warehouse.Store) {
	setupExisting(t, w)
	p := Payload("racer", Insert("existing", Col("a", int64Type, int64(2))))
	ctx := testContext(t)
	var wg sync.WaitGroup
	results := make([][]warehouse.Outcome, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			// Both calls touch one table, which the GroupCommitter would
			// never allow; a backend may refuse one of them transiently,
			// and the retry must then find the payload in the ledger.
			results[i], errs[i] = applyRetrying(ctx, t, w, []warehouse.Payload{p})
		})
	}
	wg.Wait()
	var statuses []warehouse.Status
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("Apply %d: %v", i, errs[i])
		}
		if len(results[i]) != 1 {
			t.Fatalf("Apply %d returned %d outcomes", i, len(results[i]))
		}
		statuses = append(statuses, results[i][0].Status)
	}
	slices.Sort(statuses)
	if !slices.Equal(statuses, []warehouse.Status{warehouse.Applied, warehouse.Duplicate}) {
		t.Fatalf("statuses %v, want one Applied and one Duplicate", statuses)
	}
	expectRows(t, w, "existing", row{"a": int64(1)}, row{"a": int64(2)})
}

func failingPayloadDoesNotAffectItsGroup(t *testing.T, w warehouse.Store) {
	setupExisting(t, w)
	bad := append(writesBeforeTheBadDelete(), Delete("missing", Col("a", int64Type, int64(1))))
	outcomes := apply(t, w,
		Payload("first", Insert("existing", Col("a", int64Type, int64(10)))),
		Payload("bad", bad...),
		Payload("last", Insert("existing", Col("a", int64Type, int64(30)))),
	)
	expectStatuses(t, outcomes, warehouse.Applied, warehouse.Rejected, warehouse.Applied)
	expectRejectedWith(t, outcomes[1], warehouse.ErrTableNotFound)
	expectTables(t, w, "existing")
	expectSchema(t, w, "existing", warehouse.ColumnSchema{Name: "a", Type: int64Type})
	expectRows(t, w, "existing", row{"a": int64(1)}, row{"a": int64(10)}, row{"a": int64(30)})
	expectApplied(t, w, "first", true)
	expectApplied(t, w, "bad", false)
	expectApplied(t, w, "last", true)
}

func payloadSeesEarlierPayloadsOfItsGroup(t *testing.T, w warehouse.Store) {
	outcomes := apply(t, w,
		Payload("create", Insert("t", Col("a", int64Type, int64(1)), Col("b", stringType, "x"))),
		Payload("widen", Insert("t", Col("a", int64Type, int64(2)), Col("c", stringType, "y"))),
		Payload("use", Delete("t", Col("c", stringType, "y")), Delete("t", Col("a", int64Type, int64(1)))),
	)
	expectStatuses(t, outcomes, warehouse.Applied, warehouse.Applied, warehouse.Applied)
	expectRowsAffected(t, outcomes[2], 2)
	expectRows(t, w, "t")
	expectSchema(t, w, "t",
		warehouse.ColumnSchema{Name: "a", Type: int64Type},
		warehouse.ColumnSchema{Name: "b", Type: stringType},
		warehouse.ColumnSchema{Name: "c", Type: stringType},
	)
}

func rejectedPayloadLeavesNoSchemaForLaterPayloads(t *testing.T, w warehouse.Store) {
	outcomes := apply(t, w,
		// Creates table t with a INT64 and adds nothing else: rejected.
		Payload("rejected", Insert("t", Col("a", int64Type, int64(1))), Delete("missing", Col("a", int64Type, int64(1)))),
		// Must see no table t: the delete fails.
		Payload("sees-no-table", Delete("t", Col("a", int64Type, int64(1)))),
		// May create t afresh, with another type for a.
		Payload("recreates", Insert("t", Col("a", stringType, "x"))),
		Payload("uses", Delete("t", Col("a", stringType, "x")), Insert("t", Col("a", stringType, "y"))),
	)
	expectStatuses(t, outcomes, warehouse.Rejected, warehouse.Rejected, warehouse.Applied, warehouse.Applied)
	expectRejectedWith(t, outcomes[1], warehouse.ErrTableNotFound)
	expectRowsAffected(t, outcomes[3], 2)
	expectSchema(t, w, "t", warehouse.ColumnSchema{Name: "a", Type: stringType})
	expectRows(t, w, "t", row{"a": "y"})
}

func awkwardValuesAndNamesRoundTrip(t *testing.T, w warehouse.Store) {
	awkward := []string{
		"",
		"it's",
		`say "hi"`,
		`back\slash`,
		"'; DROP TABLE t; --",
		`") OR 1=1 --`,
		"line\nbreak\ttab\r",
		"héllo wörld ✓ 😀 中文",
		"NULL",
		"0",
		"1e3",
		"?",
		"$1 :name @p",
	}
	// Column names that are SQL keywords need quoting in every dialect.
	var inserts []messages.Activity
	var want []row
	for i, s := range awkward {
		inserts = append(inserts, Insert("order",
			Col("select", stringType, s),
			Col("from", int64Type, int64(i)),
			Col("where", typ(messages.TypeJSON), jsonObject(s)),
			Col("group", typ(messages.TypeBytes), []byte(s)),
		))
		want = append(want, row{"select": s, "from": int64(i), "where": jsonObject(s), "group": []byte(s)})
	}
	expectStatuses(t, apply(t, w, Payload("awkward", inserts...)), warehouse.Applied)
	slices.SortFunc(want, func(a, b row) int { return strings.Compare(a["select"].(string), b["select"].(string)) })
	expectRows(t, w, "order", want...)

	// The same values must also match in a delete.
	var deletes []messages.Activity
	for i, s := range awkward {
		deletes = append(deletes, Delete("order", Col("select", stringType, s), Col("from", int64Type, int64(i)), Col("group", typ(messages.TypeBytes), []byte(s))))
	}
	outcomes := apply(t, w, Payload("awkward-delete", deletes...))
	expectStatuses(t, outcomes, warehouse.Applied)
	expectRowsAffected(t, outcomes[0], int64(len(awkward)))
	expectRows(t, w, "order")
}

// jsonObject renders {"s":s} as compact JSON text.
func jsonObject(s string) string {
	b, _ := json.Marshal(map[string]string{"s": s}) // a map of strings always marshals
	return string(b)
}

func appliedReportsOnlyCommittedPayloads(t *testing.T, w warehouse.Store) {
	expectApplied(t, w, "good", false)
	outcomes := apply(t, w,
		Payload("good", Insert("t", Col("a", int64Type, int64(1)))),
		Payload("bad", Insert("t", Col("a", stringType, "x"))),
	)
	expectStatuses(t, outcomes, warehouse.Applied, warehouse.Rejected)
	expectApplied(t, w, "good", true)
	expectApplied(t, w, "bad", false)
	expectStatuses(t, apply(t, w, Payload("good")), warehouse.Duplicate)
	expectApplied(t, w, "good", true)

	// A payload with no activities still applies, and is recorded.
	expectStatuses(t, apply(t, w, Payload("empty")), warehouse.Applied)
	expectApplied(t, w, "empty", true)
	expectTables(t, w, "t")
}

func rowsHonoursLimitAndOrder(t *testing.T, w warehouse.Store) {
	var inserts []messages.Activity
	for _, v := range []int64{5, -2, 3, 9, 0} {
		inserts = append(inserts, Insert("t", Col("a", int64Type, v), Col("b", stringType, "x")))
	}
	inserts = append(inserts, Insert("t", Col("a", int64Type, int64(3)), Col("b", stringType, "a")))
	expectStatuses(t, apply(t, w, Payload("p", inserts...)), warehouse.Applied)

	got, err := w.Rows(testContext(t), "t", 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"a": int64(-2), "b": "x"},
		{"a": int64(0), "b": "x"},
		{"a": int64(3), "b": "a"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Rows(limit 3) =\n  %s\nwant\n  %s", formatRows(got), formatRows(want))
	}
	if all := rows(t, w, "t"); len(all) != 6 {
		t.Fatalf("Rows(no limit) returned %d rows, want 6", len(all))
	}
}
