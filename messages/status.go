package messages

// Payload statuses, as GET /api/activities/{id} answers them, gatekeeper
// status prints them and clients (loadgen --e2e) read them: part of the
// wire contract.
const (
	StatusAccepted = "accepted" // published, not applied yet (or replayed and on its way again)
	StatusApplied  = "applied"  // in the ledger
	StatusPoisoned = "poisoned" // in the poison index, waiting for an operator
	StatusPurged   = "purged"   // dropped by an operator; never applied
	StatusUnknown  = "unknown"  // neither the service nor its warehouse knows it
)
