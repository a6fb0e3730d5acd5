//go:build race

package messages

// raceEnabled: the race detector slows the differential tests about
// tenfold, so they check fewer documents under it.
const raceEnabled = true
