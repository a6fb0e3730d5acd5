package outbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
)

// filled is an outbox at a new path holding n pending entries of about a
// kilobyte each (three or four to a page), closed; it returns the path and
// the identity.
func filled(t *testing.T, n int) (string, string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := open(t, path)
	for i := range n {
		payload := fmt.Sprintf(`{"activities":[],"pad":%q}`, strings.Repeat("x", 1000))
		if err := o.Append(ctx, outbox.Entry{ID: fmt.Sprintf("p%04d", i), Payload: []byte(payload),
			Metadata: map[string]string{"correlation_id": fmt.Sprintf("c%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// One poisoned and one forgotten, so that the file has both states
	// and a gap in its row numbers.
	o.MarkPoisoned("p0001", map[string]string{"reason": "r"})
	o.Forget("p0002")
	id := o.Identity()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		t.Fatalf("a closed outbox left its WAL: the damage below would miss what is in it")
	}
	return path, id
}

const pageSize = 4096

// zeroPages overwrites pages first..last (1-based) with zeros.
func zeroPages(t *testing.T, path string, first, last int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zeros := make([]byte, pageSize)
	for p := first; p <= last; p++ {
		if _, err := f.WriteAt(zeros, int64(p-1)*pageSize); err != nil {
			t.Fatal(err)
		}
	}
}

func pages(t *testing.T, path string) int {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(info.Size() / pageSize)
}

func TestOutboxHasAnIdentityOfItsOwn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "outbox.db")
	o := open(t, path)
	id := o.Identity()
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(id) || !o.Created() {
		t.Fatalf("new outbox: identity %q, created %v; want 16 hex digits and created", id, o.Created())
	}
	if err := o.Append(ctx, outbox.Entry{ID: "a", Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = open(t, path)
	if o.Identity() != id || o.Created() {
		t.Errorf("reopened: identity %q, created %v; want %q and not created", o.Identity(), o.Created(), id)
	}
	_ = o.Close()

	other := open(t, filepath.Join(dir, "other.db"))
	defer other.Close()
	if other.Identity() == id {
		t.Errorf("two outbox files share the identity %s", id)
	}
}

func TestOutboxRefusesADamagedFileNamingTheSalvage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, int64(pages(t, path)/2*pageSize)); err != nil {
				t.Fatal(err)
			}
		}},
		{"pages zeroed", func(t *testing.T, path string) {
			n := pages(t, path)
			zeroPages(t, path, n/2, n/2+3)
		}},
		{"not a database", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 2048), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, _ := filled(t, 200)
			c.damage(t, path)
			o, err := outbox.Open(context.Background(), outbox.Config{Path: path}, nil)
			if err == nil {
				o.Close()
				t.Fatal("a damaged outbox opened")
			}
			var damaged *outbox.DamagedError
			if !errors.As(err, &damaged) || damaged.Path != path {
				t.Fatalf("error %v (%T), want a *DamagedError for %s", err, err, path)
			}
			if want := "gatekeeper outbox salvage --outbox-path " + path; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		})
	}
}

// A page zeroed in the middle of the table: every other entry is saved,
// the lost ones are counted exactly (the index on id still lists them),
// the identity is kept, and the new outbox opens.
func TestSalvageSavesEveryReadableEntryAroundZeroedPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, id := filled(t, 300)
	n := pages(t, path)
	zeroPages(t, path, n/2, n/2+1)

	dry, err := outbox.Salvage(ctx, path, outbox.SalvageOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil || dry.DamagedPath != "" {
		t.Fatalf("dry run moved the file: %v, %q", err, dry.DamagedPath)
	}

	now := time.Date(2026, 12, 6, 23, 0, 0, 0, time.UTC)
	rep, err := outbox.Salvage(ctx, path, outbox.SalvageOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("salvage: %+v", rep)
	if rep.Identity != id {
		t.Errorf("identity %q, want the damaged outbox's %q", rep.Identity, id)
	}
	if rep.Damage == "ok" {
		t.Errorf("quick_check found no damage in a file with zeroed pages")
	}
	// 300 appended, one forgotten: 299 entries, one of them poisoned.
	if !rep.UnreadableKnown || rep.SavedTotal()+rep.Unreadable != 299 || rep.Unreadable == 0 {
		t.Errorf("saved %d + unreadable %d (known %v), want 299 with some unreadable, counted", rep.SavedTotal(), rep.Unreadable, rep.UnreadableKnown)
	}
	if rep.SavedTotal() != dry.SavedTotal() || rep.Unreadable != dry.Unreadable {
		t.Errorf("the dry run counted %d saved, %d unreadable; the salvage %d, %d", dry.SavedTotal(), dry.Unreadable, rep.SavedTotal(), rep.Unreadable)
	}
	if want := path + ".damaged-20261206T230000Z"; rep.DamagedPath != want {
		t.Errorf("damaged file moved to %q, want %q", rep.DamagedPath, want)
	}
	if _, err := os.Stat(rep.DamagedPath); err != nil {
		t.Errorf("the damaged file is not kept: %v", err)
	}

	o := open(t, path)
	defer o.Close()
	if o.Identity() != id || o.Created() {
		t.Errorf("salvaged outbox: identity %q created %v, want %q and not created", o.Identity(), o.Created(), id)
	}
	counts, err := o.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[outbox.Pending] != rep.Saved[outbox.Pending] || counts[outbox.Poisoned] != rep.Saved[outbox.Poisoned] {
		t.Errorf("salvaged outbox holds %v, the report says %v", counts, rep.Saved)
	}
	// What survives keeps its order, payload and metadata.
	prev := ""
	err = o.Each(ctx, outbox.Pending, func(e outbox.Entry) error {
		if e.ID <= prev || !strings.Contains(string(e.Payload), "xxxx") || e.Metadata["correlation_id"] == "" {
			return fmt.Errorf("entry %s after %s: %q %v", e.ID, prev, e.Payload[:20], e.Metadata)
		}
		prev = e.ID
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// A file cut in half loses rows that nothing may count any more: the
// report says so rather than claim a number, and what was read is saved
// under the identity the header kept.
func TestSalvageOfATruncatedFileIsHonestAboutWhatItCannotCount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, id := filled(t, 300)
	if err := os.Truncate(path, int64(pages(t, path)/2*pageSize)); err != nil {
		t.Fatal(err)
	}
	rep, err := outbox.Salvage(ctx, path, outbox.SalvageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("salvage: %+v", rep)
	if rep.Identity != id {
		t.Errorf("identity %q, want %q", rep.Identity, id)
	}
	if rep.SavedTotal() == 0 || rep.SavedTotal() >= 299 {
		t.Errorf("saved %d of 299 from half a file", rep.SavedTotal())
	}
	if rep.UnreadableKnown && rep.SavedTotal()+rep.Unreadable != 299 {
		t.Errorf("the report claims to know: saved %d + unreadable %d != 299", rep.SavedTotal(), rep.Unreadable)
	}
	if lost := 299 - rep.SavedTotal(); lost < rep.Unreadable || rep.MostUnreadable() >= 0 && lost > rep.MostUnreadable() {
		t.Errorf("%d lost, the report bounds it to %d..%d", lost, rep.Unreadable, rep.MostUnreadable())
	}
	o := open(t, path)
	defer o.Close()
	if o.Identity() != id {
		t.Errorf("salvaged outbox identity %q, want %q", o.Identity(), id)
	}
	counts, err := o.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := counts[outbox.Pending] + counts[outbox.Poisoned]; got != rep.SavedTotal() {
		t.Errorf("salvaged outbox holds %d, the report says %d", got, rep.SavedTotal())
	}
}

func TestSalvageOfAMissingOrEmptyFileSaysWhatToDo(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "outbox.db")
	_, err := outbox.Salvage(context.Background(), path, outbox.SalvageOptions{})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "--outbox-accept-loss") ||
		!strings.Contains(err.Error(), "restore") {
		t.Errorf("salvage of a missing file: %v; want the file named, restore, and --outbox-accept-loss", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("salvage created %s", path)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.Salvage(context.Background(), path, outbox.SalvageOptions{}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("salvage of an empty file: %v", err)
	}
}

// Not a database at all: nothing is readable, the identity is lost, and
// the file is still moved aside for a new outbox.
func TestSalvageOfGarbageSavesNothingAndSaysSo(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "outbox.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := outbox.Salvage(context.Background(), path, outbox.SalvageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.SavedTotal() != 0 || rep.UnreadableKnown || !rep.NewIdentity || rep.Identity == "" || rep.Damage == "ok" {
		t.Errorf("salvage of garbage: %+v; want nothing saved, the loss unknown, a new identity, damage", rep)
	}
}

func TestOutboxErrorsNameTheFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := open(t, path)
	_ = o.Close()
	err := o.Append(context.Background(), outbox.Entry{ID: "a", Payload: []byte("{}")})
	if !errors.Is(err, outbox.ErrClosed) || !strings.Contains(err.Error(), path) {
		t.Errorf("append after close: %v; want ErrClosed naming %s", err, path)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := o.Each(ctx, outbox.Pending, func(outbox.Entry) error { return nil }); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("read after close: %v; want it to name %s", err, path)
	}
}
