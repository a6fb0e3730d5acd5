package sqlite

import (
	"context"
	"testing"
)

// WriterSynchronous reads PRAGMA synchronous on the writer connection, the
// only one the setting matters for.
func WriterSynchronous(t *testing.T, w *Warehouse) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var v int
	if err := w.conn.QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}
