package warehouse

import (
	"context"
	"time"
)

// OutboxesTable is the table, in adapters that implement OutboxRegistry,
// that remembers each outbox file a process kept.
const OutboxesTable = "_gatekeeper_outboxes"

// OutboxRecord is what the warehouse remembers of one outbox file, so that
// a process that finds its outbox missing, empty or replaced at start
// knows that payloads answered 200 may have been waiting in it.
type OutboxRecord struct {
	// Host and Path (absolute) name the file. Processes on several hosts
	// share one warehouse, each with its own outbox, often at the same
	// path: the host keeps their records apart.
	Host, Path string
	// Identity is the outbox file's own id (outbox.Outbox.Identity).
	Identity string
	// Pending is how many entries the outbox held at its last clean stop;
	// PendingUnknown while a process runs with it, or after one died.
	Pending int
	// UpdatedAt is when the record was last written.
	UpdatedAt time.Time
}

// PendingUnknown is OutboxRecord.Pending while no clean stop counted it.
const PendingUnknown = -1

// OutboxRegistry is implemented by the adapters that can remember outbox
// files (SQLite). It is apart from Store so that an adapter without it
// (BigQuery, test doubles) still is a Store; a process whose warehouse
// lacks it relies on Pub/Sub's record, or on none.
type OutboxRegistry interface {
	// OutboxRecord returns the record of the outbox at host and path;
	// found is false when there is none.
	OutboxRecord(ctx context.Context, host, path string) (rec OutboxRecord, found bool, err error)
	// RecordOutbox writes rec, replacing the record of the same host and
	// path.
	RecordOutbox(ctx context.Context, rec OutboxRecord) error
}
