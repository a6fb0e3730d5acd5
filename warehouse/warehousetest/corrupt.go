package warehousetest

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"os"
	"testing"
	"time"
)

// CorruptSQLite zeroes every page of the SQLite database at path, as a
// failing disk or a stray write would, while another process may be
// writing to it, and returns a consistent copy of the file taken just
// before, for RestoreSQLite.
//
// The copy and the damage are made under SQLite's write lock, after a
// checkpoint that empties the WAL, so the main file holds every commit and
// no writer adds to the WAL meanwhile (a write that slips in between the
// checkpoint and the lock is caught by the WAL's size, and the round is
// tried again). The checkpoint also starts the WAL afresh, so every
// connection of the other process drops the pages it cached and reads the
// zeroed file at its next transaction.
func CorruptSQLite(t testing.TB, path string) (copyOf []byte) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The connection read the zeroed file: it must not go back to a pool.
	defer func() {
		_ = conn.Raw(func(any) error { return errBadConn })
		_ = conn.Close()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := conn.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			t.Fatalf("checkpoint %s: %v", path, err)
		}
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Fatalf("lock %s: %v", path, err)
		}
		if st, err := os.Stat(path + "-wal"); err != nil || st.Size() == 0 {
			break
		}
		// A commit came between the checkpoint and the lock.
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("could not find %s's WAL empty under the write lock within 30s", path)
		}
	}
	copyOf, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, len(copyOf)), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Nothing was written through SQLite: releasing the lock ends the
	// transaction without reading the zeroed pages.
	_, _ = conn.ExecContext(ctx, "ROLLBACK")
	return copyOf
}

// RestoreSQLite writes copyOf (from CorruptSQLite) back over the database
// at path, in place, as an operator copying a backup over it would, and
// nothing more: a connection that cached pages of the damaged file keeps
// them (the WAL did not change), so a process that had it open reads the
// restored file only through connections it opens afresh. Nothing may be
// writing to the file meanwhile: a process whose writes all fail on the
// damaged file qualifies.
func RestoreSQLite(t testing.TB, path string, copyOf []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(copyOf, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(copyOf))); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// errBadConn is driver.ErrBadConn, which makes database/sql close a
// connection instead of pooling it.
var errBadConn = driver.ErrBadConn
