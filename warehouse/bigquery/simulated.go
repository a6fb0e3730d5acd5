package bigquery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/bigquery/bqsim"
)

// OpenSimulated opens the warehouse over a simulator of BigQuery's rules
// instead of BigQuery, for measuring the apply stage at scale (go run
// ./bench/bqsim). Several warehouses opened over one simulator are several
// processes sharing one BigQuery. cfg.ProjectID and cfg.DatasetID default
// to "sim" and "gatekeeper".
func OpenSimulated(ctx context.Context, cfg Config, logger *slog.Logger, sim *bqsim.Sim) (*Warehouse, error) {
	if cfg.ProjectID == "" {
		cfg.ProjectID = "sim"
	}
	if cfg.DatasetID == "" {
		cfg.DatasetID = "gatekeeper"
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid bigquery warehouse config: %w", err)
	}
	return open(ctx, cfg, logger, &simBackend{sim: sim})
}

// simBackend is backend over bqsim. It hands the simulator each job's
// plan (its statements, rows and predicates) rather than its SQL, which
// the simulator does not run; the SQL's length and parameters count
// toward the request's limits.
type simBackend struct {
	sim *bqsim.Sim
}

// simError turns a simulator error into what the client library returns:
// a *googleapi.Error for API calls.
func simError(err error) error {
	var se *bqsim.Error
	if !errors.As(err, &se) {
		return err
	}
	return &googleapi.Error{Code: se.Code, Message: se.Message, Errors: []googleapi.ErrorItem{{Reason: se.Reason, Message: se.Message}}}
}

func (b *simBackend) datasetLocation(context.Context) (string, error) { return "US", nil }
func (b *simBackend) createDataset(context.Context, string) error     { return nil }
func (b *simBackend) setLocation(string)                              {}
func (b *simBackend) close() error                                    { return nil }

func simTableInfo(m bqsim.TableMeta) *tableInfo { return newTableInfo(m.Name, m.Schema, m.ETag) }

func (b *simBackend) table(_ context.Context, name string) (*tableInfo, error) {
	m, ok := b.sim.Table(name)
	if !ok {
		return nil, nil
	}
	return simTableInfo(m), nil
}

func (b *simBackend) createTable(_ context.Context, name string, schema bigquery.Schema, clusterBy []string) (*tableInfo, error) {
	folded := make([]string, len(clusterBy))
	for i, c := range clusterBy {
		folded[i] = strings.ToLower(c)
	}
	m, err := b.sim.CreateTable(name, schema, folded)
	if err != nil {
		return nil, simError(err)
	}
	return simTableInfo(m), nil
}

func (b *simBackend) updateSchema(_ context.Context, name string, schema bigquery.Schema, etag string) (*tableInfo, error) {
	m, err := b.sim.UpdateSchema(name, schema, etag)
	if err != nil {
		return nil, simError(err)
	}
	return simTableInfo(m), nil
}

func (b *simBackend) tableNames(context.Context) ([]string, error) { return b.sim.TableNames(), nil }

// insertRows takes the events log's streaming inserts, which the
// simulator does not keep: DML quotas do not apply to them.
func (b *simBackend) insertRows(_ context.Context, name string, _ []bigquery.ValueSaver) error {
	if _, ok := b.sim.Table(name); !ok {
		return simError(&bqsim.Error{Code: 404, Reason: "notFound", Message: "Not found: Table " + name})
	}
	return nil
}

// query answers the ledger lookup; the simulator runs no other query, so
// the events log and the readers see nothing.
func (b *simBackend) query(_ context.Context, sql string, params []bigquery.QueryParameter) ([][]bigquery.Value, error) {
	if !strings.Contains(sql, quoteIdent(warehouse.LedgerTable)+" WHERE payload_id IN UNNEST(") {
		return nil, nil
	}
	ids := make([]any, 0, len(params))
	for _, p := range params {
		ids = append(ids, p.Value)
	}
	var rows [][]bigquery.Value
	for _, r := range b.sim.Lookup(warehouse.LedgerTable, "payload_id", ids) {
		row := []bigquery.Value{r["payload_id"]}
		if strings.Contains(sql, "payload_hash") {
			row = append(row, r["payload_hash"])
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (b *simBackend) submit(ctx context.Context, jobID, sql string, params []bigquery.QueryParameter, plan *jobPlan) (job, error) {
	j := bqsim.Job{ID: jobID, Chars: len(sql), Params: len(params)}
	if plan != nil {
		j.RequestBytes = len(sql) + plan.paramBytes
		j.Statements = simStatements(plan)
		if plan.hasDeletes {
			j.TempTables = 1
		}
	}
	h, err := b.sim.Submit(ctx, j)
	if err != nil {
		return nil, simError(err)
	}
	return simJob{h}, nil
}

func (b *simBackend) attach(_ context.Context, jobID string) (job, error) {
	h, err := b.sim.Attach(jobID)
	if err != nil {
		return nil, simError(err)
	}
	return simJob{h}, nil
}

type simJob struct{ h *bqsim.Handle }

func (j simJob) billedBytes() int64 {
	if !j.h.Done() {
		return 0
	}
	res, _ := j.h.Wait(context.Background())
	return res.BilledBytes
}

func (j simJob) result(ctx context.Context, wantRows bool) ([][]bigquery.Value, error) {
	res, err := j.h.Wait(ctx)
	var se *bqsim.Error
	if errors.As(err, &se) {
		return nil, &jobFailedError{err: &bigquery.Error{Reason: se.Reason, Message: se.Message}}
	}
	if err != nil {
		return nil, err
	}
	if !wantRows {
		return nil, nil
	}
	var rows [][]bigquery.Value
	for k, n := range res.Deleted {
		rows = append(rows, []bigquery.Value{int64(k), n})
	}
	return rows, nil
}

// simStatements is the plan's statements as render writes them: the
// ledger's INSERT, then per table and batch one INSERT per column set or
// one DELETE. A value is its parameter's text, so that equal values of a
// column compare equal.
func simStatements(jp *jobPlan) []bqsim.Statement {
	ledger := bqsim.Statement{Table: warehouse.LedgerTable, Insert: true, Unique: "payload_id",
		ErrorMessage: func(id any) string {
			return fmt.Sprintf("%s: payload %v is already in the ledger", ledgerConflictMarker, id)
		}}
	hashes := map[string]string{}
	for _, h := range jp.hashes {
		hashes[h[0]] = h[1]
	}
	values := map[string]string{}
	for _, p := range jp.params {
		if v, ok := p.Value.(*bigquery.QueryParameterValue); ok {
			values[p.Name] = fmt.Sprint(v.Value)
		}
	}
	for _, idParam := range jp.ledgerParams {
		row := bqsim.Row{"payload_id": values[idParam]}
		if h, ok := hashes[idParam]; ok {
			row["payload_hash"] = values[h]
		}
		ledger.Rows = append(ledger.Rows, row)
	}
	stmts := []bqsim.Statement{ledger}
	if jp.fence {
		fence := bqsim.Statement{Table: warehouse.LedgerTable, Update: true}
		for _, r := range ledger.Rows {
			fence.Where = append(fence.Where, bqsim.Predicate{Conds: []bqsim.Cond{{Column: "payload_id", Value: r["payload_id"]}}})
		}
		stmts = append(stmts, fence)
	}
	for _, tp := range jp.tables {
		for _, bt := range tp.batches {
			if !bt.insert {
				st := bqsim.Statement{Table: tp.table}
				for _, o := range bt.ops {
					p := bqsim.Predicate{Tag: o.payload}
					for _, c := range o.cols {
						cond := bqsim.Cond{Column: c.key}
						if c.value != nil {
							cond.Value = c.bound.text
						}
						p.Conds = append(p.Conds, cond)
					}
					st.Where = append(st.Where, p)
				}
				stmts = append(stmts, st)
				continue
			}
			var sets []string
			bySet := map[string]*bqsim.Statement{}
			for _, o := range bt.ops {
				st, ok := bySet[o.setKey]
				if !ok {
					st = &bqsim.Statement{Table: tp.table, Insert: true}
					bySet[o.setKey] = st
					sets = append(sets, o.setKey)
				}
				row := bqsim.Row{}
				for _, c := range o.cols {
					if c.value != nil {
						row[c.key] = c.bound.text
					}
				}
				st.Rows = append(st.Rows, row)
			}
			for _, s := range sets {
				stmts = append(stmts, *bySet[s])
			}
		}
	}
	return stmts
}
