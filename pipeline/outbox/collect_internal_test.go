package outbox

import (
	"testing"
	"time"
)

// collect, the writer's batching, with a hand-fed queue: it lingers only
// after a shared commit, for at most Linger, and stops at MaxBatch or Close.
func TestCollectLingersOnlyAfterASharedCommit(t *testing.T) {
	const linger = 300 * time.Millisecond
	newOutbox := func() *Outbox {
		return &Outbox{cfg: Config{MaxBatch: 4, Linger: linger}, ops: make(chan *op, 16), closing: make(chan struct{})}
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	collect := func(o *Outbox, shared bool) (n int, took time.Duration) {
		start := time.Now()
		batch := o.collect(nil, &op{}, shared, timer)
		return len(batch), time.Since(start)
	}

	t.Run("after a lone commit it takes what waits, at once", func(t *testing.T) {
		o := newOutbox()
		o.ops <- &op{}
		o.ops <- &op{}
		if n, took := collect(o, false); n != 3 || took > linger/2 {
			t.Fatalf("collected %d in %v; want 3 at once", n, took)
		}
	})
	// The sleeps below put an arrival, or Close, inside the wait: their
	// timing is the test's input.
	t.Run("after a shared commit it waits Linger for company", func(t *testing.T) {
		o := newOutbox()
		go func() { time.Sleep(50 * time.Millisecond); o.ops <- &op{} }()
		n, took := collect(o, true)
		if n != 2 || took < linger {
			t.Fatalf("collected %d in %v; want 2 after the whole Linger (%v)", n, took, linger)
		}
	})
	t.Run("it stops waiting at MaxBatch", func(t *testing.T) {
		o := newOutbox()
		o.ops <- &op{}
		go func() { time.Sleep(20 * time.Millisecond); o.ops <- &op{}; o.ops <- &op{}; o.ops <- &op{} }()
		if n, took := collect(o, true); n != 4 || took >= linger {
			t.Fatalf("collected %d in %v; want MaxBatch (4) before Linger ends", n, took)
		}
	})
	t.Run("Close ends the wait", func(t *testing.T) {
		o := newOutbox()
		go func() { time.Sleep(20 * time.Millisecond); close(o.closing) }()
		if n, took := collect(o, true); n != 1 || took >= linger {
			t.Fatalf("collected %d in %v; want 1, as soon as Close began", n, took)
		}
	})
	t.Run("a negative Linger never waits", func(t *testing.T) {
		o := newOutbox()
		o.cfg.Linger = -1
		if n, took := collect(o, true); n != 1 || took > linger/2 {
			t.Fatalf("collected %d in %v; want 1 at once", n, took)
		}
	})
}
