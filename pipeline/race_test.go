//go:build race

package pipeline_test

// raceEnabled: the race detector changes what escapes to the heap, so
// tests that count allocations skip under it (.ci/run runs them without).
const raceEnabled = true
