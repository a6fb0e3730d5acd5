package messages

import "time"

// AppliedEvent is published to the applied topic after a payload's
// transaction committed. Its message UUID is the payload id, so the applied
// and poison topics together account for every accepted payload.
type AppliedEvent struct {
	PayloadID       string    `json:"payload_id"`
	Tables          []string  `json:"tables"`
	RowsAffected    int64     `json:"rows_affected"`
	AppliedAt       time.Time `json:"applied_at"`
	ApplyDurationMS float64   `json:"apply_duration_ms"`
	// Duplicate is true when the ledger already held the payload: a
	// redelivery that was acknowledged without being applied again.
	Duplicate bool `json:"duplicate,omitempty"`
	// Backend is the authenticated backend that posted the payload
	// (BACKENDS_FILE); empty without authentication.
	Backend string `json:"backend,omitempty"`
}
