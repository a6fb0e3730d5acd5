package outbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DamagedError is an outbox file SQLite finds damaged: its quick_check
// fails, or it is not a database at all (a truncated file, zeroed pages).
// The entries still readable in it can be saved with Salvage, which the
// message names as the command an operator runs.
type DamagedError struct {
	Path string
	// Detail is what SQLite said.
	Detail string
	// Err is SQLite's error, when there is one.
	Err error
}

func (e *DamagedError) Unwrap() error { return e.Err }

func (e *DamagedError) Error() string {
	return fmt.Sprintf("the outbox %s is damaged (%s). Payloads answered 200 may be waiting in it. "+
		"Stop every process that uses it, then run `gatekeeper outbox salvage --outbox-path %s`: "+
		"it copies every entry still readable into a new outbox with the same identity, moves the damaged file aside, "+
		"and says how many it saved and how many it could not read; then start the service, which publishes them again",
		e.Path, e.Detail, e.Path)
}

// errCheckFailed marks quick_check's own findings as damage.
var errCheckFailed = errors.New("quick_check failed")

// isDamage reports whether err says the file is damaged, rather than
// busy, locked or unreachable.
func isDamage(err error) bool {
	if errors.Is(err, errCheckFailed) {
		return true
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return true
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "malformed") || strings.Contains(msg, "not a database")
}

// quickCheck runs PRAGMA quick_check: O(N) in the file's size, without the
// index cross-checks of integrity_check, which is what a start can afford.
func quickCheck(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check(3)")
	if err != nil {
		return err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		if line != "ok" {
			// One finding may span lines ("*** in database main ***").
			problems = append(problems, strings.Join(strings.Fields(strings.ReplaceAll(line, "\n", "; ")), " "))
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", errCheckFailed, strings.Join(problems, "; "))
	}
	return nil
}

func hasTable(ctx context.Context, db *sql.DB, name string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, name).Scan(&n)
	return n > 0, err
}

const createMetaSQL = `CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`

// newIdentity is 64 random bits in hex: enough to tell two outbox files
// apart, and short enough for a Pub/Sub label value.
func newIdentity() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ensureIdentity reads the file's identity, giving it one when it has
// none (a new file, or one an older gatekeeper made): want when set, else
// a random one. The identity is written twice: in outbox_meta, and in the
// SQLite header's application_id and user_version, which live on the first
// page and so survive damage to the tables.
func ensureIdentity(ctx context.Context, db *sql.DB, want string) (string, error) {
	if _, err := db.ExecContext(ctx, createMetaSQL); err != nil {
		return "", err
	}
	var id string
	err := db.QueryRowContext(ctx, `SELECT value FROM outbox_meta WHERE key = 'identity'`).Scan(&id)
	switch {
	case err == nil:
		return id, nil
	case !errors.Is(err, sql.ErrNoRows):
		return "", err
	}
	id = want
	if id == "" {
		id = newIdentity()
	}
	hi, lo, err := splitIdentity(id)
	if err != nil {
		return "", err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO outbox_meta (key, value) VALUES ('identity', '%s'), ('created_at', '%s')`,
			id, time.Now().UTC().Format(time.RFC3339Nano)),
		fmt.Sprintf("PRAGMA application_id = %d", hi),
		fmt.Sprintf("PRAGMA user_version = %d", lo),
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return "", err
		}
	}
	return id, tx.Commit()
}

// splitIdentity is the identity as the two signed 32-bit header fields.
func splitIdentity(id string) (hi, lo int32, err error) {
	n, err := strconv.ParseUint(id, 16, 64)
	if err != nil || len(id) != 16 {
		return 0, 0, fmt.Errorf("outbox identity %q: want 16 hex digits", id)
	}
	return int32(uint32(n >> 32)), int32(uint32(n)), nil
}

// headerIdentity reads the identity's copy in the header; "" when it has
// none.
func headerIdentity(ctx context.Context, db *sql.DB) (string, error) {
	var hi, lo int32
	if err := db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&hi); err != nil {
		return "", err
	}
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&lo); err != nil {
		return "", err
	}
	if hi == 0 && lo == 0 {
		return "", nil
	}
	return fmt.Sprintf("%08x%08x", uint32(hi), uint32(lo)), nil
}
