package bigquery

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
)

// backend is everything the adapter asks of BigQuery. The client library
// implements it for real; unit tests use fakes that count the calls.
type backend interface {
	// datasetLocation returns the dataset's location; a missing dataset is
	// an error isNotFound recognises.
	datasetLocation(ctx context.Context) (string, error)
	createDataset(ctx context.Context, location string) error
	// table reads a table's metadata; nil, nil means it does not exist.
	table(ctx context.Context, name string) (*tableInfo, error)
	createTable(ctx context.Context, name string, schema bigquery.Schema, clusterBy []string) (*tableInfo, error)
	// updateSchema replaces the table's schema if its ETag is still etag.
	updateSchema(ctx context.Context, name string, schema bigquery.Schema, etag string) (*tableInfo, error)
	tableNames(ctx context.Context) ([]string, error)
	// insertRows streams rows into a table (tabledata.insertAll), each with
	// its insert ID.
	insertRows(ctx context.Context, name string, rows []bigquery.ValueSaver) error
	// query runs a read-only query and returns its rows.
	query(ctx context.Context, sql string, params []bigquery.QueryParameter) ([][]bigquery.Value, error)
	// submit starts a query job with the given id. An id already taken is
	// an error isDuplicateJob recognises. plan is what the script does,
	// for a backend that simulates BigQuery rather than running SQL.
	submit(ctx context.Context, jobID, sql string, params []bigquery.QueryParameter, plan *jobPlan) (job, error)
	// attach finds a job submitted earlier.
	attach(ctx context.Context, jobID string) (job, error)
	// setLocation sets where queries and jobs run; Open calls it once,
	// before any.
	setLocation(location string)
	close() error
}

// job is a submitted query job.
type job interface {
	// result waits for the job to finish. wantRows asks for the rows of
	// its last statement. A *jobFailedError means the job ran and failed;
	// any other error leaves the job's fate unknown.
	result(ctx context.Context, wantRows bool) ([][]bigquery.Value, error)
}

// billedJob is a job that knows, once it ended, the bytes it billed.
type billedJob interface {
	billedBytes() int64
}

// jobFailedError is a job's own failure, as opposed to failing to learn
// how the job went.
type jobFailedError struct {
	err error
}

func (e *jobFailedError) Error() string { return e.err.Error() }
func (e *jobFailedError) Unwrap() error { return e.err }

func httpCode(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func isNotFound(err error) bool { return httpCode(err) == http.StatusNotFound }

// isDuplicate recognises "already exists" on tables, datasets and jobs.
func isDuplicate(err error) bool { return httpCode(err) == http.StatusConflict }

func isPreconditionFailed(err error) bool { return httpCode(err) == http.StatusPreconditionFailed }

// clientBackend is backend over the BigQuery client library.
type clientBackend struct {
	client  *bigquery.Client
	dataset *bigquery.Dataset
	// location is where jobs run; set once by Open, before any job.
	location string
}

func newClientBackend(client *bigquery.Client, datasetID string) *clientBackend {
	return &clientBackend{client: client, dataset: client.Dataset(datasetID)}
}

func (b *clientBackend) datasetLocation(ctx context.Context) (string, error) {
	md, err := b.dataset.Metadata(ctx)
	if err != nil {
		return "", err
	}
	return md.Location, nil
}

func (b *clientBackend) createDataset(ctx context.Context, location string) error {
	return b.dataset.Create(ctx, &bigquery.DatasetMetadata{Location: location})
}

func (b *clientBackend) table(ctx context.Context, name string) (*tableInfo, error) {
	md, err := b.dataset.Table(name).Metadata(ctx)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return newTableInfo(name, md.Schema, md.ETag), nil
}

func (b *clientBackend) createTable(ctx context.Context, name string, schema bigquery.Schema, clusterBy []string) (*tableInfo, error) {
	md := &bigquery.TableMetadata{Schema: schema}
	if len(clusterBy) > 0 {
		md.Clustering = &bigquery.Clustering{Fields: clusterBy}
	}
	if err := b.dataset.Table(name).Create(ctx, md); err != nil {
		return nil, err
	}
	// Create does not return the table; reading it gets the ETag the next
	// schema update must name.
	info, err := b.table(ctx, name)
	if err == nil && info == nil {
		err = fmt.Errorf("table %q is missing right after it was created", name)
	}
	return info, err
}

func (b *clientBackend) updateSchema(ctx context.Context, name string, schema bigquery.Schema, etag string) (*tableInfo, error) {
	md, err := b.dataset.Table(name).Update(ctx, bigquery.TableMetadataToUpdate{Schema: schema}, etag)
	if err != nil {
		return nil, err
	}
	return newTableInfo(name, md.Schema, md.ETag), nil
}

func (b *clientBackend) tableNames(ctx context.Context) ([]string, error) {
	var names []string
	it := b.dataset.Tables(ctx)
	for {
		t, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		names = append(names, t.TableID)
	}
}

func (b *clientBackend) insertRows(ctx context.Context, name string, rows []bigquery.ValueSaver) error {
	return b.dataset.Table(name).Inserter().Put(ctx, rows)
}

func (b *clientBackend) newQuery(sql string, params []bigquery.QueryParameter) *bigquery.Query {
	q := b.client.Query(sql)
	q.Parameters = params
	q.Location = b.location
	return q
}

func (b *clientBackend) query(ctx context.Context, sql string, params []bigquery.QueryParameter) ([][]bigquery.Value, error) {
	it, err := b.newQuery(sql, params).Read(ctx)
	if err != nil {
		return nil, err
	}
	return readAll(it)
}

func (b *clientBackend) submit(ctx context.Context, jobID, sql string, params []bigquery.QueryParameter, _ *jobPlan) (job, error) {
	q := b.newQuery(sql, params)
	q.JobID = jobID
	q.Labels = map[string]string{"gatekeeper": "apply"}
	j, err := q.Run(ctx)
	if err != nil {
		return nil, err
	}
	return clientJob{j}, nil
}

func (b *clientBackend) attach(ctx context.Context, jobID string) (job, error) {
	j, err := b.client.JobFromIDLocation(ctx, jobID, b.location)
	if err != nil {
		return nil, err
	}
	return clientJob{j}, nil
}

func (b *clientBackend) setLocation(location string) { b.location = location }

func (b *clientBackend) close() error { return b.client.Close() }

type clientJob struct {
	job *bigquery.Job
}

func (j clientJob) billedBytes() int64 {
	st := j.job.LastStatus()
	if st == nil || st.Statistics == nil {
		return 0
	}
	if q, ok := st.Statistics.Details.(*bigquery.QueryStatistics); ok {
		return q.TotalBytesBilled
	}
	return 0
}

func (j clientJob) result(ctx context.Context, wantRows bool) ([][]bigquery.Value, error) {
	status, err := j.job.Wait(ctx)
	if err != nil {
		// Waiting on a query job reads its results, which fails alike when
		// the job failed and when the read did; the job's status tells.
		if ctx.Err() != nil {
			return nil, err
		}
		status, statusErr := j.job.Status(ctx)
		if statusErr == nil && status.Done() && status.Err() != nil {
			return nil, &jobFailedError{err: status.Err()}
		}
		return nil, err
	}
	if status.Err() != nil {
		return nil, &jobFailedError{err: status.Err()}
	}
	if !wantRows {
		return nil, nil
	}
	it, err := j.job.Read(ctx)
	if err != nil {
		return nil, err
	}
	return readAll(it)
}

func readAll(it *bigquery.RowIterator) ([][]bigquery.Value, error) {
	var rows [][]bigquery.Value
	for {
		var row []bigquery.Value
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
}
