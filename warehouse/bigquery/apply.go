package bigquery

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"cloud.google.com/go/bigquery"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// errSchemaRace means a table changed between reading its metadata and
// changing it: created by someone else, or updated since its ETag.
var errSchemaRace = errors.New("table changed concurrently")

// maxSchemaRaces bounds how often one Apply starts over after a schema
// race before leaving it to the caller's retry.
const maxSchemaRaces = 3

// applyRun is one Apply's view of the tables: each table is read at most
// once per Apply unless something proves the read stale, so every payload
// of the group is checked against the same schema.
type applyRun struct {
	w    *Warehouse
	view map[string]*tableInfo
	// fresh tables were read from BigQuery during this Apply.
	fresh map[string]bool
}

func (r *applyRun) lookup(ctx context.Context, table string) (*tableInfo, error) {
	if info, ok := r.view[table]; ok {
		return info, nil
	}
	if info, ok := r.w.cache.cached(table); ok {
		r.view[table] = info
		return info, nil
	}
	return r.reload(ctx, table)
}

// lookupTable is lookup as the plan reads tables.
func (r *applyRun) lookupTable(ctx context.Context, table string) (*tableInfo, bool, error) {
	info, err := r.lookup(ctx, table)
	return info, info != nil, err
}

func (r *applyRun) reload(ctx context.Context, table string) (*tableInfo, error) {
	info, err := r.w.cache.read(ctx, table)
	if err != nil {
		return nil, err
	}
	r.view[table] = info
	r.fresh[table] = true
	return info, nil
}

func (r *applyRun) stored(table string, info *tableInfo) {
	r.w.cache.store(table, info)
	r.view[table] = info
	r.fresh[table] = true
}

// forget drops what this Apply and the cache know of tables.
func (r *applyRun) forget(tables ...string) {
	r.w.cache.invalidate(tables...)
	for _, t := range tables {
		delete(r.view, t)
		delete(r.fresh, t)
	}
}

func reject(outcomes []warehouse.Outcome, it *item, problem error) {
	outcomes[it.index] = warehouse.Outcome{Status: warehouse.Rejected, Err: messages.Permanent(problem)}
}

// apply applies items, none of them in the ledger, in order, writing their
// outcomes. An error ends the whole Apply.
func (r *applyRun) apply(ctx context.Context, items []*item, outcomes []warehouse.Outcome) error {
	if len(items) == 0 {
		return nil
	}
	var accepted []*item
	for race := 0; ; race++ {
		plan, ok, rejected, err := r.check(ctx, items)
		if err != nil {
			return groupError("read table metadata", err)
		}
		err = r.ensureSchema(ctx, plan)
		if errors.Is(err, errSchemaRace) {
			if race < maxSchemaRaces {
				r.w.logger.Debug("Table changed while applying; checking again", "error", err)
				continue
			}
			return &opError{op: "change table schema", err: messages.Transient(err)}
		}
		if err != nil {
			return err
		}
		for _, rj := range rejected {
			reject(outcomes, rj.item, rj.problem)
			r.w.logger.Debug("Payload rejected", "payload_id", rj.item.payload.ID, "error", rj.problem)
		}
		accepted = ok
		break
	}
	for _, chunk := range r.split(accepted) {
		if err := r.runChunk(ctx, chunk, outcomes); err != nil {
			return err
		}
	}
	return nil
}

type rejection struct {
	item    *item
	problem error
}

// check checks every item in order: against the schema, then against the
// limits of one job. A rejection that depends on the schema is only final
// once the tables involved were read during this Apply: if re-reading one
// shows a change, checking starts over.
func (r *applyRun) check(ctx context.Context, items []*item) (*schemaPlan, []*item, []rejection, error) {
restart:
	for {
		plan := warehouse.NewPlan(planRules, r.lookupTable)
		var accepted []*item
		var rejected []rejection
		for _, it := range items {
			res, err := plan.Check(ctx, it.payload.Activities)
			if err != nil {
				return nil, nil, nil, err
			}
			if res.Problem == nil {
				size, problem := r.measure(it.payload.ID, it.payload.Hash, res.Activities)
				if problem != nil {
					r.w.logger.Warn("Payload rejected: too large for one BigQuery job", "payload_id", it.payload.ID, "error", problem)
					rejected = append(rejected, rejection{item: it, problem: problem})
					continue
				}
				plan.Accept(res)
				it.activities, it.size = res.Activities, size
				accepted = append(accepted, it)
				continue
			}
			if isSchemaProblem(res.Problem) {
				changed := false
				for _, t := range res.Consulted {
					if r.fresh[t] {
						continue
					}
					before := r.view[t]
					after, err := r.reload(ctx, t)
					if err != nil {
						return nil, nil, nil, err
					}
					changed = changed || !sameSchema(before, after)
				}
				if changed {
					continue restart
				}
			}
			rejected = append(rejected, rejection{item: it, problem: res.Problem})
		}
		return plan, accepted, rejected, nil
	}
}

// ensureSchema creates the tables and adds the columns the plan needs:
// one API call per table, whatever the number of payloads and columns.
func (r *applyRun) ensureSchema(ctx context.Context, plan *schemaPlan) error {
	for _, pt := range plan.Tables() {
		table := pt.Name
		current := r.view[table]
		if !pt.Exists {
			if current != nil {
				r.forget(table)
				return fmt.Errorf("table %q: %w", table, errSchemaRace)
			}
			schema := make(bigquery.Schema, 0, len(pt.Added))
			for _, c := range pt.Added {
				schema = append(schema, fieldSchema(c.name, c.typ))
			}
			info, err := r.w.backend.createTable(ctx, table, schema, clusterColumns(schema))
			if isDuplicate(err) {
				r.forget(table)
				return fmt.Errorf("create table %q: %w", table, errSchemaRace)
			}
			if err != nil {
				return groupError(fmt.Sprintf("create table %q", table), err)
			}
			r.stored(table, info)
			r.w.logger.Info("BigQuery table created", "table", table, "columns", len(schema))
			continue
		}
		if current == nil {
			r.forget(table)
			return fmt.Errorf("table %q: %w", table, errSchemaRace)
		}
		schema := slices.Clone(current.schema)
		added := 0
		for _, c := range pt.Added {
			if _, ok := current.Column(c.name); !ok {
				schema = append(schema, fieldSchema(c.name, c.typ))
				added++
			}
		}
		if added == 0 {
			continue
		}
		info, err := r.w.backend.updateSchema(ctx, table, schema, current.etag)
		if isPreconditionFailed(err) || isNotFound(err) {
			r.forget(table)
			return fmt.Errorf("add columns to table %q: %w", table, errSchemaRace)
		}
		if err != nil {
			return groupError(fmt.Sprintf("add columns to table %q", table), err)
		}
		r.stored(table, info)
		r.w.logger.Info("BigQuery columns added", "table", table, "columns", added)
	}
	return nil
}

// clusterColumns is how a table gatekeeper creates is clustered: by its
// first column of a type BigQuery clusters by, in the order the creating
// payload names them. That is the row's key in the usual payload shape,
// and the column a delete names first: a group's DELETE then reads the
// blocks of the keys it names instead of the whole table, which bills
// bytes in proportion to the group, not to the table
// (docs.cloud.google.com/bigquery/docs/clustered-tables). None when no
// column qualifies.
func clusterColumns(schema bigquery.Schema) []string {
	for _, f := range schema {
		switch messages.BaseType(f.Type) {
		case messages.TypeInt64, messages.TypeString, messages.TypeDate, messages.TypeDatetime,
			messages.TypeTimestamp, messages.TypeBool, messages.TypeNumeric, messages.TypeBigNumeric:
			return []string{f.Name}
		}
	}
	return nil
}

// jobSize is what one payload needs of a job, alone, with every name at
// its widest: a bound of what it adds to any job.
type jobSize struct {
	params  int
	script  int
	request int
	tables  []string
	deletes bool
}

// wideOffset numbers parameters and payloads from a value wider than any
// real job reaches (MaxParams is at most 10,000), so a plan rendered with
// it is at least as long as the same payload's share of any real script.
const wideOffset = 1_000_000

// measure sizes a checked payload, and says why it cannot fit any job.
func (r *applyRun) measure(id, hash string, activities []resolvedActivity) (jobSize, error) {
	cfg := r.w.cfg
	alone := r.newPlan(wideOffset)
	if err := alone.add(id, hash, activities); err != nil {
		return jobSize{}, err
	}
	size := jobSize{params: len(alone.params), deletes: alone.hasDeletes}
	for _, tp := range alone.tables {
		size.tables = append(size.tables, tp.table)
	}
	size.script = len(alone.render(deletedTableName("")))
	size.request = size.script + alone.paramBytes
	switch tables := transactionTables(len(size.tables), size.deletes); {
	case size.params > cfg.MaxParams:
		return size, fmt.Errorf("payload needs %d query parameters (one per non-NULL value, plus one for the id and one for its hash, if any); one BigQuery job takes at most %d", size.params, cfg.MaxParams)
	case tables > cfg.MaxTables:
		return size, fmt.Errorf("payload's transaction modifies %d tables, counting the ledger (and, with deletes, a temporary table); one BigQuery transaction modifies at most %d", tables, cfg.MaxTables)
	case size.script <= cfg.MaxScriptBytes && size.request <= cfg.MaxRequestBytes:
		return size, nil
	}
	// The bound is loose: measure exactly before refusing.
	exact := r.newPlan(0)
	_ = exact.add(id, hash, activities) // bound once already
	script := len(exact.render(deletedTableName("")))
	switch {
	case script > cfg.MaxScriptBytes:
		return size, fmt.Errorf("payload needs a %d-byte script; one BigQuery job takes at most %d", script, cfg.MaxScriptBytes)
	case script+exact.paramBytes > cfg.MaxRequestBytes:
		return size, fmt.Errorf("payload needs a request of about %d bytes; one BigQuery job takes at most %d", script+exact.paramBytes, cfg.MaxRequestBytes)
	}
	return size, nil
}

// transactionTables is how many tables a job's transaction modifies: the
// payloads' tables, the ledger, and the temporary table counting deleted
// rows, which BigQuery may count too.
func transactionTables(payloadTables int, deletes bool) int {
	n := payloadTables + 1
	if deletes {
		n++
	}
	return n
}

// split cuts measured items, in order, into jobs within BigQuery's limits.
func (r *applyRun) split(items []*item) [][]*item {
	cfg := r.w.cfg
	var (
		chunks       [][]*item
		current      []*item
		tables       map[string]bool
		deletes      bool
		params       int
		scriptBound  int // an upper bound of the current chunk's script length
		requestBound int // and of its request size
	)
	closeChunk := func() {
		if len(current) > 0 {
			chunks = append(chunks, current)
		}
		current, tables, deletes, params, scriptBound, requestBound = nil, map[string]bool{}, false, 0, 0, 0
	}
	closeChunk()
	for _, it := range items {
		addScript, addRequest := it.size.script, it.size.request
		if len(current) > 0 {
			union := len(tables)
			for _, t := range it.size.tables {
				if !tables[t] {
					union++
				}
			}
			fits := params+it.size.params <= cfg.MaxParams && transactionTables(union, deletes || it.size.deletes) <= cfg.MaxTables
			if fits && (scriptBound+addScript > cfg.MaxScriptBytes || requestBound+addRequest > cfg.MaxRequestBytes) {
				// The bound is loose (it counts the fixed statements
				// twice and every name at its widest): measure exactly.
				exact := r.buildPlan(append(slices.Clone(current), it))
				script := len(exact.render(deletedTableName("")))
				fits = script <= cfg.MaxScriptBytes && script+exact.paramBytes <= cfg.MaxRequestBytes
				if fits {
					scriptBound, requestBound = script, script+exact.paramBytes
					addScript, addRequest = 0, 0
				}
			}
			if !fits {
				closeChunk()
			}
		}
		current = append(current, it)
		for _, t := range it.size.tables {
			tables[t] = true
		}
		deletes = deletes || it.size.deletes
		params += it.size.params
		scriptBound += addScript
		requestBound += addRequest
	}
	closeChunk()
	return chunks
}

// newPlan is a job plan that records payload hashes when the ledger can.
func (r *applyRun) newPlan(offset int) *jobPlan {
	jp := newJobPlan(r.w.qualifier, offset)
	jp.recordHash = r.w.ledgerHash
	return jp
}

func (r *applyRun) buildPlan(items []*item) *jobPlan {
	jp := r.newPlan(0)
	for _, it := range items {
		// Every value was bound once by the check already.
		_ = jp.add(it.payload.ID, it.payload.Hash, it.activities)
	}
	return jp
}

// runChunk applies one job's payloads. When the job fails permanently the
// fault is one payload's, or a few: the chunk is bisected, and each half
// checked again and applied, until the payloads at fault are alone and
// Rejected. Halves run in order, so group order holds.
func (r *applyRun) runChunk(ctx context.Context, chunk []*item, outcomes []warehouse.Outcome) error {
	jp := r.buildPlan(chunk)
	ids := make([]string, len(chunk))
	for i, it := range chunk {
		ids[i] = it.payload.ID
	}
	key := jobKey(r.w.cfg.ProjectID, r.w.cfg.DatasetID, ids)
	var script string
	rows, err := r.w.runJob(ctx, key, func(jobID string) string {
		script = jp.render(deletedTableName(jobID))
		return script
	}, jp)
	if err == nil {
		deleted, err := deletedCounts(rows)
		if err != nil {
			return groupError("read the rows deleted", err)
		}
		for i, it := range chunk {
			var inserted int64
			for _, a := range it.activities {
				if a.Op == messages.OpInsert {
					inserted++
				}
			}
			outcomes[it.index] = warehouse.Outcome{Status: warehouse.Applied, RowsAffected: inserted + deleted[i]}
		}
		r.w.logger.Debug("BigQuery job applied", "payloads", len(chunk), "tables", len(jp.tables),
			"dml_statements", jp.dmlStatements(), "script_bytes", len(script), "params", len(jp.params))
		return nil
	}

	// The schema may be what changed under the job: the next attempt,
	// or the bisection, reads it again.
	for _, tp := range jp.tables {
		r.forget(tp.table)
	}
	classified := classify(shorten(err))
	if messages.ClassOf(classified) != messages.ClassPermanent {
		return &opError{op: fmt.Sprintf("job applying %d payloads", len(chunk)), err: classified}
	}
	if len(chunk) == 1 {
		reject(outcomes, chunk[0], fmt.Errorf("bigquery job: %w", classified))
		r.w.logger.Info("Payload rejected by BigQuery", "payload_id", chunk[0].payload.ID, "error", classified)
		return nil
	}
	r.w.logger.Info("BigQuery job failed permanently; bisecting it to find the payload at fault",
		"payloads", len(chunk), "error", classified)
	half := len(chunk) / 2
	if err := r.apply(ctx, chunk[:half], outcomes); err != nil {
		return err
	}
	return r.apply(ctx, chunk[half:], outcomes)
}

// deletedCounts reads the script's last statement: rows deleted per
// payload index.
func deletedCounts(rows [][]bigquery.Value) (map[int]int64, error) {
	counts := map[int]int64{}
	for _, row := range rows {
		if len(row) != 2 {
			return nil, fmt.Errorf("row of %d columns, want 2", len(row))
		}
		k, ok1 := row[0].(int64)
		n, ok2 := row[1].(int64)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("row (%T, %T), want two INT64", row[0], row[1])
		}
		counts[int(k)] += n
	}
	return counts, nil
}

// runJob runs a script as the job of key's current attempt. If BigQuery
// already has a job by that id (a submission whose reply was lost, or one
// from before a restart), it waits for that job instead of submitting.
func (w *Warehouse) runJob(ctx context.Context, key string, script func(jobID string) string, jp *jobPlan) ([][]bigquery.Value, error) {
	if jp.fence {
		select {
		case w.fenced <- struct{}{}:
			defer func() { <-w.fenced }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	id := w.attempts.id(key)
	counts := jp.dmlStatements()
	waited, err := w.budget.reserve(ctx, counts)
	if waited > 0 {
		w.stats.throttledJobs.Add(1)
		w.stats.throttledWait.Add(int64(waited))
	}
	if err != nil {
		return nil, err
	}
	j, err := w.backend.submit(ctx, id, script(id), jp.params, jp)
	if isDuplicate(err) {
		w.logger.Info("BigQuery job exists already; waiting for it instead", "job_id", id)
		j, err = w.backend.attach(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	rows, err := j.result(ctx, jp.hasDeletes)
	if b, ok := j.(billedJob); ok {
		w.stats.billed.Add(b.billedBytes())
	}
	var failed *jobFailedError
	switch {
	case err == nil:
		w.attempts.succeeded(key)
	case errors.As(err, &failed):
		w.attempts.failed(key)
	}
	return rows, err
}
