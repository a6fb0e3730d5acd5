package warehouse_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// A panicking adapter is a bug: every member of its group gets a permanent
// error, and the committer goes on with the next group instead of keeping
// the slot and the tables for ever.
func TestGroupCommitter_turns_a_warehouse_panic_into_a_permanent_group_error(t *testing.T) {
	w := newRecordingWarehouse(t)
	w.autoRelease = true
	panics := true
	w.fail = func([]warehouse.Payload) error {
		if panics {
			panic("adapter bug")
		}
		return nil
	}
	c := newCommitter(t, w, warehouse.GroupConfig{MaxInFlight: 1, MaxWait: time.Millisecond})
	ctx := context.Background()
	r := receive(t, submitAsync(ctx, c, payloadOn(1, "t")))
	if messages.ClassOf(r.err) != messages.ClassPermanent || !strings.Contains(r.err.Error(), "adapter bug") {
		t.Fatalf("Submit = %v (class %q), want a permanent error naming the panic", r.err, messages.ClassOf(r.err))
	}
	panics = false
	if r := receive(t, submitAsync(ctx, c, payloadOn(2, "t"))); r.err != nil || r.outcome.Status != warehouse.Applied {
		t.Fatalf("the next group on the same table: %+v, %v", r.outcome, r.err)
	}
}
