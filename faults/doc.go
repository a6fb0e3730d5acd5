// Package faults holds the fault suite: real gatekeeper processes, built
// from cmd/gatekeeper, against the Pub/Sub emulator and SQLite, killed with
// SIGKILL, stopped with SIGTERM, restarted, their warehouse locked and their
// emulator restarted under load, while a client records every answer. Each
// scenario then waits until every payload answered 200 is in the ledger (a
// bounded wait that fails listing the missing ids) and checks that none was
// applied twice.
//
// It runs only with GATEKEEPER_FAULTS=1 (and PUBSUB_EMULATOR_HOST for the
// emulator scenarios), so that plain `go test ./...` stays fast; .ci/run
// sets both.
package faults
