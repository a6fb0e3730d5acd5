package warehouse_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// recordingWarehouse records every Apply call and fails the test when two
// calls in flight share a table. Each call blocks until release lets it go,
// unless autoRelease is set.
type recordingWarehouse struct {
	t           *testing.T
	autoRelease bool
	hold        time.Duration
	fail        func(group []warehouse.Payload) error

	mu            sync.Mutex
	calls         [][]warehouse.Payload
	active        map[string]int
	current       int
	maxConcurrent int

	started chan []warehouse.Payload
	release chan struct{}
}

func newRecordingWarehouse(t *testing.T) *recordingWarehouse {
	return &recordingWarehouse{
		t:       t,
		active:  map[string]int{},
		started: make(chan []warehouse.Payload, 1000),
		release: make(chan struct{}, 1000),
	}
}

func (r *recordingWarehouse) Apply(ctx context.Context, group []warehouse.Payload) ([]warehouse.Outcome, error) {
	tables := map[string]bool{}
	for _, p := range group {
		for _, a := range p.Activities {
			tables[a.Table] = true
		}
	}
	r.mu.Lock()
	for table := range tables {
		if r.active[table] > 0 {
			r.t.Errorf("two Apply calls in flight touch table %q", table)
		}
		r.active[table]++
	}
	r.current++
	r.maxConcurrent = max(r.maxConcurrent, r.current)
	r.calls = append(r.calls, slices.Clone(group))
	r.mu.Unlock()

	defer func() {
		r.mu.Lock()
		for table := range tables {
			r.active[table]--
		}
		r.current--
		r.mu.Unlock()
	}()

	r.started <- group
	if r.autoRelease {
		time.Sleep(r.hold) // a warehouse that takes r.hold to apply: the fake's speed, not a wait
	} else {
		select {
		case <-r.release:
		case <-ctx.Done():
			return nil, messages.Transient(ctx.Err())
		}
	}
	if r.fail != nil {
		if err := r.fail(group); err != nil {
			return nil, err
		}
	}
	outcomes := make([]warehouse.Outcome, len(group))
	for i, p := range group {
		// RowsAffected carries the payload's identity back so tests can check
		// each submitter got its own outcome.
		var n int64
		fmt.Sscanf(p.ID, "p%d", &n)
		outcomes[i] = warehouse.Outcome{Status: warehouse.Applied, RowsAffected: n}
	}
	return outcomes, nil
}

func (r *recordingWarehouse) Ping(context.Context) error { return nil }
func (r *recordingWarehouse) Close() error               { return nil }

func (r *recordingWarehouse) callSizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	sizes := make([]int, len(r.calls))
	for i, c := range r.calls {
		sizes[i] = len(c)
	}
	return sizes
}

func (r *recordingWarehouse) waitStarted(t *testing.T) []warehouse.Payload {
	t.Helper()
	select {
	case g := <-r.started:
		return g
	case <-time.After(5 * time.Second):
		t.Fatal("no Apply call started")
		return nil
	}
}

func (r *recordingWarehouse) assertNotStarted(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case g := <-r.started:
		t.Fatalf("unexpected Apply call with %v", ids(g))
	case <-time.After(within):
	}
}

func payloadOn(n int, tables ...string) warehouse.Payload {
	p := warehouse.Payload{ID: fmt.Sprintf("p%d", n)}
	for _, table := range tables {
		p.Activities = append(p.Activities, messages.Activity{
			Op:      messages.OpInsert,
			Table:   table,
			Columns: []messages.Column{{Name: "a", Type: messages.ColumnType{Base: messages.TypeInt64}, Value: int64(n)}},
		})
	}
	return p
}

func ids(group []warehouse.Payload) []string {
	out := make([]string, len(group))
	for i, p := range group {
		out[i] = p.ID
	}
	return out
}

type submitResult struct {
	outcome warehouse.Outcome
	err     error
}

func submitAsync(ctx context.Context, c *warehouse.GroupCommitter, p warehouse.Payload) <-chan submitResult {
	ch := make(chan submitResult, 1)
	go func() {
		o, err := c.Submit(ctx, p)
		ch <- submitResult{o, err}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan submitResult) submitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Submit did not return")
		return submitResult{}
	}
}

func newCommitter(t *testing.T, w warehouse.Warehouse, cfg warehouse.GroupConfig) *warehouse.GroupCommitter {
	t.Helper()
	c, err := warehouse.NewGroupCommitter(w, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// waitPending waits until exactly n submissions are pending in c, enqueued
// and not started, so a test knows its submitters have arrived before it
// releases anything. It fails the test when that takes over 5s.
func waitPending(t *testing.T, c *warehouse.GroupCommitter, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := warehouse.PendingCount(c)
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d submissions pending after 5s, want %d", got, n)
		}
		time.Sleep(time.Millisecond) // the poll's interval
	}
}

func TestGroupCommitter_combines_payloads_waiting_for_a_busy_table(t *testing.T) {
	w := newRecordingWarehouse(t)
	c := newCommitter(t, w, warehouse.GroupConfig{MaxWait: time.Hour})
	ctx := context.Background()

	first := submitAsync(ctx, c, payloadOn(0, "t"))
	w.waitStarted(t)

	var waiting []<-chan submitResult
	for i := 1; i <= 10; i++ {
		waiting = append(waiting, submitAsync(ctx, c, payloadOn(i, "t")))
	}
	waitPending(t, c, 10)
	w.assertNotStarted(t, 0)

	w.release <- struct{}{}
	if r := receive(t, first); r.err != nil || r.outcome.RowsAffected != 0 {
		t.Fatalf("first submitter got %+v", r)
	}
	second := w.waitStarted(t)
	if len(second) != 10 {
		t.Fatalf("second group has %d payloads %v, want the 10 that waited", len(second), ids(second))
	}
	w.release <- struct{}{}
	for i, ch := range waiting {
		r := receive(t, ch)
		if r.err != nil {
			t.Fatalf("submitter %d: %v", i+1, r.err)
		}
		if r.outcome.RowsAffected != int64(i+1) {
			t.Errorf("submitter %d got the outcome of payload p%d", i+1, r.outcome.RowsAffected)
		}
	}
	if got := c.Stats(); got.Groups != 2 || got.Payloads != 11 || got.LargestGroup != 10 {
		t.Errorf("stats = %+v, want 2 groups, 11 payloads, largest 10", got)
	}
}

func TestGroupCommitter_bounds_groups_by_MaxSize(t *testing.T) {
	w := newRecordingWarehouse(t)
	c := newCommitter(t, w, warehouse.GroupConfig{MaxSize: 4, MaxWait: time.Hour})
	ctx := context.Background()

	results := []<-chan submitResult{submitAsync(ctx, c, payloadOn(0, "t"))}
	w.waitStarted(t)
	for i := 1; i <= 10; i++ {
		results = append(results, submitAsync(ctx, c, payloadOn(i, "t")))
	}
	waitPending(t, c, 10)
	for range 4 {
		w.release <- struct{}{}
	}
	for _, ch := range results {
		if r := receive(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got := w.callSizes(); !slices.Equal(got, []int{1, 4, 4, 2}) {
		t.Errorf("group sizes = %v, want [1 4 4 2]", got)
	}
}

func TestGroupCommitter_never_runs_two_groups_on_one_table(t *testing.T) {
	w := newRecordingWarehouse(t)
	w.autoRelease = true
	w.hold = 200 * time.Microsecond
	c := newCommitter(t, w, warehouse.GroupConfig{MaxSize: 8, MaxWait: 100 * time.Microsecond, MaxInFlight: 4})

	tables := []string{"a", "b", "c", "d", "e", "f"}
	var wg sync.WaitGroup
	var applied atomic.Int64
	for g := range 40 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 25 {
				picked := []string{tables[rng.IntN(len(tables))]}
				if rng.IntN(3) == 0 {
					picked = append(picked, tables[rng.IntN(len(tables))])
				}
				o, err := c.Submit(context.Background(), payloadOn(g*1000+i, picked...))
				if err != nil {
					t.Error(err)
					return
				}
				if o.Status == warehouse.Applied {
					applied.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if applied.Load() != 1000 {
		t.Errorf("applied %d payloads, want 1000", applied.Load())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// Without concurrency the overlap check above proves nothing.
	if w.maxConcurrent < 2 {
		t.Errorf("at most %d groups ran at once; the test needs concurrent groups to mean anything", w.maxConcurrent)
	}
	if w.maxConcurrent > 4 {
		t.Errorf("%d groups ran at once, MaxInFlight is 4", w.maxConcurrent)
	}
	if len(w.calls) >= 1000 {
		t.Errorf("%d Apply calls for 1000 payloads: nothing was grouped", len(w.calls))
	}
}

func TestGroupCommitter_keeps_arrival_order_on_shared_tables(t *testing.T) {
	w := newRecordingWarehouse(t)
	c := newCommitter(t, w, warehouse.GroupConfig{MaxWait: -1})
	ctx := context.Background()

	holder := submitAsync(ctx, c, payloadOn(0, "a"))
	w.waitStarted(t)
	// blockedOnA must wait for a; needsOnlyB could run at once, but would
	// then overtake blockedOnA on table b.
	blockedOnA := submitAsync(ctx, c, payloadOn(1, "a", "b"))
	waitPending(t, c, 1)
	needsOnlyB := submitAsync(ctx, c, payloadOn(2, "b"))
	independent := submitAsync(ctx, c, payloadOn(3, "c"))

	if g := w.waitStarted(t); !slices.Equal(ids(g), []string{"p3"}) {
		t.Fatalf("while a is held, started %v, want only [p3]", ids(g))
	}
	// needsOnlyB is pending, not started: with MaxWait negative nothing but
	// the release of a can start it, so it stays there.
	waitPending(t, c, 2)
	w.assertNotStarted(t, 0)

	// Three Apply calls are left: p0 and p3, and the group the end of p0
	// starts. Release them at once: releases are not addressed to a call, so
	// with only two that group could take p3's before p3 waits for it.
	for range 3 {
		w.release <- struct{}{}
	}
	receive(t, independent)
	receive(t, holder)
	if g := w.waitStarted(t); !slices.Equal(ids(g), []string{"p1", "p2"}) {
		t.Fatalf("after a was released, started %v, want [p1 p2]", ids(g))
	}
	receive(t, blockedOnA)
	receive(t, needsOnlyB)
}

func TestGroupCommitter_waits_at_most_MaxWait_while_another_group_runs(t *testing.T) {
	w := newRecordingWarehouse(t)
	const maxWait = 30 * time.Millisecond
	c := newCommitter(t, w, warehouse.GroupConfig{MaxWait: maxWait})
	ctx := context.Background()

	holder := submitAsync(ctx, c, payloadOn(0, "a"))
	w.waitStarted(t)

	submitted := time.Now()
	other := submitAsync(ctx, c, payloadOn(1, "b"))
	g := w.waitStarted(t)
	waited := time.Since(submitted)
	if !slices.Equal(ids(g), []string{"p1"}) {
		t.Fatalf("started %v, want [p1]", ids(g))
	}
	if waited < maxWait {
		t.Errorf("group started after %v, before MaxWait %v while a group was in flight", waited, maxWait)
	}
	w.release <- struct{}{}
	w.release <- struct{}{}
	receive(t, other)
	receive(t, holder)
}

func TestGroupCommitter_starts_at_once_when_idle(t *testing.T) {
	w := newRecordingWarehouse(t)
	w.autoRelease = true
	c := newCommitter(t, w, warehouse.GroupConfig{MaxWait: time.Hour})

	done := make(chan error, 1)
	go func() {
		_, err := c.Submit(context.Background(), payloadOn(1, "a"))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an idle committer waited for companions")
	}
}

func TestGroupCommitter_returns_group_error_to_every_member(t *testing.T) {
	w := newRecordingWarehouse(t)
	boom := messages.Transient(errors.New("backend unavailable"))
	w.fail = func(group []warehouse.Payload) error {
		if len(group) > 1 {
			return boom
		}
		return nil
	}
	c := newCommitter(t, w, warehouse.GroupConfig{MaxWait: time.Hour})
	ctx := context.Background()

	first := submitAsync(ctx, c, payloadOn(0, "t"))
	w.waitStarted(t)
	var members []<-chan submitResult
	for i := 1; i <= 3; i++ {
		members = append(members, submitAsync(ctx, c, payloadOn(i, "t")))
	}
	waitPending(t, c, 3)
	w.release <- struct{}{}
	w.release <- struct{}{}
	if r := receive(t, first); r.err != nil {
		t.Fatalf("first group: %v", r.err)
	}
	for _, ch := range members {
		r := receive(t, ch)
		if !errors.Is(r.err, boom) {
			t.Errorf("member got %v, want the group error", r.err)
		}
		if messages.ClassOf(r.err) != messages.ClassTransient {
			t.Errorf("group error class = %q, want transient", messages.ClassOf(r.err))
		}
	}
	if got := c.Stats(); got.FailedGroups != 1 {
		t.Errorf("FailedGroups = %d, want 1", got.FailedGroups)
	}
}

func TestGroupCommitter_withdraws_a_submitter_whose_context_ends_before_its_group_starts(t *testing.T) {
	w := newRecordingWarehouse(t)
	c := newCommitter(t, w, warehouse.GroupConfig{MaxWait: time.Hour})

	holder := submitAsync(context.Background(), c, payloadOn(0, "t"))
	w.waitStarted(t)

	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := submitAsync(ctx, c, payloadOn(1, "t"))
	stays := submitAsync(context.Background(), c, payloadOn(2, "t"))
	waitPending(t, c, 2)
	cancel()
	if r := receive(t, gaveUp); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled submitter got %+v, want context.Canceled", r)
	}

	w.release <- struct{}{}
	receive(t, holder)
	if g := w.waitStarted(t); !slices.Equal(ids(g), []string{"p2"}) {
		t.Fatalf("next group is %v, want [p2] without the withdrawn p1", ids(g))
	}
	w.release <- struct{}{}
	if r := receive(t, stays); r.err != nil {
		t.Fatal(r.err)
	}
}

func TestGroupCommitter_Close_flushes_pending_and_waits_for_groups(t *testing.T) {
	w := newRecordingWarehouse(t)
	c, err := warehouse.NewGroupCommitter(w, warehouse.GroupConfig{MaxWait: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	holder := submitAsync(ctx, c, payloadOn(0, "a"))
	w.waitStarted(t)
	lingering := submitAsync(ctx, c, payloadOn(1, "b"))
	// It waits for companions, MaxWait being an hour, until Close flushes it.
	waitPending(t, c, 1)
	w.assertNotStarted(t, 0)

	closed := make(chan error, 1)
	go func() { closed <- c.Close(context.Background()) }()

	if g := w.waitStarted(t); !slices.Equal(ids(g), []string{"p1"}) {
		t.Fatalf("Close started %v, want the lingering [p1]", ids(g))
	}
	// A negative check: nothing signals that Close keeps waiting, so give it
	// 50ms to return too early.
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v while groups were in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	w.release <- struct{}{}
	w.release <- struct{}{}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, ch := range []<-chan submitResult{holder, lingering} {
		if r := receive(t, ch); r.err != nil || r.outcome.Status != warehouse.Applied {
			t.Errorf("submitter got %+v, want applied", r)
		}
	}
	if _, err := c.Submit(ctx, payloadOn(2, "a")); !errors.Is(err, warehouse.ErrCommitterClosed) {
		t.Errorf("Submit after Close = %v, want ErrCommitterClosed", err)
	}
}

func TestGroupCommitter_Close_gives_up_when_its_context_ends(t *testing.T) {
	w := newRecordingWarehouse(t)
	c, err := warehouse.NewGroupCommitter(w, warehouse.GroupConfig{MaxWait: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stuck := submitAsync(context.Background(), c, payloadOn(0, "a"))
	w.waitStarted(t)
	behind := submitAsync(context.Background(), c, payloadOn(1, "a"))
	waitPending(t, c, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want DeadlineExceeded", err)
	}
	// The stuck Apply sees its context cancelled; the one behind it never ran.
	if r := receive(t, stuck); !errors.Is(r.err, context.Canceled) {
		t.Errorf("in-flight submitter got %+v, want its Apply cancelled", r)
	}
	if r := receive(t, behind); !errors.Is(r.err, warehouse.ErrCommitterClosed) {
		t.Errorf("pending submitter got %+v, want ErrCommitterClosed", r)
	}
	if got := w.callSizes(); len(got) != 1 {
		t.Errorf("Apply calls = %v, want only the stuck one", got)
	}
}

func TestGroupCommitter_reports_each_group_to_OnGroup(t *testing.T) {
	w := newRecordingWarehouse(t)
	var mu sync.Mutex
	var sizes []int
	var errs []error
	w.fail = func(group []warehouse.Payload) error {
		if group[0].ID == "p5" {
			return messages.Transient(errors.New("down"))
		}
		return nil
	}
	c := newCommitter(t, w, warehouse.GroupConfig{
		MaxWait: time.Hour,
		OnGroup: func(g warehouse.GroupReport) {
			if g.Took <= 0 {
				t.Errorf("OnGroup got duration %v", g.Took)
			}
			mu.Lock()
			sizes = append(sizes, g.Size)
			errs = append(errs, g.Err)
			mu.Unlock()
		},
	})
	ctx := context.Background()
	first := submitAsync(ctx, c, payloadOn(0, "t"))
	w.waitStarted(t)
	second := []<-chan submitResult{submitAsync(ctx, c, payloadOn(1, "t")), submitAsync(ctx, c, payloadOn(2, "t"))}
	waitPending(t, c, 2)
	w.release <- struct{}{}
	receive(t, first)
	w.waitStarted(t)
	w.release <- struct{}{}
	for _, ch := range second {
		receive(t, ch)
	}
	failing := submitAsync(ctx, c, payloadOn(5, "t"))
	w.waitStarted(t)
	w.release <- struct{}{}
	if r := receive(t, failing); r.err == nil {
		t.Fatal("want the group error")
	}

	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(sizes, []int{1, 2, 1}) {
		t.Errorf("OnGroup sizes = %v, want [1 2 1]", sizes)
	}
	if errs[0] != nil || errs[1] != nil || errs[2] == nil {
		t.Errorf("OnGroup errors = %v, want only the last set", errs)
	}
}

type miscountingWarehouse struct{ recordingWarehouse }

func (m *miscountingWarehouse) Apply(ctx context.Context, group []warehouse.Payload) ([]warehouse.Outcome, error) {
	return []warehouse.Outcome{}, nil
}

func TestGroupCommitter_rejects_a_wrong_number_of_outcomes(t *testing.T) {
	c := newCommitter(t, &miscountingWarehouse{}, warehouse.GroupConfig{})
	_, err := c.Submit(context.Background(), payloadOn(1, "t"))
	if err == nil || !strings.Contains(err.Error(), "0 outcomes") {
		t.Fatalf("Submit = %v, want an outcome-count error", err)
	}
	if messages.ClassOf(err) != messages.ClassTransient {
		t.Errorf("class = %q, want transient", messages.ClassOf(err))
	}
}

func TestGroupConfig_Validate_reports_every_problem(t *testing.T) {
	_, err := warehouse.NewGroupCommitter(newRecordingWarehouse(t), warehouse.GroupConfig{MaxSize: -1, MaxInFlight: -2}, nil)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"MaxSize", "MaxInFlight"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := warehouse.NewGroupCommitter(nil, warehouse.GroupConfig{}, nil); err == nil {
		t.Error("a nil warehouse was accepted")
	}
}

func TestGroupCommitter_Submit_with_a_done_context_does_not_enqueue(t *testing.T) {
	w := newRecordingWarehouse(t)
	w.autoRelease = true
	c := newCommitter(t, w, warehouse.GroupConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Submit(ctx, payloadOn(1, "t")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit = %v, want context.Canceled", err)
	}
	if n := warehouse.PendingCount(c); n != 0 {
		t.Fatalf("%d submissions pending, want none", n)
	}
	// A negative check: give an Apply call that should never come 20ms to
	// show up.
	w.assertNotStarted(t, 20*time.Millisecond)
}

// Submitters cancelled at every moment around their group's start must
// never strand the members that stay (the exact race of a leader giving up
// while elected is pinned down in group_internal_test.go).
func TestGroupCommitter_survives_cancellations_around_group_starts(t *testing.T) {
	w := newRecordingWarehouse(t)
	w.autoRelease = true
	w.hold = 500 * time.Microsecond
	c := newCommitter(t, w, warehouse.GroupConfig{MaxWait: -1})
	for i := range 200 {
		holder := submitAsync(context.Background(), c, payloadOn(3*i, "t"))
		ctx, cancel := context.WithCancel(context.Background())
		leader := submitAsync(ctx, c, payloadOn(3*i+1, "t"))
		follower := submitAsync(context.Background(), c, payloadOn(3*i+2, "t"))
		// Vary the moment of cancellation around the holder's release. This
		// sleep is the test's input, not a wait for an interleaving: any
		// outcome must leave the follower applied.
		time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
		cancel()
		if r := receive(t, follower); r.err != nil || r.outcome.Status != warehouse.Applied {
			t.Fatalf("round %d: follower got %+v", i, r)
		}
		if r := receive(t, leader); r.err != nil && !errors.Is(r.err, context.Canceled) {
			t.Fatalf("round %d: leader got %+v", i, r)
		}
		receive(t, holder)
	}
}
