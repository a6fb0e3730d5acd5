//go:build tools

// Package tools pins goccy/bigquery-emulator so .ci/run can build it from the
// Go module proxy; it is not part of gatekeeper.
package tools

import _ "github.com/goccy/bigquery-emulator/cmd/bigquery-emulator"
