// Package messages is gatekeeper's wire contract: the payload backends POST,
// the JSON Schema and semantic rules that gate it, the column types and their
// BigQuery mapping, the metadata keys carried on Pub/Sub messages, the outcome
// events, and the error classes that decide what happens to a payload.
//
// It is pure: no I/O and no imports of gatekeeper's other packages, so every
// stage, adapter and tool can share one definition of what a valid payload is.
package messages
