package warehouse

import (
	"errors"
	"fmt"
)

// ErrTableNotFound is wrapped by adapters when a table a delete or a Reader
// call names does not exist.
var ErrTableNotFound = errors.New("table not found")

// ErrColumnNotFound is wrapped by adapters when a delete names a column the
// table does not have.
var ErrColumnNotFound = errors.New("column not found")

// ErrPayloadMismatch is wrapped by adapters when a payload's id is in the
// ledger with a different payload hash: the id was derived from an
// Idempotency-Key that a backend reused for another payload. The payload is
// rejected (permanent), never applied.
var ErrPayloadMismatch = errors.New("same Idempotency-Key, different payload")

// PayloadMismatch is the rejection of payload id, wrapping
// ErrPayloadMismatch, in the words the poison message carries.
func PayloadMismatch(id string) error {
	return fmt.Errorf("payload id %s was applied with different content: %w", id, ErrPayloadMismatch)
}

// ErrTypeConflict is wrapped by adapters when a payload's column type is
// incompatible with the existing column's type.
var ErrTypeConflict = errors.New("column type conflict")
