package warehouse

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
)

// blockingWarehouse applies everything, but holds groups touching table
// "held" until release is closed.
type blockingWarehouse struct{ release chan struct{} }

func (b *blockingWarehouse) Apply(ctx context.Context, group []Payload) ([]Outcome, error) {
	for _, p := range group {
		for _, a := range p.Activities {
			if a.Table == "held" {
				<-b.release
			}
		}
	}
	out := make([]Outcome, len(group))
	for i := range out {
		out[i] = Outcome{Status: Applied}
	}
	return out, nil
}

func (b *blockingWarehouse) Ping(context.Context) error { return nil }
func (b *blockingWarehouse) Close() error               { return nil }

func onTable(id, table string) Payload {
	return Payload{ID: id, Activities: []messages.Activity{{Op: messages.OpInsert, Table: table}}}
}

// The leader is elected under c.mu while its ctx has already ended and its
// Submit waits for c.mu to withdraw. It finds itself started, and must still
// get the group run for the other member.
func TestGroupCommitter_runs_a_group_whose_leader_gave_up_while_elected(t *testing.T) {
	w := &blockingWarehouse{release: make(chan struct{})}
	const maxWait = 50 * time.Millisecond
	c, err := NewGroupCommitter(w, GroupConfig{MaxWait: maxWait}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(w.release)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Error(err)
		}
	}()

	type result struct {
		o   Outcome
		err error
	}
	submit := func(ctx context.Context, p Payload) chan result {
		ch := make(chan result, 1)
		go func() {
			o, err := c.Submit(ctx, p)
			ch <- result{o, err}
		}()
		return ch
	}
	pendingCount := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.pending)
	}
	waitFor := func(cond func() bool) {
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatal("condition not reached")
			}
			time.Sleep(time.Millisecond)
		}
	}

	submit(context.Background(), onTable("holder", "held"))
	waitFor(func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.inFlight == 1
	})
	ctx, cancel := context.WithCancel(context.Background())
	leader := submit(ctx, onTable("leader", "other"))
	waitFor(func() bool { return pendingCount() == 1 })
	follower := submit(context.Background(), onTable("follower", "other"))
	waitFor(func() bool { return pendingCount() == 2 })

	// Both wait for MaxWait because the holder's group is in flight. Hold
	// c.mu across the timer, so its callback queues for the lock first and
	// the leader's withdrawal second; once they waited over a millisecond
	// the mutex hands over in that order.
	c.mu.Lock()
	time.Sleep(maxWait + 20*time.Millisecond)
	cancel()
	time.Sleep(20 * time.Millisecond)
	c.mu.Unlock()

	select {
	case r := <-follower:
		if r.err != nil || r.o.Status != Applied {
			t.Fatalf("follower got %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the follower's group never ran")
	}
	r := <-leader
	if !errors.Is(r.err, context.Canceled) && r.o.Status != Applied {
		t.Fatalf("leader got %+v", r)
	}
}
