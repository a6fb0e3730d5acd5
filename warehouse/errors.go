package warehouse

import "errors"

// ErrTableNotFound is wrapped by adapters when a table a delete or a Reader
// call names does not exist.
var ErrTableNotFound = errors.New("table not found")

// ErrColumnNotFound is wrapped by adapters when a delete names a column the
// table does not have.
var ErrColumnNotFound = errors.New("column not found")

// ErrTypeConflict is wrapped by adapters when a payload's column type is
// incompatible with the existing column's type.
var ErrTypeConflict = errors.New("column type conflict")
