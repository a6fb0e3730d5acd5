package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
)

// busyTestPubSub is an embedded Pub/Sub whose short delay is long enough
// to hold publishes in flight while the test counts them.
func busyTestPubSub(t *testing.T, short, busy time.Duration) *PubSub {
	t.Helper()
	cfg := DefaultConfig()
	cfg.PubSubMode = PubSubEmbedded
	cfg.EmbeddedPubSubAddr = "127.0.0.1:0"
	cfg.Stages = []Stage{StageIngest}
	cfg.PublishDelayThreshold, cfg.PublishBusyDelayThreshold = short, busy
	cfg = cfg.WithDefaults()
	ps, err := NewPubSub(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	return ps
}

func publishOne(t *testing.T, ps *PubSub, orderingKey string) {
	t.Helper()
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	if orderingKey != "" {
		msg.Metadata.Set(messages.MetaOrderingKey, orderingKey)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg.SetContext(ctx)
	if err := ps.Publisher().Publish(ps.cfg.TopicID, msg); err != nil {
		t.Error(err)
	}
}

func TestPublishesTakeTheBusyDelayOnlyWhenManyAreInFlight(t *testing.T) {
	// Each publish through the short delay stays in flight for about
	// 300 ms: long enough to hold busyPublishing of them while the test
	// publishes more.
	ps := busyTestPubSub(t, 300*time.Millisecond, 600*time.Millisecond)

	publishOne(t, ps, "")
	if short, busy := ps.shortPublishes.Load(), ps.busyPublishes.Load(); short != 1 || busy != 0 {
		t.Fatalf("a lone publish: %d short, %d busy; want it short", short, busy)
	}

	var wg sync.WaitGroup
	for range busyPublishing {
		wg.Go(func() { publishOne(t, ps, "") })
	}
	deadline := time.Now().Add(5 * time.Second)
	for ps.publishing.Load() < busyPublishing {
		if time.Now().After(deadline) {
			t.Fatalf("only %d publishes in flight", ps.publishing.Load())
		}
		time.Sleep(time.Millisecond)
	}
	// Those busyPublishing publishes are still waiting out their 300 ms.
	wg.Go(func() { publishOne(t, ps, "") })
	wg.Go(func() { publishOne(t, ps, "key-1") })
	wg.Wait()
	if short, busy := ps.shortPublishes.Load(), ps.busyPublishes.Load(); short != 1+busyPublishing+1 || busy != 1 {
		t.Errorf("%d short, %d busy publishes; want %d short (the lone one, the first %d and the keyed one) and 1 busy",
			short, busy, 1+busyPublishing+1, busyPublishing)
	}
	if n := ps.publishing.Load(); n != 0 {
		t.Errorf("%d publishes still counted in flight after all returned", n)
	}
}

func TestNoBusyPublisherWhenItsDelayIsNoLonger(t *testing.T) {
	for _, busy := range []time.Duration{-1, time.Millisecond, 500 * time.Microsecond} {
		ps := busyTestPubSub(t, time.Millisecond, busy)
		if ps.busyPub != nil {
			t.Errorf("PUBLISH_BUSY_DELAY_THRESHOLD %s with PUBLISH_DELAY_THRESHOLD 1ms: a busy publisher was made", busy)
		}
	}
}
