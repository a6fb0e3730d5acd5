package warehouse

import (
	"context"
	"errors"
)

// ReasonError carries a reason an adapter read from its backend (BigQuery's
// error reason, SQLite's result code), one of the Reason constants below,
// so that warehouse errors can be counted by reason without free text.
type ReasonError struct {
	Reason string
	Err    error
}

func (e *ReasonError) Error() string { return e.Err.Error() }
func (e *ReasonError) Unwrap() error { return e.Err }

// Reasons a warehouse error is counted under.
const (
	ReasonTableNotFound  = "table_not_found"
	ReasonColumnNotFound = "column_not_found"
	ReasonTypeConflict   = "type_conflict"
	ReasonMismatch       = "payload_mismatch" // the ledger holds the id with a different payload hash
	ReasonRejected       = "rejected"         // any other reason a payload cannot be applied
	ReasonTimeout        = "timeout"
	ReasonBusy           = "busy"         // locked or busy: another writer holds the table or the file
	ReasonUnavailable    = "unavailable"  // the backend did not answer, or answered 5xx
	ReasonRateLimited    = "rate_limited" // quotas and rate limits
	ReasonConcurrent     = "concurrent"   // a concurrent update cancelled the job
	ReasonInvalid        = "invalid"      // the backend refused the statement
	ReasonStorage        = "storage"      // disk full, I/O error, corruption
	ReasonPermission     = "permission"   // access denied, read-only
	ReasonOther          = "other"
)

// Reason names err for metrics: the sentinel it wraps, the ReasonError an
// adapter attached, a deadline, or ReasonOther.
func Reason(err error) string {
	var re *ReasonError
	switch {
	case errors.Is(err, ErrTableNotFound):
		return ReasonTableNotFound
	case errors.Is(err, ErrColumnNotFound):
		return ReasonColumnNotFound
	case errors.Is(err, ErrTypeConflict):
		return ReasonTypeConflict
	case errors.Is(err, ErrPayloadMismatch):
		return ReasonMismatch
	case errors.As(err, &re):
		return re.Reason
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	}
	return ReasonOther
}
