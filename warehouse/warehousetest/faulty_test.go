package warehousetest_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

func onePayload() warehouse.Payload {
	return warehousetest.Payload("p1", warehousetest.Insert("t",
		warehousetest.Col("a", messages.ColumnType{Base: messages.TypeInt64}, int64(1))))
}

// countingWarehouse applies nothing and counts the Apply calls that reached it.
type countingWarehouse struct {
	mu    sync.Mutex
	calls int
}

func (c *countingWarehouse) Apply(_ context.Context, group []warehouse.Payload) ([]warehouse.Outcome, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	out := make([]warehouse.Outcome, len(group))
	for i := range out {
		out[i] = warehouse.Outcome{Status: warehouse.Applied}
	}
	return out, nil
}

func (c *countingWarehouse) Ping(context.Context) error { return nil }
func (c *countingWarehouse) Close() error               { return nil }

func (c *countingWarehouse) reached() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func TestFaulty_fails_the_next_n_calls_with_a_transient_error_by_default(t *testing.T) {
	inner := &countingWarehouse{}
	f := warehousetest.NewFaulty(inner)
	f.FailNext(2, nil)
	group := []warehouse.Payload{onePayload()}

	for i := range 2 {
		_, err := f.Apply(context.Background(), group)
		if !errors.Is(err, warehousetest.ErrInjected) || messages.ClassOf(err) != messages.ClassTransient {
			t.Fatalf("call %d: err = %v (class %q), want transient ErrInjected", i, err, messages.ClassOf(err))
		}
	}
	if inner.reached() != 0 {
		t.Fatalf("failed calls reached the warehouse %d times", inner.reached())
	}
	out, err := f.Apply(context.Background(), group)
	if err != nil || len(out) != 1 || out[0].Status != warehouse.Applied {
		t.Fatalf("third call = %+v, %v; want it passed through", out, err)
	}
	if f.Calls() != 3 || f.Failures() != 2 || inner.reached() != 1 {
		t.Errorf("calls %d, failures %d, reached %d; want 3, 2, 1", f.Calls(), f.Failures(), inner.reached())
	}
}

func TestFaulty_uses_the_given_error(t *testing.T) {
	f := warehousetest.NewFaulty(&countingWarehouse{})
	poison := messages.Permanent(errors.New("bad"))
	f.FailNext(1, poison)
	if _, err := f.Apply(context.Background(), nil); !errors.Is(err, poison) {
		t.Fatalf("err = %v, want the configured one", err)
	}
}

func TestFaulty_FailNextAfterApply_applies_then_fails(t *testing.T) {
	inner := &countingWarehouse{}
	f := warehousetest.NewFaulty(inner)
	f.FailNextAfterApply(1, nil)
	out, err := f.Apply(context.Background(), []warehouse.Payload{onePayload()})
	if !errors.Is(err, warehousetest.ErrInjected) || out != nil {
		t.Fatalf("got %+v, %v; want no outcomes and ErrInjected", out, err)
	}
	if inner.reached() != 1 {
		t.Fatalf("the call reached the warehouse %d times, want 1", inner.reached())
	}
	if _, err := f.Apply(context.Background(), nil); err != nil {
		t.Fatalf("second call: %v", err)
	}
}

func TestFaulty_is_safe_for_concurrent_use(t *testing.T) {
	inner := &countingWarehouse{}
	f := warehousetest.NewFaulty(inner)
	f.FailNext(50, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for range 200 {
		wg.Go(func() {
			if _, err := f.Apply(context.Background(), nil); err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed != 50 || f.Failures() != 50 || f.Calls() != 200 || inner.reached() != 150 {
		t.Errorf("failed %d, Failures %d, Calls %d, reached %d; want 50, 50, 200, 150",
			failed, f.Failures(), f.Calls(), inner.reached())
	}
}

// eventLogWarehouse is a countingWarehouse with an events log that counts
// the appends that reached it.
type eventLogWarehouse struct {
	countingWarehouse
	warehouse.EventLog
	appends int
}

func (e *eventLogWarehouse) AppendEvents(context.Context, []warehouse.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.appends++
	return nil
}

func TestFaulty_fails_appends_on_demand_and_passes_the_rest_through(t *testing.T) {
	inner := &eventLogWarehouse{}
	f := warehousetest.NewFaulty(inner)
	f.FailNextAppends(1, nil)
	ctx := context.Background()
	if err := f.AppendEvents(ctx, nil); !errors.Is(err, warehousetest.ErrInjected) || messages.ClassOf(err) != messages.ClassTransient {
		t.Fatalf("first AppendEvents = %v, want transient ErrInjected", err)
	}
	if err := f.AppendEvents(ctx, nil); err != nil {
		t.Fatalf("second AppendEvents = %v, want it passed through", err)
	}
	if inner.appends != 1 {
		t.Errorf("%d appends reached the warehouse, want 1", inner.appends)
	}
	// Apply is not affected.
	if _, err := f.Apply(ctx, []warehouse.Payload{onePayload()}); err != nil {
		t.Errorf("Apply = %v", err)
	}
}

func TestFaulty_without_an_events_log_says_so(t *testing.T) {
	f := warehousetest.NewFaulty(&countingWarehouse{})
	if _, err := f.History(context.Background(), "p"); !errors.Is(err, warehousetest.ErrNoEventLog) {
		t.Fatalf("History = %v, want ErrNoEventLog", err)
	}
}
