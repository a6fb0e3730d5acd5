package bigquery

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
)

// BigQuery's own limits, which the configurable ones may only tighten.
const (
	// bigQueryMaxQueryBytes is the longest unresolved GoogleSQL query text.
	bigQueryMaxQueryBytes = 1 << 20
	// bigQueryMaxParams is the most query parameters one query may carry.
	bigQueryMaxParams = 10_000
	// bigQueryMaxTransactionTables is the most tables one multi-statement
	// transaction may modify.
	bigQueryMaxTransactionTables = 100
	// bigQueryMaxRequestBytes is the largest jobs.insert request body.
	bigQueryMaxRequestBytes = 10 << 20
	// bigQueryDMLRate is the most DML statements per table every 10 s.
	bigQueryDMLRate = 25
)

// Config configures the BigQuery warehouse.
type Config struct {
	// ProjectID is the Google Cloud project that owns the dataset and runs
	// the jobs. Required.
	ProjectID string
	// DatasetID is the dataset holding the payload tables and the ledger.
	// Required.
	DatasetID string
	// Location is where a dataset this adapter creates lives, and where its
	// jobs run ("US", "EU", "europe-west1"). Optional: by default an existing
	// dataset's own location, and BigQuery's default for a new one.
	Location string
	// EmulatorHost is the host:port of a BigQuery emulator (what
	// BIGQUERY_EMULATOR_HOST holds). When set, the adapter talks plain HTTP
	// to http://host:port without authentication. Optional.
	EmulatorHost string
	// CredentialsFile is a service account key file. Optional: by default
	// Application Default Credentials. Ignored with EmulatorHost.
	CredentialsFile string
	// DoNotCreateDatasetIfMissing makes Open fail when the dataset does not
	// exist, instead of creating it, where datasets are infrastructure. The
	// ledger table is created in either case. Optional, default false.
	DoNotCreateDatasetIfMissing bool

	// MaxScriptBytes bounds the SQL text of one job. A group whose script
	// would be longer is split into several jobs. Optional, default 900,000,
	// at most BigQuery's 1 MiB.
	MaxScriptBytes int
	// MaxParams bounds the query parameters of one job. Optional, default
	// and most 10,000 (BigQuery's limit).
	MaxParams int
	// MaxTables bounds the tables one job's transaction modifies, counting
	// the ledger and, when the job deletes, the temporary table that counts
	// deleted rows. Optional, default and most 100 (BigQuery's limit); at
	// least 3.
	MaxTables int
	// MaxRequestBytes bounds the estimated size of one jobs.insert request:
	// the script plus its encoded parameters. Optional, default 8 MiB, at
	// most BigQuery's 10 MiB.
	MaxRequestBytes int
	// DMLBudget is how many DML statements this process runs per table
	// every 10 seconds, the ledger's included. BigQuery allows 25 per table
	// across every process and fails the statements beyond; with R
	// processes applying to the same tables, give each 25/R. Jobs wait for
	// the budget, and the payloads arriving meanwhile make the next group
	// larger. Optional, default and most 25.
	DMLBudget int
	// MetadataTTL is how long a table's schema, once read, is trusted
	// without reading it again. Rejections are always decided on a schema
	// read during the same Apply, so a stale entry can delay but never
	// wrongly reject. Optional, default 5m; negative reads on every Apply.
	MetadataTTL time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxScriptBytes == 0 {
		c.MaxScriptBytes = 900_000
	}
	if c.MaxParams == 0 {
		c.MaxParams = bigQueryMaxParams
	}
	if c.MaxTables == 0 {
		c.MaxTables = bigQueryMaxTransactionTables
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = 8 << 20
	}
	if c.DMLBudget == 0 {
		c.DMLBudget = bigQueryDMLRate
	}
	if c.MetadataTTL == 0 {
		c.MetadataTTL = 5 * time.Minute
	}
}

// minScriptBytes leaves room for the fixed statements of a script and at
// least one small payload.
const minScriptBytes = 4096

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	switch {
	case strings.TrimSpace(c.ProjectID) == "":
		errs = append(errs, errors.New("ProjectID is required"))
	case !validProjectID(c.ProjectID):
		errs = append(errs, fmt.Errorf("ProjectID %q: only letters, digits, '-', '.' and ':' are allowed", c.ProjectID))
	}
	switch {
	case strings.TrimSpace(c.DatasetID) == "":
		errs = append(errs, errors.New("DatasetID is required"))
	case !messages.ValidIdentifier(c.DatasetID, 1024):
		errs = append(errs, fmt.Errorf("DatasetID %q: only letters, digits and underscores are allowed, at most 1024", c.DatasetID))
	}
	if c.EmulatorHost != "" && (strings.Contains(c.EmulatorHost, "://") || strings.ContainsAny(c.EmulatorHost, "/ ")) {
		errs = append(errs, fmt.Errorf("EmulatorHost %q: want host:port", c.EmulatorHost))
	}
	if c.MaxScriptBytes < minScriptBytes || c.MaxScriptBytes > bigQueryMaxQueryBytes {
		errs = append(errs, fmt.Errorf("MaxScriptBytes must be between %d and %d, got %d", minScriptBytes, bigQueryMaxQueryBytes, c.MaxScriptBytes))
	}
	if c.MaxParams < 2 || c.MaxParams > bigQueryMaxParams {
		errs = append(errs, fmt.Errorf("MaxParams must be between 2 and %d, got %d", bigQueryMaxParams, c.MaxParams))
	}
	if c.MaxTables < 3 || c.MaxTables > bigQueryMaxTransactionTables {
		errs = append(errs, fmt.Errorf("MaxTables must be between 3 and %d (the ledger and a temporary table count), got %d", bigQueryMaxTransactionTables, c.MaxTables))
	}
	if c.MaxRequestBytes < c.MaxScriptBytes || c.MaxRequestBytes > bigQueryMaxRequestBytes {
		errs = append(errs, fmt.Errorf("MaxRequestBytes must be between MaxScriptBytes (%d) and %d, got %d", c.MaxScriptBytes, bigQueryMaxRequestBytes, c.MaxRequestBytes))
	}
	if c.DMLBudget < 1 || c.DMLBudget > bigQueryDMLRate {
		errs = append(errs, fmt.Errorf("DMLBudget must be between 1 and %d (BigQuery's DML statements per table every 10 s), got %d", bigQueryDMLRate, c.DMLBudget))
	}
	return errors.Join(errs...)
}

// validProjectID admits project ids, domain-scoped ones ("example.com:p")
// included, and nothing that could end a backtick-quoted name.
func validProjectID(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}
