package outbox_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// lockedBuffer is a log sink tests read while the outbox writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// On a full disk appends fail, Failing says since when and why, the log
// says so once (not once per batch), and once space is freed the outbox's
// own probe clears it without any append.
func TestFailingOnAFullDiskAndRecoveringByItself(t *testing.T) {
	t.Parallel()
	dir := warehousetest.TmpfsDir(t, "", 2<<20)
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	o, err := outbox.Open(context.Background(), outbox.Config{Path: filepath.Join(dir, "outbox.db"), ProbeEvery: 20 * time.Millisecond}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ctx := context.Background()
	if since, err := o.Failing(); !since.IsZero() || err != nil {
		t.Fatalf("Failing on a fresh outbox = %v, %v", since, err)
	}
	warehousetest.FillDisk(t, filepath.Join(dir, "filler"))

	payload := bytes.Repeat([]byte("x"), 16<<10)
	failures := 0
	for i := range 500 {
		if err := o.Append(ctx, outbox.Entry{ID: fmt.Sprintf("p%d", i), Payload: payload}); err != nil {
			failures++
			if !strings.Contains(err.Error(), "full") {
				t.Errorf("append on a full disk: %v, want it to say the disk is full", err)
			}
		}
	}
	if failures < 100 {
		t.Fatalf("only %d of 500 appends failed on a full disk", failures)
	}
	since, ferr := o.Failing()
	if since.IsZero() || ferr == nil || !strings.Contains(ferr.Error(), "full") {
		t.Fatalf("Failing on a full disk = %v, %v", since, ferr)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines for %d failed appends, want 1:\n%s", n, failures, logs.String())
	}
	if !strings.Contains(logs.String(), `msg="Outbox writes failing" outbox=`+filepath.Join(dir, "outbox.db")) {
		t.Errorf("the log does not name the outbox: %s", logs.String())
	}

	// Space freed, no append: the probe alone ends the condition.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if since, _ := o.Failing(); since.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still failing 5s after the disk was freed")
		}
		time.Sleep(10 * time.Millisecond) // the poll's interval; the deadline bounds it
	}
	if !strings.Contains(logs.String(), `msg="Outbox writes recovered"`) {
		t.Errorf("no recovery line: %s", logs.String())
	}
	if err := o.Append(ctx, outbox.Entry{ID: "after", Payload: payload}); err != nil {
		t.Fatalf("append after the disk was freed: %v", err)
	}
	counts, err := o.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[outbox.Pending] != 500-failures+1 || len(counts) != 2 {
		t.Errorf("counts = %v, want %d pending and nothing of the probe's", counts, 500-failures+1)
	}
}
