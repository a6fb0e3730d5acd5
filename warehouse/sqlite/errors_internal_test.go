package sqlite

import (
	"context"
	"database/sql/driver"
	"path/filepath"
	"testing"
)

// A group whose transaction SQLite already rolled back by itself must keep
// its writer connection: the ROLLBACK that follows finds no transaction,
// which is no failure of the connection.
func TestRollback_without_a_transaction_keeps_the_connection(t *testing.T) {
	ctx := context.Background()
	w, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "w.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.mu.Lock()
	defer w.mu.Unlock()

	_, err = w.conn.ExecContext(ctx, "ROLLBACK")
	if err == nil || !noTransaction(err) {
		t.Fatalf("ROLLBACK outside a transaction: %v, want SQLite's no-transaction error", err)
	}
	conn := w.conn
	w.rollback(w.ddlCount)
	if w.conn != conn {
		t.Fatal("rollback without a transaction reopened the writer connection")
	}

	if noTransaction(driver.ErrBadConn) {
		t.Error("a broken connection was taken for a missing transaction")
	}
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	w.rollback(w.ddlCount)
	if w.conn != conn {
		t.Fatal("a successful rollback reopened the writer connection")
	}
	if _, err := w.conn.ExecContext(ctx, "ROLLBACK"); !noTransaction(err) {
		t.Fatalf("the transaction is still open after rollback: %v", err)
	}
}
