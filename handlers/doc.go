// Package handlers holds gatekeeper's Watermill handler functions: the gate
// that validates and publishes accepted payloads, and the apply handler that
// writes them to the warehouse. Wiring, middleware and lifecycle live in
// package pipeline.
package handlers
