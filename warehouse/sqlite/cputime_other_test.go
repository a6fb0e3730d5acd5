//go:build !unix

package sqlite_test

import "time"

func processCPUTime() (time.Duration, bool) { return 0, false }
