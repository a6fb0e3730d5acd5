// Package bigquery is the production warehouse: it applies each group of
// payloads to a BigQuery dataset as one multi-statement transaction (a
// query job running BEGIN TRANSACTION … COMMIT TRANSACTION), with the
// semantics warehouse/sqlite defines and warehouse/warehousetest checks.
//
// Per group, Apply:
//
//  1. reads the ledger for the group's payload ids (one parameterised
//     query); payloads found there are Duplicate;
//  2. checks every other payload, in order, against the tables' metadata
//     (cached, read through the tables API, never INFORMATION_SCHEMA):
//     deletes must name tables and columns that exist by then, counting
//     what earlier activities and payloads of the group create, and column
//     types must agree. A payload that fails is Rejected and left out;
//  3. creates the missing tables and adds the missing columns through the
//     tables API, one schema update per table for the whole group, because
//     BigQuery forbids DDL on permanent tables inside a transaction;
//  4. runs one job per group, or several when BigQuery's limits require
//     (tables per transaction, script size, query parameters, request
//     size), each writing its payloads' rows and ledger rows atomically;
//  5. if a job fails permanently, bisects it so the payload at fault is
//     Rejected and the others apply.
//
// Schema changes are not transactional in BigQuery: a table or column
// created for a job that then fails stays, empty or NULL, and the retry
// reuses it.
//
// Throughput. BigQuery allows one mutating transaction per table at a time
// (a second one is aborted) and sustains only a few DML statements per
// table every few seconds. The GroupCommitter never runs two groups on one
// table at once in a process, and the planner (see plan.go) turns a group's
// activities on a table into as few statements as ordering allows: the
// usual group of N delete+insert payloads becomes one DELETE and one
// INSERT per table. Several processes applying to the same tables can still
// collide; BigQuery then aborts one transaction, which is retried.
//
// Exactly once. The ledger row of a payload is written in the same
// transaction as its rows, and the script refuses (with an error classified
// transient) a payload that reached the ledger after step 1. Job ids are
// derived from the payload ids, so a job resubmitted after its reply was
// lost is refused by BigQuery as a duplicate, and Apply waits for the first
// one. BigQuery lets transactions that only insert commit side by side, so
// a job carrying an insert-only payload also updates its payloads' ledger
// rows (a no-op UPDATE): it is then a mutating transaction on the ledger,
// and of two that overlap BigQuery aborts the later to commit, whose retry
// finds the payload applied. Jobs whose payloads all delete conflict on
// their tables already.
package bigquery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

var _ warehouse.Store = (*Warehouse)(nil)

// Warehouse is the BigQuery adapter. It implements warehouse.Warehouse,
// warehouse.Reader and warehouse.EventLog, and is safe for concurrent use.
type Warehouse struct {
	cfg      Config
	logger   *slog.Logger
	backend  backend
	cache    *schemaCache
	attempts *jobAttempts
	locks    *idLocks
	budget   *dmlBudget
	// fenced holds the one job of this process that updates the ledger
	// (the insert-only fence, jobPlan.fence). BigQuery lets one mutating
	// transaction on a table commit and aborts the others that overlap
	// it, so two of this process's at once would only make one of them
	// fail and retry after a backoff; across replicas they still may.
	fenced chan struct{}
	stats  stats
	// qualifier is "`project`.`dataset`.", prefixed to every table name.
	qualifier string
	// ledgerRowsAffected: the ledger has the rows_affected column.
	ledgerRowsAffected bool
	// ledgerHash: the ledger has the payload_hash column.
	ledgerHash bool

	// closeMu is held shared by every call in progress and exclusively by
	// Close, which so waits for them.
	closeMu sync.RWMutex
	closed  bool
}

// ClientOptions are the BigQuery client's options for an emulator at
// emulatorHost (no authentication), or a service account key file, or
// else Application Default Credentials (none). Open and gatekeeper check
// connect alike.
func ClientOptions(emulatorHost, credentialsFile string) []option.ClientOption {
	switch {
	case emulatorHost != "":
		return []option.ClientOption{option.WithEndpoint("http://" + emulatorHost), option.WithoutAuthentication()}
	case credentialsFile != "":
		return []option.ClientOption{option.WithAuthCredentialsFile(option.ServiceAccount, credentialsFile)}
	}
	return nil
}

// Open connects to BigQuery, creates the dataset (unless told not to) and
// the ledger table when missing, and returns the warehouse. A nil logger
// discards logs.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Warehouse, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid bigquery warehouse config: %w", err)
	}
	client, err := bigquery.NewClient(ctx, cfg.ProjectID, ClientOptions(cfg.EmulatorHost, cfg.CredentialsFile)...)
	if err != nil {
		return nil, fmt.Errorf("bigquery client: %w", err)
	}
	w, err := open(ctx, cfg, logger, newClientBackend(client, cfg.DatasetID))
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return w, nil
}

// open finishes Open over any backend; cfg has its defaults.
func open(ctx context.Context, cfg Config, logger *slog.Logger, b backend) (*Warehouse, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dataset := cfg.ProjectID + "." + cfg.DatasetID
	location, err := b.datasetLocation(ctx)
	if isNotFound(err) {
		if cfg.DoNotCreateDatasetIfMissing {
			return nil, fmt.Errorf("bigquery dataset %s does not exist, and DoNotCreateDatasetIfMissing is set", dataset)
		}
		if err := b.createDataset(ctx, cfg.Location); err != nil && !isDuplicate(err) {
			return nil, fmt.Errorf("create bigquery dataset %s: %w", dataset, err)
		}
		logger.Info("BigQuery dataset created", "dataset", dataset, "location", cfg.Location)
		location, err = b.datasetLocation(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("read bigquery dataset %s: %w", dataset, err)
	}
	if cfg.Location != "" {
		location = cfg.Location
	}
	b.setLocation(location)

	ledgerRowsAffected, ledgerHash, err := ensureLedger(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("bigquery dataset %s: %w", dataset, err)
	}
	if err := ensureEvents(ctx, b); err != nil {
		return nil, fmt.Errorf("bigquery dataset %s: %w", dataset, err)
	}
	w := &Warehouse{
		ledgerRowsAffected: ledgerRowsAffected,
		ledgerHash:         ledgerHash,
		cfg:                cfg,
		logger:             logger,
		backend:            b,
		cache:              newSchemaCache(b, cfg.MetadataTTL),
		attempts:           newJobAttempts(),
		locks:              newIDLocks(),
		budget:             newDMLBudget(cfg.DMLBudget),
		fenced:             make(chan struct{}, 1),
		qualifier:          quoteIdent(cfg.ProjectID) + "." + quoteIdent(cfg.DatasetID) + ".",
	}
	logger.Info("BigQuery warehouse open", "dataset", dataset, "location", location, "emulator", cfg.EmulatorHost != "")
	return w, nil
}

// ensureLedger creates the ledger table when missing and checks its
// columns, and reports whether it has rows_affected. It is clustered by
// payload_id, so looking ids up reads a few blocks instead of the whole,
// ever-growing ledger.
//
// rows_affected is created with the table and never added to an existing
// one (the emulator acknowledges column additions without applying them);
// a ledger without it reports RowsAffected -1. Apply leaves it NULL: the
// ledger row is inserted before the payload's statements run, and the
// planner merges the statements of a job's payloads, so a payload's count
// is not known apart, and a second ledger statement per job would halve
// the DML left for the payloads.
//
// payload_hash, likewise, is created with the table and never added: a
// ledger without it records no hashes, and a payload whose id it holds is
// a Duplicate whatever its content ("no hash known").
func ensureLedger(ctx context.Context, b backend) (rowsAffected, hash bool, err error) {
	info, err := b.table(ctx, warehouse.LedgerTable)
	if err != nil {
		return false, false, fmt.Errorf("read ledger table: %w", err)
	}
	if info == nil {
		schema := bigquery.Schema{
			{Name: "payload_id", Type: bigquery.StringFieldType, Required: true},
			{Name: "applied_at", Type: bigquery.TimestampFieldType, Required: true},
			{Name: "rows_affected", Type: bigquery.IntegerFieldType},
			{Name: "payload_hash", Type: bigquery.StringFieldType},
		}
		info, err = b.createTable(ctx, warehouse.LedgerTable, schema, []string{"payload_id"})
		if isDuplicate(err) {
			info, err = b.table(ctx, warehouse.LedgerTable)
		}
		if err == nil && info == nil {
			err = errors.New("missing after creation")
		}
		if err != nil {
			return false, false, fmt.Errorf("create ledger table: %w", err)
		}
	}
	id, ok1 := info.Column("payload_id")
	at, ok2 := info.Column("applied_at")
	if !ok1 || !ok2 || id.typ.Base != messages.TypeString || at.typ.Base != messages.TypeTimestamp {
		return false, false, fmt.Errorf("ledger table %s exists with columns other than payload_id STRING and applied_at TIMESTAMP", warehouse.LedgerTable)
	}
	ra, ok := info.Column("rows_affected")
	ph, okHash := info.Column("payload_hash")
	return ok && ra.typ.Base == messages.TypeInt64, okHash && ph.typ.Base == messages.TypeString, nil
}

// item is one payload of a group on its way through Apply.
type item struct {
	index      int
	payload    warehouse.Payload
	activities []resolvedActivity
	size       jobSize
}

// Apply applies group; see warehouse.Warehouse for the contract and the
// package documentation for how. When the group needs several jobs, an
// error may follow jobs that committed: their payloads are in the ledger,
// and the retry reports them Duplicate.
func (w *Warehouse) Apply(ctx context.Context, group []warehouse.Payload) ([]warehouse.Outcome, error) {
	if len(group) == 0 {
		return []warehouse.Outcome{}, nil
	}
	if !w.enter() {
		return nil, messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	if err := ctx.Err(); err != nil {
		return nil, messages.Transient(err)
	}

	var ids []string
	seen := make(map[string]bool, len(group))
	for _, p := range group {
		if !seen[p.ID] {
			seen[p.ID] = true
			ids = append(ids, p.ID)
		}
	}
	release, err := w.locks.acquire(ctx, ids)
	if err != nil {
		return nil, messages.Transient(err)
	}
	defer release()

	outcomes := make([]warehouse.Outcome, len(group))
	decided := make([]bool, len(group))
	// settled ids have an occurrence Applied or Duplicate, under the hash
	// recorded for them: every later occurrence is a Duplicate, or
	// Rejected when its hash differs.
	settled := map[string]string{}
	run := &applyRun{w: w, view: map[string]*tableInfo{}, fresh: map[string]bool{}}
	for {
		// An id's first undecided occurrence is tried; later ones wait to
		// see whether it applies (then they are Duplicate) or is rejected
		// (then the next one is tried).
		var candidates []*item
		taken := map[string]bool{}
		for i, p := range group {
			switch {
			case decided[i]:
			case hasKey(settled, p.ID):
				outcomes[i], decided[i] = warehouse.LedgerOutcome(p, settled[p.ID], w.logger), true
			case !taken[p.ID]:
				taken[p.ID] = true
				candidates = append(candidates, &item{index: i, payload: p})
			}
		}
		if len(candidates) == 0 {
			return outcomes, nil
		}
		known, err := w.inLedger(ctx, candidates)
		if err != nil {
			return nil, groupError("read the ledger", err)
		}
		var todo []*item
		for _, it := range candidates {
			if stored, ok := known[it.payload.ID]; ok {
				outcomes[it.index] = warehouse.LedgerOutcome(it.payload, stored, w.logger)
				continue
			}
			todo = append(todo, it)
		}
		if err := run.apply(ctx, todo, outcomes); err != nil {
			return nil, err
		}
		for _, it := range candidates {
			decided[it.index] = true
			switch s := outcomes[it.index].Status; {
			case s == warehouse.Applied && w.ledgerHash:
				settled[it.payload.ID] = it.payload.Hash
			case s == warehouse.Applied, s == warehouse.Duplicate:
				// A duplicate's hash was checked against the ledger's; the
				// ledger's is the one to hold later occurrences to.
				settled[it.payload.ID] = known[it.payload.ID]
			}
		}
	}
}

// hasKey reports whether m holds k.
func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// inLedger returns the items' ids the ledger holds, each with the hash it
// recorded ("" when none).
func (w *Warehouse) inLedger(ctx context.Context, items []*item) (map[string]string, error) {
	found := map[string]string{}
	for start := 0; start < len(items); start += w.cfg.MaxParams {
		end := min(start+w.cfg.MaxParams, len(items))
		var params []bigquery.QueryParameter
		for _, it := range items[start:end] {
			params = append(params, bigquery.QueryParameter{Name: fmt.Sprintf("p%d", len(params)), Value: it.payload.ID})
		}
		rows, err := w.backend.query(ctx, ledgerLookupSQL(w.qualifier, len(params), w.ledgerHash), params)
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			if len(row) == 0 {
				continue
			}
			if id, ok := row[0].(string); ok {
				hash := ""
				if len(row) > 1 {
					hash, _ = row[1].(string) // NULL: no hash known
				}
				found[id] = hash
			}
		}
	}
	return found, nil
}

func ledgerLookupSQL(qualifier string, n int, withHash bool) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("p%d", i)
	}
	var b strings.Builder
	columns := "payload_id"
	if withHash {
		columns = "payload_id, payload_hash"
	}
	b.WriteString("SELECT DISTINCT " + columns + " FROM " + qualifier + quoteIdent(warehouse.LedgerTable) + " WHERE payload_id IN UNNEST(")
	writeStringArray(&b, names)
	b.WriteByte(')')
	return b.String()
}

// groupError classifies a failure that ends the whole Apply: an outage
// stays one (the apply stage pauses), and so does a transient error.
func groupError(op string, err error) error {
	classified := classify(shorten(err))
	if messages.ClassOf(classified) == messages.ClassPermanent {
		// Only payload-level problems are permanent, and those were taken
		// out already; what is left is the backend's state, which a retry
		// may find changed.
		classified = messages.Transient(errors.Unwrap(classified))
	}
	return &opError{op: op, err: classified}
}

// opError prefixes a classified error with what was being done, keeping
// its class visible to messages.ClassOf.
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return "bigquery " + e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

func (w *Warehouse) enter() bool {
	w.closeMu.RLock()
	if w.closed {
		w.closeMu.RUnlock()
		return false
	}
	return true
}

// Ping reads the dataset's metadata.
func (w *Warehouse) Ping(ctx context.Context) error {
	if !w.enter() {
		return messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	if _, err := w.backend.datasetLocation(ctx); err != nil {
		// Classified as Apply's errors are: BigQuery down, unreachable or
		// rate limited is an outage.
		return groupError("ping", err)
	}
	return nil
}

// Close waits for the calls in progress and closes the client.
func (w *Warehouse) Close() error {
	w.closeMu.Lock()
	defer w.closeMu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.backend.close()
}
