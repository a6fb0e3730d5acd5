package warehouse

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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

// The leader is elected while its ctx has already ended and its Submit is on
// the way to withdraw it. It finds itself started, and must still get the
// group run for the other member.
func TestGroupCommitter_runs_a_group_whose_leader_gave_up_while_elected(t *testing.T) {
	w := &blockingWarehouse{release: make(chan struct{})}
	releaseHolder := sync.OnceFunc(func() { close(w.release) })
	// With MaxWait an hour, only the end of the holder's group elects the
	// leader, and the test decides when that happens.
	c, err := NewGroupCommitter(w, GroupConfig{MaxWait: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		releaseHolder()
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
	// poll reports whether cond became true within 5s. It may be called
	// from any goroutine.
	poll := func(cond func() bool) bool {
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(time.Millisecond)
		}
		return true
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if !poll(cond) {
			t.Fatalf("%s: not reached within 5s", what)
		}
	}

	// The leader's Submit calls the hook after choosing ctx.Done, and nothing
	// can have elected it yet. The hook ends the holder's group, which elects
	// the leader, and waits for that before giveUp goes on to look.
	var gaveUp atomic.Int32
	c.giveUpHook = func() {
		gaveUp.Add(1)
		releaseHolder()
		// On the leader's goroutine: t.Error, not t.Fatal.
		if !poll(func() bool { return c.pendingCount() == 0 }) {
			t.Error("the leader's group did not start within 5s")
		}
	}

	submit(context.Background(), onTable("holder", "held"))
	waitFor("the holder's group started", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.inFlight == 1
	})
	ctx, cancel := context.WithCancel(context.Background())
	leader := submit(ctx, onTable("leader", "other"))
	waitFor("the leader pending", func() bool { return c.pendingCount() == 1 })
	follower := submit(context.Background(), onTable("follower", "other"))
	waitFor("the follower pending", func() bool { return c.pendingCount() == 2 })
	cancel()

	select {
	case r := <-follower:
		if r.err != nil || r.o.Status != Applied {
			t.Fatalf("follower got %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the follower's group never ran")
	}
	select {
	case r := <-leader:
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("leader got %+v, want context.Canceled", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the leader's Submit did not return")
	}
	if n := gaveUp.Load(); n != 1 {
		t.Fatalf("giveUp ran %d times, want once, for the leader", n)
	}
	// The leader's payload went in the group with the follower's: it was
	// elected, not withdrawn.
	if got := c.Stats(); got.Groups != 2 || got.Payloads != 3 || got.LargestGroup != 2 {
		t.Fatalf("stats = %+v, want the holder's group and one of leader and follower", got)
	}
}
