// Package warehouse is the port the apply stage writes through. Adapters
// (warehouse/sqlite, warehouse/bigquery) implement Warehouse and must pass the
// shared conformance suite in warehouse/warehousetest.
package warehouse

import (
	"context"
	"log/slog"

	"github.com/gatekeeper/gatekeeper/messages"
)

// LedgerTable is the table, in every adapter, that records each applied
// payload id in the same transaction as the payload's rows. A payload whose
// id is in the ledger is never applied again.
const LedgerTable = "_gatekeeper_ledger"

// Payload is one accepted payload to apply all-or-nothing.
type Payload struct {
	// ID is the payload id given at ingestion (the Pub/Sub message UUID).
	ID string
	// Activities are the payload's, in payload order, as the gate validated
	// them (messages.Payload).
	Activities []messages.Activity
	// Hash is the SHA-256 (hex) of the canonical payload (metadata
	// payload_hash), recorded in the ledger row. A payload whose id the
	// ledger holds under a different hash is Rejected with
	// ErrPayloadMismatch rather than reported Duplicate: one
	// Idempotency-Key was used for two payloads. "" means unknown, and an
	// unknown hash on either side never conflicts. Optional.
	Hash string
	// OrderingKey is "" or the payload's ordering key: the GroupCommitter
	// never lets a payload of a key commit before one of the same key
	// submitted earlier. Adapters ignore it.
	OrderingKey string
}

// HashConflict reports whether a payload with hash incoming conflicts with
// the ledger row that recorded stored: both known and different.
func HashConflict(stored, incoming string) bool {
	return stored != "" && incoming != "" && stored != incoming
}

// LedgerOutcome is the outcome of p when the ledger already holds its id,
// under hash stored: Duplicate, or Rejected (permanently, logged once with
// its payload_id) when the ledger recorded other content under that id.
// Every adapter decides a redelivery this one way.
func LedgerOutcome(p Payload, stored string, logger *slog.Logger) Outcome {
	if HashConflict(stored, p.Hash) {
		err := PayloadMismatch(p.ID)
		logger.Warn("Payload rejected: its id was applied with different content", "payload_id", p.ID, "error", err)
		return Outcome{Status: Rejected, Err: messages.Permanent(err)}
	}
	return Outcome{Status: Duplicate}
}

// Status says what happened to one payload of a group.
type Status int

const (
	// Applied: the payload's activities and its ledger row committed.
	Applied Status = iota + 1
	// Duplicate: the ledger already held the payload id; nothing was written.
	Duplicate
	// Rejected: the payload failed permanently (Err says why); nothing of it
	// was written, and the rest of its group was not affected.
	Rejected
)

// Outcome is the result for one payload of a group.
type Outcome struct {
	Status Status
	// Err is set when Status is Rejected. It is classified permanent.
	Err error
	// RowsAffected counts rows inserted plus rows deleted. Zero unless Applied.
	RowsAffected int64
}

// Warehouse applies groups of payloads.
type Warehouse interface {
	// Apply applies every payload of group in as few transactions as the
	// adapter can (one, where the backend's limits allow), in group order,
	// each payload all-or-nothing, and returns one Outcome per payload in the
	// same order.
	//
	// A non-nil error means the group as a whole did not commit: nothing of it
	// was written, and the caller may retry the same group (the ledger makes
	// that safe). Adapters classify it with messages.Transient or
	// messages.Permanent.
	//
	// Callers never run two Apply calls that touch the same table at once (see
	// GroupCommitter); adapters may rely on that.
	Apply(ctx context.Context, group []Payload) ([]Outcome, error)

	// Ping reports whether the backend is reachable.
	Ping(ctx context.Context) error

	Close() error
}

// Reader lets tools and tests look at what was applied. Adapters implement it
// beside Warehouse.
type Reader interface {
	// Tables lists user tables, sorted, without the ledger.
	Tables(ctx context.Context) ([]string, error)
	// Schema returns the table's columns in table order; a missing table is an
	// error that errors.Is(err, ErrTableNotFound).
	Schema(ctx context.Context, table string) ([]ColumnSchema, error)
	// Rows returns up to limit rows (limit <= 0: all), each a column-name to
	// value map with values normalised as in messages.Column.Value, ordered
	// by every column ascending so results are stable.
	Rows(ctx context.Context, table string, limit int) ([]map[string]any, error)
	// Applied reports whether the ledger holds the payload id.
	Applied(ctx context.Context, payloadID string) (bool, error)
}

// Store is an adapter as its users hold it: the apply stage writes through
// Warehouse, tools, tests and the conformance suite read back through
// Reader, and the poison indexer and operators use the EventLog.
type Store interface {
	Warehouse
	Reader
	EventLog
}

// ColumnSchema is one column of a warehouse table.
type ColumnSchema struct {
	Name string
	Type messages.ColumnType
}
