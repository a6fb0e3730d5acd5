package outbox_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
)

func open(t *testing.T, path string) *outbox.Outbox {
	t.Helper()
	o, err := outbox.Open(context.Background(), outbox.Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func ids(t *testing.T, o *outbox.Outbox, state outbox.State) []string {
	t.Helper()
	var got []string
	err := o.Each(context.Background(), state, func(e outbox.Entry) error {
		got = append(got, e.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestOutboxKeepsWhatIsNotSettledAcrossReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := open(t, path)
	for i := range 4 {
		if err := o.Append(ctx, outbox.Entry{
			ID: fmt.Sprintf("p%d", i), Payload: []byte(`{"activities":[]}`),
			Metadata: map[string]string{"correlation_id": fmt.Sprintf("c%d", i)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	o.Forget("p1")
	o.MarkPoisoned("p2", map[string]string{"reason": "missing table"})
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	o = open(t, path)
	defer o.Close()
	if got := fmt.Sprint(ids(t, o, outbox.Pending)); got != "[p0 p3]" {
		t.Errorf("pending after reopen: %s, want [p0 p3] in append order", got)
	}
	var poisoned []outbox.Entry
	_ = o.Each(ctx, outbox.Poisoned, func(e outbox.Entry) error { poisoned = append(poisoned, e); return nil })
	if len(poisoned) != 1 || poisoned[0].ID != "p2" || poisoned[0].Metadata["reason"] != "missing table" ||
		string(poisoned[0].Payload) != `{"activities":[]}` {
		t.Errorf("poisoned after reopen: %+v", poisoned)
	}
	counts, err := o.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[outbox.Pending] != 2 || counts[outbox.Poisoned] != 1 {
		t.Errorf("counts %v", counts)
	}
	// Applying a replayed poisoned payload forgets it too.
	o.Forget("p2")
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, o, outbox.Poisoned); len(got) != 0 {
		t.Errorf("poisoned after forget: %v", got)
	}
}

// Concurrent requests must share fsyncs, or the outbox would cost each
// request a disk flush of its own.
func TestOutboxGroupsConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	o := open(t, filepath.Join(t.TempDir(), "outbox.db"))
	defer o.Close()
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- o.Append(ctx, outbox.Entry{ID: fmt.Sprintf("p%d", i), Payload: []byte("{}")})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(ids(t, o, outbox.Pending)); got != n {
		t.Fatalf("%d pending, want %d", got, n)
	}
	if c := o.Commits(); c >= n {
		t.Errorf("%d appends took %d commits; concurrent appends should share them", n, c)
	} else {
		t.Logf("%d concurrent appends in %d commits", n, c)
	}
}

// Appends one at a time (light load) are never held for Linger, even an
// hour of it (collect_internal_test.go covers the lingering itself).
func TestOutboxDoesNotLingerUnderLightLoad(t *testing.T) {
	o, err := outbox.Open(context.Background(), outbox.Config{
		Path: filepath.Join(t.TempDir(), "outbox.db"), Sync: "normal", Linger: time.Hour,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		if err := o.Append(ctx, outbox.Entry{ID: fmt.Sprintf("lone%d", i), Payload: []byte("{}")}); err != nil {
			t.Fatalf("lone append %d waited: %v", i, err)
		}
	}
}

func TestOutboxAppendAfterCloseFails(t *testing.T) {
	t.Parallel()
	o := open(t, filepath.Join(t.TempDir(), "outbox.db"))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Append(context.Background(), outbox.Entry{ID: "p"}); err == nil {
		t.Fatal("Append after Close succeeded")
	}
}

func TestOutboxConfigReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := outbox.Open(context.Background(), outbox.Config{Sync: "sometimes", MaxBatch: -1}, nil)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"Path", "Sync", "MaxBatch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

// A payload Pub/Sub lost while the process runs is offered again once it
// has waited RedeliverAfter, and then ever less often. The waits are long
// enough that a loaded machine's pauses (CI runs this beside the fault
// suite) cannot make a "not yet" check late.
func TestOutboxOffersOverduePayloadsAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const wait = 400 * time.Millisecond
	o, err := outbox.Open(ctx, outbox.Config{Path: filepath.Join(t.TempDir(), "outbox.db"), RedeliverAfter: wait}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Append(ctx, outbox.Entry{ID: "late", Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	due := func() []outbox.Entry {
		var got []outbox.Entry
		if err := o.Due(ctx, outbox.Pending, func(e outbox.Entry) error { got = append(got, e); return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := due(); len(got) != 0 {
		t.Fatalf("due at once: %v", got)
	}
	// The time passing is what is tested (no event marks RedeliverAfter),
	// here and in the sleeps below.
	time.Sleep(wait + 100*time.Millisecond)
	got := due()
	if len(got) != 1 || got[0].ID != "late" || got[0].Republished != 0 {
		t.Fatalf("due after RedeliverAfter: %+v", got)
	}
	republished := time.Now()
	o.Republished(got[0])
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// "Not yet" holds only while less than twice the wait has passed; a
	// loaded machine may oversleep, and then there is nothing to check.
	notYet := func(what string) {
		t.Helper()
		got := due()
		if time.Since(republished) < 2*wait && len(got) != 0 {
			t.Fatalf("%s: %+v", what, got)
		}
	}
	notYet("due again at once after a republish")
	time.Sleep(wait + 100*time.Millisecond)
	notYet("due again before twice the wait")
	time.Sleep(wait)
	if got := due(); len(got) != 1 || got[0].Republished != 1 {
		t.Fatalf("due after twice the wait: %+v", got)
	}
	o.Forget("late")
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := due(); len(got) != 0 {
		t.Fatalf("a forgotten payload is due: %+v", got)
	}
}

// A poisoned payload that never reached the poison index is offered again
// RedeliverAfter after it was poisoned, not after it was accepted, and
// apart from the pending ones.
func TestOutboxOffersOverduePoisonedPayloadsAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const wait = 400 * time.Millisecond
	o, err := outbox.Open(ctx, outbox.Config{Path: filepath.Join(t.TempDir(), "outbox.db"), RedeliverAfter: wait}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Append(ctx, outbox.Entry{ID: "bad", Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(wait + 100*time.Millisecond) // overdue as a pending payload
	o.MarkPoisoned("bad", map[string]string{"reason_poisoned": "missing table"})
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	due := func(state outbox.State) []string {
		var ids []string
		if err := o.Due(ctx, state, func(e outbox.Entry) error { ids = append(ids, e.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := due(outbox.Poisoned); len(got) != 0 {
		t.Fatalf("poisoned due at once after its poisoning: %v", got)
	}
	if got := due(outbox.Pending); len(got) != 0 {
		t.Fatalf("a poisoned entry offered as pending: %v", got)
	}
	time.Sleep(wait + 100*time.Millisecond) // RedeliverAfter after the poisoning: the time passing is what is tested
	if got := due(outbox.Poisoned); len(got) != 1 || got[0] != "bad" {
		t.Fatalf("poisoned due after RedeliverAfter: %v", got)
	}
}

// Appends and forgets are written a chunk of rows per statement; every run
// length, a payload appended twice, and an append forgotten in the same
// batch must come out as if written one by one.
func TestOutboxWritesRunsOfEveryLength(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := open(t, path)
	want := map[string]bool{}
	n := 0
	for _, run := range []int{1, 3, 4, 5, 17, 63, 64, 65, 150} {
		var wg sync.WaitGroup
		for i := range run {
			id := fmt.Sprintf("r%d-%d", run, i)
			want[id] = true
			n++
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := o.Append(ctx, outbox.Entry{ID: id, Payload: []byte(`{"n":1}`), Metadata: map[string]string{"k": id}}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		// The same ids again: kept once, as before.
		if err := o.Append(ctx, outbox.Entry{ID: fmt.Sprintf("r%d-0", run), Payload: []byte(`{"n":2}`)}); err != nil {
			t.Fatal(err)
		}
		// Forget every third, in one burst of fire-and-forget ops.
		for i := 0; i < run; i += 3 {
			id := fmt.Sprintf("r%d-%d", run, i)
			o.Forget(id)
			delete(want, id)
		}
	}
	// Appended and forgotten back to back, so that both can share a batch.
	for i := range 100 {
		id := fmt.Sprintf("quick-%d", i)
		if err := o.Append(ctx, outbox.Entry{ID: id, Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		o.Forget(id)
	}
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = open(t, path)
	defer o.Close()
	got := ids(t, o, outbox.Pending)
	if len(got) != len(want) {
		t.Fatalf("%d pending after %d appends, want %d", len(got), n, len(want))
	}
	for _, id := range got {
		if !want[id] {
			t.Errorf("%s pending; it was forgotten", id)
		}
	}
}
