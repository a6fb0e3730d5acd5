package sqlite

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config configures the SQLite warehouse.
type Config struct {
	// Path is the database file, created when missing. Required.
	// In-memory databases are refused: reads go through their own
	// connections, which would each see a different empty database.
	Path string
	// BusyTimeout is how long a connection waits for a lock another process
	// holds before failing with a transient error.
	// Optional, default 5s.
	BusyTimeout time.Duration
	// ProbeTimeout is how long Ping waits for the write lock before it
	// reports the database locked. Optional, default 1s.
	ProbeTimeout time.Duration
	// MaxReaders bounds the read-only connections used by the Reader methods
	// and Ping; the single writer connection is separate.
	// Optional, default 4.
	MaxReaders int
	// DisableDeleteIndexes stops the adapter from indexing the column set of
	// each delete it sees (see Warehouse). Without those indexes every delete
	// scans its table.
	// Optional, default false.
	DisableDeleteIndexes bool
	// Sync is SQLite's synchronous setting for the writer: SyncFull (the
	// default) makes every commit wait for the disk, so a payload whose
	// Pub/Sub message is acknowledged after its commit survives a power loss
	// too; it costs one fsync per group. SyncNormal syncs the WAL at
	// checkpoints only: a commit survives a crash of the process, but an OS
	// crash or power loss can undo the last commits after their messages
	// were acknowledged, and those payloads are then lost. The database is
	// never corrupted either way.
	// Optional, default SyncFull.
	Sync Sync
}

// Sync names a SQLite synchronous level.
type Sync string

const (
	SyncFull   Sync = "full"
	SyncNormal Sync = "normal"
)

func (c Config) synchronous() string {
	if c.Sync == SyncNormal {
		return "NORMAL"
	}
	return "FULL"
}

func (c *Config) setDefaults() {
	if c.BusyTimeout == 0 {
		c.BusyTimeout = 5 * time.Second
	}
	if c.MaxReaders == 0 {
		c.MaxReaders = 4
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = time.Second
	}
	if c.Sync == "" {
		c.Sync = SyncFull
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	switch {
	case strings.TrimSpace(c.Path) == "":
		errs = append(errs, errors.New("a Path is required"))
	case c.Path == ":memory:" || strings.HasPrefix(c.Path, "file:") || strings.Contains(c.Path, "mode=memory"):
		errs = append(errs, fmt.Errorf("in-memory and URI databases are not supported: give Path a plain file path, not %q", c.Path))
	case strings.ContainsAny(c.Path, "?#"):
		// The driver reads everything after '?' as connection parameters.
		errs = append(errs, fmt.Errorf("the Path %q must not contain '?' or '#'", c.Path))
	}
	if c.ProbeTimeout < 0 {
		errs = append(errs, fmt.Errorf("ProbeTimeout must not be negative, got %v", c.ProbeTimeout))
	}
	if c.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("BusyTimeout must not be negative, got %v", c.BusyTimeout))
	}
	if c.Sync != SyncFull && c.Sync != SyncNormal {
		errs = append(errs, fmt.Errorf("Sync %q: want %q or %q", c.Sync, SyncFull, SyncNormal))
	}
	if c.MaxReaders < 1 {
		errs = append(errs, fmt.Errorf("MaxReaders must be at least 1, got %d", c.MaxReaders))
	}
	return errors.Join(errs...)
}

func (c Config) dsn(extra ...string) string {
	params := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", c.BusyTimeout.Milliseconds()),
	}
	params = append(params, extra...)
	return c.Path + "?" + strings.Join(params, "&")
}

func (c Config) probeDSN() string {
	return fmt.Sprintf("%s?_pragma=busy_timeout(%d)", c.Path, c.ProbeTimeout.Milliseconds())
}
