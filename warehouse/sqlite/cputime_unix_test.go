//go:build unix

package sqlite_test

import (
	"syscall"
	"time"
)

// processCPUTime is the CPU time, user and system, this process used so far.
// On a shared machine it measures the work a payload costs better than
// wall time does.
func processCPUTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
