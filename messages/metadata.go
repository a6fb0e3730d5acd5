package messages

// Metadata keys on Pub/Sub messages. They are part of the contract: operators
// filter and replay by them, so they never change meaning.
const (
	// On accepted payloads.
	MetaReceivedAt    = "received_at"    // RFC 3339 with nanoseconds, when the edge read the body
	MetaCorrelationID = "correlation_id" // X-Correlation-ID of the request, or generated
	MetaContentType   = "content_type"   // Content-Type the payload arrived with
	MetaBackend       = "backend"        // the authenticated backend's name (BACKENDS_FILE); empty without authentication
	MetaOrderingKey   = "ordering_key"   // X-Ordering-Key or the payload's ordering_key; payloads of one key apply in order
	MetaPayloadHash   = "payload_hash"   // SHA-256 (hex) of the canonical payload, recorded in the ledger

	// Added on poisoned payloads, beside Watermill's own reason_poisoned,
	// topic_poisoned, handler_poisoned and subscriber_poisoned.
	MetaErrorClass     = "error_class"      // a Class
	MetaAttempts       = "attempts"         // how many times the handler ran on it
	MetaFirstFailureAt = "first_failure_at" // RFC 3339 with nanoseconds
	MetaLastFailureAt  = "last_failure_at"  // RFC 3339 with nanoseconds
	MetaTables         = "tables"           // comma-separated, sorted, distinct

	// Added on payloads an operator sent back from the poison topic.
	MetaReplays    = "replays"     // how many times it was replayed: the generation of its events
	MetaReplayedAt = "replayed_at" // RFC 3339 with nanoseconds, when it was last replayed
)
