package bigquery

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// columnInfo is one column of a table as gatekeeper sees it.
type columnInfo struct {
	// name is the column's stored spelling. BigQuery column names are
	// case-insensitive; lookups fold case, SQL uses this spelling.
	name string
	typ  messages.ColumnType
	// rawType is the type BigQuery reports, for messages about columns
	// gatekeeper cannot write.
	rawType string
	// writable is false for columns no payload can name (see columnType).
	writable bool
	required bool
	// collated columns compare strings by a collation, not by bytes.
	collated bool
}

// Schema is the column's stored spelling and type.
func (c columnInfo) Schema() warehouse.ColumnSchema {
	return warehouse.ColumnSchema{Name: c.name, Type: c.typ}
}

// tableInfo is a table's schema as read from BigQuery's table metadata.
type tableInfo struct {
	name    string
	etag    string
	schema  bigquery.Schema
	columns []columnInfo
	byKey   map[string]int
}

func newTableInfo(name string, schema bigquery.Schema, etag string) *tableInfo {
	ti := &tableInfo{name: name, etag: etag, schema: schema, byKey: make(map[string]int, len(schema))}
	for _, f := range schema {
		t, ok := columnType(f)
		ti.byKey[strings.ToLower(f.Name)] = len(ti.columns)
		ti.columns = append(ti.columns, columnInfo{
			name:     f.Name,
			typ:      t,
			rawType:  string(f.Type),
			writable: ok,
			required: f.Required,
			collated: f.Collation != "",
		})
	}
	return ti
}

// Column returns the column of that name, matched case-insensitively, as
// BigQuery matches column names.
func (t *tableInfo) Column(name string) (columnInfo, bool) {
	i, ok := t.byKey[strings.ToLower(name)]
	if !ok {
		return columnInfo{}, false
	}
	return t.columns[i], true
}

// sameSchema reports whether two reads of a table describe the same schema.
func sameSchema(a, b *tableInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.etag != "" && a.etag == b.etag {
		return true
	}
	return reflect.DeepEqual(a.columns, b.columns)
}

// schemaCache holds table metadata read through the tables API, so a
// payload's tables and columns are checked without a query. Missing tables
// are cached too (as nil): a delete on one is then rejected only after a
// fresh read in the same Apply (see applyRun.reload).
type schemaCache struct {
	backend backend
	ttl     time.Duration
	now     func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	info   *tableInfo
	readAt time.Time
}

func newSchemaCache(b backend, ttl time.Duration) *schemaCache {
	return &schemaCache{backend: b, ttl: ttl, now: time.Now, entries: map[string]cacheEntry{}}
}

// cached returns the entry for table if it is younger than the TTL.
func (c *schemaCache) cached(table string) (*tableInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[table]
	if !ok || c.ttl < 0 || c.now().Sub(e.readAt) > c.ttl {
		return nil, false
	}
	return e.info, true
}

// read reads table's metadata from BigQuery and caches it; nil means the
// table does not exist.
func (c *schemaCache) read(ctx context.Context, table string) (*tableInfo, error) {
	info, err := c.backend.table(ctx, table)
	if err != nil {
		return nil, err
	}
	c.store(table, info)
	return info, nil
}

func (c *schemaCache) store(table string, info *tableInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[table] = cacheEntry{info: info, readAt: c.now()}
}

func (c *schemaCache) invalidate(tables ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range tables {
		delete(c.entries, t)
	}
}
