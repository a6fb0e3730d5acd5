package bigquery

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"cloud.google.com/go/bigquery"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// A job is one multi-statement transaction applying several payloads.
// BigQuery sustains about 25 DML statements per table every 10 seconds
// (more queue, then fail), so the job does not run one statement per
// activity: per table, it batches inserts into one multi-row INSERT per
// column set and deletes into one DELETE whose WHERE is the OR of their
// predicates, wherever that keeps every payload's outcome what running the
// activities one by one in group order would give.
//
// Starting from group order, activities on different tables never
// interact, and on one table the planner only ever swaps an insert with a
// delete, which is safe when the inserted row cannot match the delete's
// predicate (values are known; a column the insert lacks is NULL; every
// doubt counts as a match). Each activity joins the last batch if it is of
// its kind, or else the batch before it if it may pass every activity of
// the last one; otherwise it starts a batch. So inserts keep their order
// among inserts and deletes among deletes, and within a combined DELETE a
// row is counted for the first predicate, in group order, that matches it
// (a CASE counts them before the DELETE runs): what running the activities
// one by one would count.

// op is one resolved activity placed in a job plan.
type op struct {
	// payload is the payload's index in the job; deletes count rows per
	// payload under it.
	payload int
	insert  bool
	cols    []opColumn
	// setKey is the case-folded, sorted column set of an insert.
	setKey string
}

type opColumn struct {
	col   columnInfo
	key   string
	value any
	// param names the value's query parameter; empty for NULL.
	param string
	bound boundValue
}

type batch struct {
	insert bool
	ops    []*op
}

// tablePlan is one table's statements in a job, in execution order.
type tablePlan struct {
	table   string
	batches []*batch
}

// place appends o to the table's plan (see the rules above).
func (tp *tablePlan) place(o *op) {
	m := len(tp.batches)
	switch {
	case m > 0 && tp.batches[m-1].insert == o.insert:
		tp.batches[m-1].ops = append(tp.batches[m-1].ops, o)
	case m > 1 && commutesWithAll(o, tp.batches[m-1].ops):
		tp.batches[m-2].ops = append(tp.batches[m-2].ops, o)
	default:
		tp.batches = append(tp.batches, &batch{insert: o.insert, ops: []*op{o}})
	}
}

// commutesWithAll reports whether o, of the other kind than every op in
// others, may move before all of them.
func commutesWithAll(o *op, others []*op) bool {
	for _, x := range others {
		insert, del := o, x
		if !o.insert {
			insert, del = x, o
		}
		if mayMatch(insert, del) {
			return false
		}
	}
	return true
}

// mayMatch reports whether the row insert inserts could match the
// predicate of del.
func mayMatch(insert, del *op) bool {
	for _, p := range del.cols {
		var stored any // a column the insert lacks is NULL
		for _, c := range insert.cols {
			if c.key == p.key {
				stored = c.value
				break
			}
		}
		if definitelyDiffers(p.col, stored, p.value) {
			return false
		}
	}
	return true
}

// jobPlan is the plan of one job: its payloads in group order and, per
// table, its batches. Parameters are named as payloads are added, so adding
// a payload never renames the parameters of the ones before it.
type jobPlan struct {
	// qualifier is "`project`.`dataset`.", prefixed to every table.
	qualifier string
	// offset starts parameter numbers and payload indexes; a large offset
	// renders names at their widest, for size bounds.
	offset int

	payloads     int
	ledgerParams []string
	// recordHash: the ledger has payload_hash, and each payload's hash
	// (when it has one) goes into its ledger row.
	recordHash bool
	// hashes pair a ledger id parameter with its hash parameter.
	hashes     [][2]string
	params     []bigquery.QueryParameter
	paramBytes int
	tables     []*tablePlan
	byTable    map[string]*tablePlan
	hasDeletes bool
	// fence: a payload of the job only inserts, so the job also updates
	// its ledger rows (see render).
	fence bool
}

func newJobPlan(qualifier string, offset int) *jobPlan {
	return &jobPlan{qualifier: qualifier, offset: offset, byTable: map[string]*tablePlan{}}
}

func (jp *jobPlan) newParam(v bigquery.QueryParameterValue, text string) string {
	name := "p" + strconv.Itoa(jp.offset+len(jp.params))
	jp.params = append(jp.params, bigquery.QueryParameter{Name: name, Value: &v})
	jp.paramBytes += paramSize(name, text)
	return name
}

// add appends a checked payload's ledger entry and activities.
func (jp *jobPlan) add(id, hash string, activities []resolvedActivity) error {
	index := jp.offset + jp.payloads
	jp.payloads++
	idParam := jp.newParam(bigquery.QueryParameterValue{Type: bigquery.StandardSQLDataType{TypeKind: "STRING"}, Value: id}, id)
	jp.ledgerParams = append(jp.ledgerParams, idParam)
	if jp.recordHash && hash != "" {
		jp.hashes = append(jp.hashes, [2]string{idParam,
			jp.newParam(bigquery.QueryParameterValue{Type: bigquery.StandardSQLDataType{TypeKind: "STRING"}, Value: hash}, hash)})
	}
	onlyInserts := true
	for _, a := range activities {
		onlyInserts = onlyInserts && a.Op == messages.OpInsert
	}
	jp.fence = jp.fence || onlyInserts
	for _, a := range activities {
		o := &op{payload: index, insert: a.Op == messages.OpInsert, cols: make([]opColumn, len(a.Columns))}
		for i, c := range a.Columns {
			oc := opColumn{col: c.Col, key: c.Key, value: c.Value}
			if c.Value != nil {
				bound, err := bindValue(c.Col.typ, c.Value)
				if err != nil {
					return fmt.Errorf("column %q: %w", c.Col.name, err)
				}
				oc.bound = bound
				oc.param = jp.newParam(bound.param, bound.text)
			}
			o.cols[i] = oc
		}
		if o.insert {
			keys := make([]string, len(o.cols))
			for i, c := range o.cols {
				keys[i] = c.key
			}
			slices.Sort(keys)
			o.setKey = strings.Join(keys, ",")
		} else {
			jp.hasDeletes = true
		}
		tp, ok := jp.byTable[a.Table]
		if !ok {
			tp = &tablePlan{table: a.Table}
			jp.byTable[a.Table] = tp
			jp.tables = append(jp.tables, tp)
		}
		tp.place(o)
	}
	return nil
}

// paramSize estimates a parameter's share of the request body: the JSON of
// its name, type and value, with every byte that encoding/json may escape
// counted at its longest.
func paramSize(name, value string) int {
	n := 80 + len(name)
	for i := 0; i < len(value); i++ {
		switch c := value[i]; {
		case c == '"' || c == '\\':
			n += 2
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			n += 6
		case c >= 0x80:
			n += 2
		default:
			n++
		}
	}
	return n
}

// ledgerConflictMarker starts the error the script raises when a payload
// is already in the ledger: another writer applied it after this Apply read
// the ledger. It is classified transient; the retry finds it Duplicate.
const ledgerConflictMarker = "gatekeeper-ledger-conflict"

// deletedTablePrefix names the script's temporary table of rows deleted
// per payload. BigQuery scopes temporary tables to their script; the
// emulator keeps them per project, and keeps one a failed script created,
// so each job names its own (see deletedTableName).
const deletedTablePrefix = "_gatekeeper_deleted_"

// deletedTableName is the temporary table of the job with id jobID. Every
// name has the same length, so plans measured before the id is known
// measure right.
func deletedTableName(jobID string) string {
	sum := sha256.Sum256([]byte(jobID))
	return deletedTablePrefix + hex.EncodeToString(sum[:8])
}

func quoteIdent(name string) string { return "`" + name + "`" }

// render writes the job's script. Its shape:
//
//	CREATE TEMP TABLE _gatekeeper_deleted_… (k INT64, n INT64); -- with deletes
//	BEGIN TRANSACTION;
//	INSERT INTO ledger ... one row per payload, failing if one is there;
//	per table, per batch:
//	  INSERT INTO t (cols) VALUES (...), (...);             -- per column set
//	  INSERT INTO _gatekeeper_deleted_… SELECT CASE ... per payload;
//	  DELETE FROM t WHERE (...) OR (...);
//	COMMIT TRANSACTION;
//	SELECT k, n FROM _gatekeeper_deleted_…                      -- with deletes
//
// The ledger row is written, and checked, first: a payload another writer
// applied since the ledger was read fails the job before anything else
// ran. The check is an ERROR inside the INSERT rather than IF ... RAISE,
// which the emulator cannot run; IF evaluates ERROR only for a row whose
// id is already there.
//
// There is no EXCEPTION handler (ROLLBACK TRANSACTION; RAISE USING
// MESSAGE = @@error.message): BigQuery rolls a failed transaction back by
// itself; a re-raised error loses its reason (notFound, invalidQuery, …)
// and location, which classification reads; and when COMMIT itself fails,
// as when a concurrent transaction wins, the handler's ROLLBACK finds no
// transaction and its own error would replace the transient abort. The
// emulator parses handlers but never runs them.
func (jp *jobPlan) render(deletedTable string) string {
	var b strings.Builder
	ledger := jp.qualifier + quoteIdent(warehouse.LedgerTable)
	if jp.hasDeletes {
		b.WriteString("CREATE TEMP TABLE " + deletedTable + " (k INT64, n INT64);\n")
	}
	b.WriteString("BEGIN TRANSACTION;\n")
	// A payload's hash is picked by its id with a CASE rather than from a
	// second array by offset or an array of structs, plain SQL that the
	// emulator runs as BigQuery does.
	columns, hashExpr := "(payload_id, applied_at)", ""
	if len(jp.hashes) > 0 {
		columns, hashExpr = "(payload_id, applied_at, payload_hash)", ", CASE id"
		for _, h := range jp.hashes {
			// The CAST keeps the column's type when the emulator reads a
			// hash of digits alone as a number.
			hashExpr += " WHEN @" + h[0] + " THEN CAST(@" + h[1] + " AS STRING)"
		}
		hashExpr += " END"
	}
	b.WriteString("INSERT INTO " + ledger + " " + columns + "\nSELECT id, IF(l.payload_id IS NULL, CURRENT_TIMESTAMP(), ERROR(CONCAT('" +
		ledgerConflictMarker + ": payload ', id, ' is already in the ledger')))" + hashExpr + "\nFROM UNNEST(")
	writeStringArray(&b, jp.ledgerParams)
	b.WriteString(") AS id LEFT JOIN " + ledger + " AS l ON l.payload_id = id;\n")
	if jp.fence {
		// BigQuery commits transactions that only insert side by side, so
		// two processes could both apply one insert-only payload: each
		// one's ledger check reads a snapshot without the other's row.
		// Updating the ledger rows makes the job a mutating transaction
		// on the ledger, and of two such transactions that overlap,
		// BigQuery aborts the later to commit; its retry finds the
		// payload in the ledger.
		b.WriteString("UPDATE " + ledger + " SET applied_at = applied_at WHERE payload_id IN UNNEST(")
		writeStringArray(&b, jp.ledgerParams)
		b.WriteString(");\n")
	}
	for _, tp := range jp.tables {
		table := jp.qualifier + quoteIdent(tp.table)
		for _, bt := range tp.batches {
			if bt.insert {
				writeInserts(&b, table, bt.ops)
			} else {
				writeDeletes(&b, table, deletedTable, bt.ops)
			}
		}
	}
	b.WriteString("COMMIT TRANSACTION;\n")
	if jp.hasDeletes {
		b.WriteString("SELECT k, n FROM " + deletedTable)
	}
	return b.String()
}

// arrayChunk bounds the elements of one array literal: the emulator
// builds an array with one SQLite function call, whose arguments are
// limited to 127.
const arrayChunk = 100

// writeStringArray writes an ARRAY<STRING> of the named parameters, as
// ARRAY_CONCAT of literals of at most arrayChunk elements.
func writeStringArray(b *strings.Builder, names []string) {
	if len(names) > arrayChunk {
		b.WriteString("ARRAY_CONCAT(")
	}
	for start := 0; start < len(names); start += arrayChunk {
		if start > 0 {
			b.WriteString(", ")
		}
		b.WriteString("ARRAY<STRING>[")
		for i, name := range names[start:min(start+arrayChunk, len(names))] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('@')
			b.WriteString(name)
		}
		b.WriteByte(']')
	}
	if len(names) > arrayChunk {
		b.WriteByte(')')
	}
}

// writeInserts writes one multi-row INSERT per column set, in the order
// the sets first appear.
func writeInserts(b *strings.Builder, table string, ops []*op) {
	var sets []string
	bySet := map[string][]*op{}
	for _, o := range ops {
		if _, ok := bySet[o.setKey]; !ok {
			sets = append(sets, o.setKey)
		}
		bySet[o.setKey] = append(bySet[o.setKey], o)
	}
	for _, set := range sets {
		rows := bySet[set]
		header := rows[0].cols
		b.WriteString("INSERT INTO " + table + " (")
		for i, c := range header {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quoteIdent(c.col.name))
		}
		b.WriteString(") VALUES\n")
		for r, o := range rows {
			if r > 0 {
				b.WriteString(",\n")
			}
			b.WriteByte('(')
			for i, h := range header {
				if i > 0 {
					b.WriteString(", ")
				}
				writeValue(b, columnByKey(o.cols, h.key))
			}
			b.WriteByte(')')
		}
		b.WriteString(";\n")
	}
}

func columnByKey(cols []opColumn, key string) opColumn {
	for _, c := range cols {
		if c.key == key {
			return c
		}
	}
	// Same set key, so every key is there.
	panic("bigquery: column " + key + " missing from an insert of its column set")
}

// writeDeletes counts, per payload, the rows the batch's predicates remove
// (each row under the first predicate that matches it), then removes them.
func writeDeletes(b *strings.Builder, table, deletedTable string, ops []*op) {
	b.WriteString("INSERT INTO " + deletedTable + " (k, n)\nSELECT k, COUNT(*) FROM (SELECT CASE")
	for _, o := range ops {
		b.WriteString("\n  WHEN ")
		writePredicate(b, o)
		b.WriteString(" THEN ")
		b.WriteString(strconv.Itoa(o.payload))
	}
	b.WriteString("\n  END AS k FROM " + table + ") WHERE k IS NOT NULL GROUP BY k;\n")
	b.WriteString("DELETE FROM " + table + " WHERE ")
	writeChained(b, len(ops), "\n  OR ", func(i int) { writePredicate(b, ops[i]) })
	b.WriteString(";\n")
}

// writeChained writes n terms joined by op, nesting them in parenthesised
// groups of at most arrayChunk: the emulator turns a flat chain of AND or
// OR into one SQLite function call, whose arguments are limited to 127.
// BigQuery reads either form alike.
func writeChained(b *strings.Builder, n int, op string, term func(i int)) {
	var write func(from, to int)
	write = func(from, to int) {
		count := to - from
		if count <= arrayChunk {
			for i := from; i < to; i++ {
				if i > from {
					b.WriteString(op)
				}
				term(i)
			}
			return
		}
		size := arrayChunk
		for size*arrayChunk < count {
			size *= arrayChunk
		}
		for start := from; start < to; start += size {
			if start > from {
				b.WriteString(op)
			}
			b.WriteByte('(')
			write(start, min(start+size, to))
			b.WriteByte(')')
		}
	}
	write(0, n)
}

func writePredicate(b *strings.Builder, o *op) {
	b.WriteByte('(')
	writeChained(b, len(o.cols), " AND ", func(i int) {
		c := o.cols[i]
		name := quoteIdent(c.col.name)
		switch {
		case c.value == nil:
			b.WriteString(name + " IS NULL")
		case c.col.typ.Base == messages.TypeJSON:
			// JSON has no equality; its canonical text does. The IF keeps
			// TO_JSON_STRING away from NULLs, which crash the emulator.
			b.WriteString("IF(" + name + " IS NULL, FALSE, TO_JSON_STRING(" + name + ") = TO_JSON_STRING(")
			c.bound.expr(b, c.param)
			b.WriteString("))")
		default:
			b.WriteString(name + " = ")
			c.bound.expr(b, c.param)
		}
	})
	b.WriteByte(')')
}

func writeValue(b *strings.Builder, c opColumn) {
	if c.value == nil {
		b.WriteString(nullExpr(c.col.typ))
		return
	}
	c.bound.expr(b, c.param)
}

// dmlStatements counts the DML statements the job runs on each table,
// the ledger's included.
func (jp *jobPlan) dmlStatements() map[string]int {
	counts := map[string]int{warehouse.LedgerTable: 1}
	if jp.fence {
		counts[warehouse.LedgerTable]++
	}
	for _, tp := range jp.tables {
		for _, bt := range tp.batches {
			if !bt.insert {
				counts[tp.table]++
				continue
			}
			sets := map[string]bool{}
			for _, o := range bt.ops {
				sets[o.setKey] = true
			}
			counts[tp.table] += len(sets)
		}
	}
	return counts
}
