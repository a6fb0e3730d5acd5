package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
)

// gatekeeper outbox salvage on a file with a zeroed page: exit 1 (some
// entries lost), a report that counts both, the damaged file kept aside,
// and an outbox in place that opens with the same identity.
func TestOutboxSalvageCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := outbox.Open(ctx, outbox.Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := o.Append(ctx, outbox.Entry{ID: fmt.Sprintf("p%03d", i), Payload: []byte(strings.Repeat("x", 1500))}); err != nil {
			t.Fatal(err)
		}
	}
	id := o.Identity()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	r := runIn("outbox", "salvage", "--outbox-path", path)
	if r.code != 0 || !strings.Contains(r.stdout, "is not damaged (quick_check: ok): nothing to salvage. It holds 100 pending") {
		t.Fatalf("salvage of a sound outbox: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := f.Stat()
	if _, err := f.WriteAt(make([]byte, 4096), info.Size()/2/4096*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()

	r = runIn("outbox", "salvage", "--dry-run", "--outbox-path", path)
	if r.code != 1 || !strings.HasPrefix(r.stdout, "Dry run, nothing written or moved: would salvage the outbox "+path) {
		t.Fatalf("dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runIn("outbox", "salvage", "--outbox-path", path)
	t.Logf("gatekeeper outbox salvage:\n%s", r.stdout)
	m := regexp.MustCompile(`entries saved:   (\d+) \((\d+) pending, 0 poisoned\)\n  could not read:  (\d+)\n`).FindStringSubmatch(r.stdout)
	if r.code != 1 || m == nil {
		t.Fatalf("salvage: exit %d, want 1 and counts\n%s%s", r.code, r.stdout, r.stderr)
	}
	var saved, lost int
	fmt.Sscan(m[1], &saved)
	fmt.Sscan(m[3], &lost)
	if saved+lost != 100 || lost == 0 {
		t.Errorf("saved %d + could not read %d, want 100 with some lost", saved, lost)
	}
	for _, want := range []string{"identity:        " + id + " (kept)", "damaged file:    moved to " + path + ".damaged-",
		"Start the service now"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	o, err = outbox.Open(ctx, outbox.Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Identity() != id {
		t.Errorf("identity %s after salvage, want %s", o.Identity(), id)
	}

	r = runIn("outbox", "salvage", "--outbox-path", filepath.Join(t.TempDir(), "gone.db"))
	if r.code != 1 || !strings.Contains(r.stderr, "no such file, so nothing to salvage") {
		t.Errorf("salvage of a missing file: exit %d, %s", r.code, r.stderr)
	}
}
