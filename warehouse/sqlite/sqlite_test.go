package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/sqlite"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// SQLite has every feature the suite knows.
var features = warehousetest.Features{AddsColumns: true, LedgerRowsAffected: true}

func TestConformance(t *testing.T) {
	warehousetest.Run(t, features, func(t *testing.T) warehouse.Store {
		return openWarehouse(t, sqlite.Config{})
	})
}

func TestConformance_without_delete_indexes(t *testing.T) {
	warehousetest.Run(t, features, func(t *testing.T) warehouse.Store {
		return openWarehouse(t, sqlite.Config{DisableDeleteIndexes: true})
	})
}

func openWarehouse(t testing.TB, cfg sqlite.Config) *sqlite.Warehouse {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "warehouse.db")
	}
	w, err := sqlite.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

// rawDB opens the warehouse's file behind its back, as another process
// would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func col(name string, b messages.BaseType, v any) messages.Column {
	return warehousetest.Col(name, messages.ColumnType{Base: b}, v)
}

func mustApply(t *testing.T, w *sqlite.Warehouse, group ...warehouse.Payload) []warehouse.Outcome {
	t.Helper()
	out, err := w.Apply(context.Background(), group)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return out
}

func TestConfig_Validate_reports_every_problem(t *testing.T) {
	err := sqlite.Config{Path: "db?x=1", BusyTimeout: -time.Second, MaxReaders: -1}.Validate()
	for _, want := range []string{"Path", "BusyTimeout", "MaxReaders"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
	for _, path := range []string{"", ":memory:", "file:x.db", "file::memory:?cache=shared"} {
		if _, err := sqlite.Open(context.Background(), sqlite.Config{Path: path}, nil); err == nil {
			t.Errorf("Open(%q) succeeded, want an error", path)
		}
	}
}

// The declared types must give every BigQuery type an affinity that stores
// its values unchanged: text stays text however numeric it looks, and
// decimals never become floats.
func TestStorage_keeps_values_in_the_right_storage_class(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	w := openWarehouse(t, sqlite.Config{Path: path})
	cases := []struct {
		column  messages.Column
		storage string
	}{
		{col("s", messages.TypeString, "0123"), "text"},
		{col("n", messages.TypeNumeric, "100000000000000000000000000001"), "text"},
		{messages.Column{Name: "n_ps", Type: messages.ColumnType{Base: messages.TypeNumeric, Precision: 10, Scale: 2}, Value: "12.5"}, "text"},
		{col("bn", messages.TypeBigNumeric, "1e3"), "text"},
		{col("j", messages.TypeJSON, "123"), "text"},
		{col("d", messages.TypeDate, "2019-04-28"), "text"},
		{col("dt", messages.TypeDatetime, "2019-04-28 10:24:30"), "text"},
		{col("ts", messages.TypeTimestamp, "2019-04-28T10:24:30Z"), "text"},
		{col("tm", messages.TypeTime, "10:24:30"), "text"},
		{col("i", messages.TypeInt64, int64(42)), "integer"},
		{col("f", messages.TypeFloat64, 3.0), "real"},
		{col("b", messages.TypeBool, false), "integer"},
		{col("by", messages.TypeBytes, []byte("0123")), "blob"},
	}
	var cols []messages.Column
	for _, c := range cases {
		cols = append(cols, c.column)
	}
	if out := mustApply(t, w, warehousetest.Payload("p", warehousetest.Insert("t", cols...))); out[0].Status != warehouse.Applied {
		t.Fatalf("outcome %+v", out[0])
	}

	db := rawDB(t, path)
	for _, c := range cases {
		var storage, text string
		q := fmt.Sprintf(`SELECT typeof(%q), CAST(%q AS TEXT) FROM t`, c.column.Name, c.column.Name)
		if err := db.QueryRow(q).Scan(&storage, &text); err != nil {
			t.Fatal(err)
		}
		if storage != c.storage {
			t.Errorf("%s (%s) is stored as %s, want %s", c.column.Name, c.column.Type.Base, storage, c.storage)
		}
		if s, ok := c.column.Value.(string); ok && text != s {
			t.Errorf("%s (%s) holds %q, want %q unchanged", c.column.Name, c.column.Type.Base, text, s)
		}
	}
}

func TestApply_rejects_payloads_on_tables_it_did_not_create(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	w := openWarehouse(t, sqlite.Config{Path: path})
	if _, err := rawDB(t, path).Exec(`CREATE TABLE foreign_made (a TEXT)`); err != nil {
		t.Fatal(err)
	}
	out := mustApply(t, w, warehousetest.Payload("p", warehousetest.Insert("foreign_made", col("a", messages.TypeString, "x"))))
	if out[0].Status != warehouse.Rejected || messages.ClassOf(out[0].Err) != messages.ClassPermanent {
		t.Fatalf("outcome %+v, want a permanent rejection", out[0])
	}
	if !strings.Contains(out[0].Err.Error(), "not written by gatekeeper") {
		t.Errorf("rejection %q does not say why", out[0].Err)
	}
	if _, err := w.Schema(context.Background(), "foreign_made"); err == nil {
		t.Error("Schema of a foreign table succeeded")
	}
}

func TestApply_refuses_reserved_table_names(t *testing.T) {
	w := openWarehouse(t, sqlite.Config{})
	out := mustApply(t, w,
		warehousetest.Payload("ledger", warehousetest.Insert(warehouse.LedgerTable, col("payload_id", messages.TypeString, "forged"))),
		warehousetest.Payload("sqlite", warehousetest.Insert("sqlite_mine", col("a", messages.TypeInt64, int64(1)))),
	)
	for i, o := range out {
		if o.Status != warehouse.Rejected {
			t.Errorf("payload %d: %+v, want Rejected", i, o)
		}
	}
	if ok, _ := w.Applied(context.Background(), "forged"); ok {
		t.Error("a payload forged a ledger entry")
	}
}

// Another process holding the write lock is a transient condition: the
// group fails as a whole, and succeeds once the lock is gone.
// A lock held past the busy timeout is the database's state, not the
// payload's: an outage, which the apply stage holds payloads through.
func TestApply_is_an_outage_while_another_writer_holds_the_lock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	w := openWarehouse(t, sqlite.Config{Path: path, BusyTimeout: 50 * time.Millisecond})
	db := rawDB(t, path)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}

	p := warehousetest.Payload("p", warehousetest.Insert("t", col("a", messages.TypeInt64, int64(1))))
	_, err = w.Apply(context.Background(), []warehouse.Payload{p})
	if err == nil || messages.ClassOf(err) != messages.ClassOutage || warehouse.Reason(err) != warehouse.ReasonBusy {
		t.Fatalf("Apply while locked = %v (class %q, reason %q), want an outage, busy", err, messages.ClassOf(err), warehouse.Reason(err))
	}

	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if out := mustApply(t, w, p); out[0].Status != warehouse.Applied {
		t.Fatalf("after the lock was released: %+v", out[0])
	}
}

// A context that ends mid-group rolls the whole group back; the writer
// connection stays usable.
func TestApply_rolls_back_the_whole_group_when_its_context_ends(t *testing.T) {
	// A committed group first, so the adapter trusts its schema cache and
	// must itself forget what the rolled-back group created.
	fresh := func() *sqlite.Warehouse {
		w := openWarehouse(t, sqlite.Config{})
		mustApply(t, w, warehousetest.Payload("setup", warehousetest.Insert("setup", col("a", messages.TypeInt64, int64(1)))))
		return w
	}
	w := fresh()
	var group []warehouse.Payload
	for i := range 300 {
		var acts []messages.Activity
		for j := range 20 {
			acts = append(acts, warehousetest.Insert(fmt.Sprintf("t%d", j), col("a", messages.TypeInt64, int64(i)), col("b", messages.TypeString, "x")))
		}
		group = append(group, warehousetest.Payload(fmt.Sprintf("p%d", i), acts...))
	}

	failures := 0
	for timeout := 4 * time.Millisecond; timeout > 0 && failures == 0; timeout /= 2 {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_, err := w.Apply(ctx, group)
		cancel()
		if err == nil {
			t.Logf("group finished within %v; trying a shorter deadline", timeout)
			// It committed: start over on a fresh warehouse next round.
			w = fresh()
			continue
		}
		failures++
		if messages.ClassOf(err) != messages.ClassTransient {
			t.Fatalf("Apply with an ended context = %v (class %q), want transient", err, messages.ClassOf(err))
		}
	}
	if failures == 0 {
		t.Skip("the group always finished before its deadline; nothing to check")
	}
	tables, err := w.Tables(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 1 {
		t.Fatalf("tables %v, want only the setup table after a rolled-back group", tables)
	}
	if ok, _ := w.Applied(context.Background(), "p0"); ok {
		t.Fatal("the ledger kept a payload of a rolled-back group")
	}
	out := mustApply(t, w, group[:2]...)
	if out[0].Status != warehouse.Applied || out[1].Status != warehouse.Applied {
		t.Fatalf("after the rollback: %+v", out)
	}
}

// A payload failing on SQLite's own limit after some of its DDL ran is
// rejected, and the schema cache must forget that DDL: a later payload of
// the same group cannot use the columns.
func TestApply_forgets_the_ddl_of_a_payload_sqlite_refused(t *testing.T) {
	w := openWarehouse(t, sqlite.Config{})
	wide := func(from, to int) []messages.Column {
		var cols []messages.Column
		for i := from; i < to; i++ {
			cols = append(cols, col(fmt.Sprintf("c%d", i), messages.TypeInt64, int64(i)))
		}
		return cols
	}
	out := mustApply(t, w,
		warehousetest.Payload("base", warehousetest.Insert("wide", wide(0, 1990)...)),
		// SQLite allows 2000 columns: the 11th ALTER fails.
		warehousetest.Payload("too-wide", warehousetest.Insert("wide", wide(0, 2010)...)),
		warehousetest.Payload("uses-c1995", warehousetest.Delete("wide", col("c1995", messages.TypeInt64, int64(1995)))),
		warehousetest.Payload("after", warehousetest.Insert("wide", col("c1", messages.TypeInt64, int64(-1)))),
	)
	want := []warehouse.Status{warehouse.Applied, warehouse.Rejected, warehouse.Rejected, warehouse.Applied}
	for i, o := range out {
		if o.Status != want[i] {
			t.Fatalf("outcome %d = %+v, want status %d", i, o, want[i])
		}
	}
	if !errors.Is(out[2].Err, warehouse.ErrColumnNotFound) {
		t.Errorf("delete by a rolled-back column: %v, want ErrColumnNotFound", out[2].Err)
	}
	schema, err := w.Schema(context.Background(), "wide")
	if err != nil {
		t.Fatal(err)
	}
	if len(schema) != 1990 {
		t.Errorf("table has %d columns, want the 1990 of the applied payload", len(schema))
	}
}

// Another process changing the schema between groups must not leave the
// adapter working from a stale cache.
func TestApply_notices_schema_changes_made_by_another_process(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	w := openWarehouse(t, sqlite.Config{Path: path})
	mustApply(t, w, warehousetest.Payload("p1", warehousetest.Insert("t", col("a", messages.TypeInt64, int64(1)))))
	if _, err := rawDB(t, path).Exec(`DROP TABLE t`); err != nil {
		t.Fatal(err)
	}
	out := mustApply(t, w,
		warehousetest.Payload("p2", warehousetest.Delete("t", col("a", messages.TypeInt64, int64(1)))),
		warehousetest.Payload("p3", warehousetest.Insert("t", col("a", messages.TypeString, "now a string"))),
	)
	if !errors.Is(out[0].Err, warehouse.ErrTableNotFound) {
		t.Errorf("delete on the dropped table: %+v, want ErrTableNotFound", out[0])
	}
	if out[1].Status != warehouse.Applied {
		t.Errorf("insert recreating the table: %+v", out[1])
	}
}

func deleteIndexes(t *testing.T, path, table string) []string {
	t.Helper()
	rows, err := rawDB(t, path).Query(`SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? AND name LIKE '\_gatekeeper\_del\_%' ESCAPE '\' ORDER BY name`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}

func TestDeleteIndexes(t *testing.T) {
	example := func(id string, a int64) warehouse.Payload {
		return warehousetest.Payload(id,
			warehousetest.Delete("table1", col("a", messages.TypeInt64, int64(3)), col("c", messages.TypeString, "2019-04-28 10:24:30.183414"), col("e", messages.TypeString, "something")),
			warehousetest.Insert("table1", col("a", messages.TypeInt64, a), col("b", messages.TypeString, "Backup and Restore"), col("c", messages.TypeString, "x"), col("e", messages.TypeString, nil)),
		)
	}
	setup := warehousetest.Payload("setup", warehousetest.Insert("table1", col("a", messages.TypeInt64, int64(0)), col("b", messages.TypeString, "b"), col("c", messages.TypeString, "c"), col("e", messages.TypeString, "e")))

	t.Run("one_index_per_column_set", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "w.db")
		w := openWarehouse(t, sqlite.Config{Path: path})
		mustApply(t, w, setup, example("p1", 1), example("p2", 2))
		// The same set in another order, with a NULL, shares the index.
		mustApply(t, w, warehousetest.Payload("p3", warehousetest.Delete("table1", col("e", messages.TypeString, nil), col("c", messages.TypeString, "x"), col("a", messages.TypeInt64, int64(1)))))
		if got := deleteIndexes(t, path, "table1"); len(got) != 1 {
			t.Fatalf("indexes %v, want one for the set {a,c,e}", got)
		}
		planRows, err := rawDB(t, path).Query(`EXPLAIN QUERY PLAN DELETE FROM table1 WHERE a = 1 AND c = 'x' AND e = 'y'`)
		if err != nil {
			t.Fatal(err)
		}
		var plan string
		for planRows.Next() {
			var id, parent, unused int
			var detail string
			if err := planRows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan += detail + ";"
		}
		planRows.Close()
		if !strings.Contains(plan, "USING INDEX _gatekeeper_del_") {
			t.Errorf("the delete's query plan is %q, want it to use the index", plan)
		}
		tables, _ := w.Tables(context.Background())
		if len(tables) != 1 || tables[0] != "table1" {
			t.Errorf("Tables() = %v", tables)
		}
	})

	t.Run("bounded_per_table", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "w.db")
		w := openWarehouse(t, sqlite.Config{Path: path})
		mustApply(t, w, setup)
		names := []string{"a", "b", "c", "e"}
		for mask := 1; mask < 16; mask++ {
			var cols []messages.Column
			for bit, n := range names {
				if mask&(1<<bit) != 0 {
					cols = append(cols, col(n, messages.TypeString, "v"))
					if n == "a" {
						cols[len(cols)-1] = col(n, messages.TypeInt64, int64(7))
					}
				}
			}
			out := mustApply(t, w, warehousetest.Payload(fmt.Sprintf("d%d", mask), warehousetest.Delete("table1", cols...)))
			if out[0].Status != warehouse.Applied {
				t.Fatalf("delete %d: %+v", mask, out[0])
			}
		}
		if got := deleteIndexes(t, path, "table1"); len(got) != 8 {
			t.Fatalf("%d indexes for 15 column sets, want the cap of 8", len(got))
		}
	})

	t.Run("disabled", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "w.db")
		w := openWarehouse(t, sqlite.Config{Path: path, DisableDeleteIndexes: true})
		mustApply(t, w, setup, example("p1", 1))
		if got := deleteIndexes(t, path, "table1"); len(got) != 0 {
			t.Fatalf("indexes %v although disabled", got)
		}
	})
}

func TestWarehouse_keeps_the_ledger_across_reopening(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	p := warehousetest.Payload("p", warehousetest.Insert("t", col("a", messages.TypeInt64, int64(1))))
	first, err := sqlite.Open(context.Background(), sqlite.Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, first, p)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Apply(context.Background(), []warehouse.Payload{p}); !errors.Is(err, sqlite.ErrClosed) || messages.ClassOf(err) != messages.ClassTransient {
		t.Errorf("Apply after Close = %v, want transient ErrClosed", err)
	}

	second := openWarehouse(t, sqlite.Config{Path: path})
	if out := mustApply(t, second, p); out[0].Status != warehouse.Duplicate {
		t.Fatalf("after reopening: %+v, want Duplicate", out[0])
	}
	rows, err := second.Rows(context.Background(), "t", 0)
	if err != nil || len(rows) != 1 {
		t.Fatalf("rows %v, %v; want one", rows, err)
	}
}

func TestApply_with_an_ended_context_writes_nothing(t *testing.T) {
	w := openWarehouse(t, sqlite.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := w.Apply(ctx, []warehouse.Payload{warehousetest.Payload("p", warehousetest.Insert("t", col("a", messages.TypeInt64, int64(1))))})
	if !errors.Is(err, context.Canceled) || messages.ClassOf(err) != messages.ClassTransient {
		t.Fatalf("Apply = %v, want transient context.Canceled", err)
	}
	if ok, _ := w.Applied(context.Background(), "p"); ok {
		t.Fatal("payload applied with a cancelled context")
	}
}

// The example payload, through the gate's parser: its delete names
// column e, which only a table that already has it can satisfy.
func TestApply_the_example_payload(t *testing.T) {
	body := []byte(`{"activities":[
  {"operation":"delete","table":"table1","value_to_delete":{"col_names":["a","c","e"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[3,"2019-04-28 10:24:30.183414","something"]}},
  {"operation":"insert","table":"table1","col_names":["a","b","c"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[1,"Backup and Restore","2018-03-27 11:58:28.988414"]}
]}`)
	parsed, err := messages.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	w := openWarehouse(t, sqlite.Config{})
	out := mustApply(t, w, warehouse.Payload{ID: "example", Activities: parsed.Activities})
	if !errors.Is(out[0].Err, warehouse.ErrTableNotFound) {
		t.Fatalf("on an empty warehouse: %+v, want ErrTableNotFound", out[0])
	}

	out = mustApply(t, w,
		warehousetest.Payload("setup",
			warehousetest.Insert("table1", col("a", messages.TypeInt64, int64(3)), col("c", messages.TypeString, "2019-04-28 10:24:30.183414"), col("e", messages.TypeString, "something")),
			warehousetest.Insert("table1", col("a", messages.TypeInt64, int64(4)), col("c", messages.TypeString, "2019-04-28 10:24:30.183414"), col("e", messages.TypeString, "something")),
		),
		warehouse.Payload{ID: "example", Activities: parsed.Activities},
	)
	if out[1].Status != warehouse.Applied || out[1].RowsAffected != 2 {
		t.Fatalf("with table1 in place: %+v, want Applied with 1 row deleted and 1 inserted", out[1])
	}
	rows, err := w.Rows(context.Background(), "table1", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"a": int64(1), "b": "Backup and Restore", "c": "2018-03-27 11:58:28.988414", "e": nil},
		{"a": int64(4), "b": nil, "c": "2019-04-28 10:24:30.183414", "e": "something"},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("rows %v, want %v", rows, want)
	}
}

// Acknowledgement follows durability: by default a commit waits for the disk.
func TestConfig_Sync_defaults_to_full(t *testing.T) {
	for _, tc := range []struct {
		sync sqlite.Sync
		want int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{{"", 2}, {sqlite.SyncFull, 2}, {sqlite.SyncNormal, 1}} {
		w := openWarehouse(t, sqlite.Config{Sync: tc.sync})
		mustApply(t, w, warehousetest.Payload("p", warehousetest.Insert("t", col("a", messages.TypeInt64, int64(1)))))
		if got := sqlite.WriterSynchronous(t, w); got != tc.want {
			t.Errorf("Sync=%q: synchronous = %d, want %d", tc.sync, got, tc.want)
		}
	}
}

// Readiness must see what the apply stage sees: a database another process
// holds locked refuses writes, though WAL keeps reads working.
func TestPing_fails_while_another_connection_holds_the_write_lock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "warehouse.db")
	w := openWarehouse(t, sqlite.Config{Path: path, ProbeTimeout: 100 * time.Millisecond})
	ctx := context.Background()
	if err := w.Ping(ctx); err != nil {
		t.Fatalf("Ping on an idle database: %v", err)
	}
	locker, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	conn, err := locker.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	err = w.Ping(ctx)
	if err == nil || messages.ClassOf(err) != messages.ClassOutage {
		t.Fatalf("Ping while locked: %v (class %q), want an outage", err, messages.ClassOf(err))
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := w.Ping(ctx); err != nil {
		t.Fatalf("Ping after the lock is released: %v", err)
	}
}

// A file whose pages were zeroed under a running warehouse is an outage for
// Apply and Ping, never a rejection of the payloads. Once a copy is written
// back over the file, in place, the warehouse writes again without being
// reopened: it dropped its writer connection, whose cache held the zeroed
// pages.
func TestApply_is_an_outage_on_a_corrupted_file_and_recovers_when_it_is_restored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "warehouse.db")
	w := openWarehouse(t, sqlite.Config{Path: path, BusyTimeout: time.Second})
	ctx := context.Background()
	mustApply(t, w, warehousetest.Payload("p1", warehousetest.Insert("t", col("a", messages.TypeInt64, int64(1)))))

	copyOf := warehousetest.CorruptSQLite(t, path)

	p2 := warehousetest.Payload("p2", warehousetest.Insert("t", col("a", messages.TypeInt64, int64(2))))
	for i := range 3 {
		_, err := w.Apply(ctx, []warehouse.Payload{p2})
		if messages.ClassOf(err) != messages.ClassOutage || warehouse.Reason(err) != warehouse.ReasonStorage {
			t.Fatalf("Apply %d on a zeroed file = %v (class %q, reason %q), want an outage, storage", i, err, messages.ClassOf(err), warehouse.Reason(err))
		}
	}
	if err := w.Ping(ctx); messages.ClassOf(err) != messages.ClassOutage {
		t.Fatalf("Ping on a zeroed file = %v (class %q), want an outage", err, messages.ClassOf(err))
	}

	warehousetest.RestoreSQLite(t, path, copyOf)
	if out := mustApply(t, w, p2); out[0].Status != warehouse.Applied {
		t.Fatalf("after the restore: %+v", out[0])
	}
	if err := w.Ping(ctx); err != nil {
		t.Fatalf("Ping after the restore: %v", err)
	}
	if ok, err := w.Applied(ctx, "p1"); err != nil || !ok {
		t.Fatalf("p1, applied before the copy, is not in the restored ledger: %v %v", ok, err)
	}
}
