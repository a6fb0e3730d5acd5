package transport

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

// heldPublisher holds every publish until released, and says which
// publisher took it.
type heldPublisher struct {
	name    string
	started chan<- string
	release <-chan struct{}
	panics  bool
}

func (h *heldPublisher) Publish(string, ...*message.Message) error {
	h.started <- h.name
	<-h.release
	if h.panics {
		panic("publish panicked")
	}
	return nil
}

func (h *heldPublisher) Close() error { return nil }

// heldPubSub is a PubSub over two held publishers, short and busy.
func heldPubSub(t *testing.T) (ps *PubSub, started <-chan string, release chan struct{}) {
	t.Helper()
	var cfg Config
	cfg.setDefaults()
	s := make(chan string, 4*BusyPublishing)
	release = make(chan struct{})
	ps = &PubSub{cfg: cfg, inFlight: inFlightCounters(cfg),
		pub:     &heldPublisher{name: "short", started: s, release: release},
		busyPub: &heldPublisher{name: "busy", started: s, release: release},
	}
	return ps, s, release
}

func heldMessage(orderingKey string) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	if orderingKey != "" {
		msg.Metadata.Set(messages.MetaOrderingKey, orderingKey)
	}
	return msg
}

// next is the publisher that took the next publish.
func next(t *testing.T, started <-chan string) string {
	t.Helper()
	select {
	case name := <-started:
		return name
	case <-time.After(10 * time.Second):
		t.Fatal("no publish started")
		return ""
	}
}

func TestPublishesTakeTheBusyDelayOnlyWithCompanyOnTheirTopic(t *testing.T) {
	ps, started, release := heldPubSub(t)
	pub := ps.Publisher()
	var wg sync.WaitGroup
	publish := func(topic, key string) {
		wg.Go(func() {
			if err := pub.Publish(topic, heldMessage(key)); err != nil {
				t.Error(err)
			}
		})
	}
	for range BusyPublishing {
		publish(ps.cfg.Topic, "")
		if got := next(t, started); got != "short" {
			t.Fatalf("with at most %d accepted payloads in flight, a publish went to the %s publisher", BusyPublishing, got)
		}
	}
	// BusyPublishing are held in flight on the accepted topic.
	publish(ps.cfg.AppliedTopic, "")
	if got := next(t, started); got != "short" {
		t.Errorf("an applied event, alone on its topic, went to the %s publisher", got)
	}
	publish(ps.cfg.Topic, "key-1")
	if got := next(t, started); got != "short" {
		t.Errorf("a keyed payload (the ordered topic) went to the %s publisher", got)
	}
	publish(ps.cfg.Topic, "")
	if got := next(t, started); got != "busy" {
		t.Errorf("with %d accepted payloads in flight, the next went to the %s publisher", BusyPublishing, got)
	}
	close(release)
	wg.Wait()
	if short, busy := ps.shortPublishes.Load(), ps.busyPublishes.Load(); short != BusyPublishing+2 || busy != 1 {
		t.Errorf("counted %d short and %d busy publishes, want %d and 1", short, busy, BusyPublishing+2)
	}
	for topic, n := range ps.inFlight {
		if n.Load() != 0 {
			t.Errorf("%d publishes to %s still counted in flight after all returned", n.Load(), topic)
		}
	}
	publish(ps.cfg.Topic, "")
	if got := next(t, started); got != "short" {
		t.Errorf("a lone publish after the load went to the %s publisher", got)
	}
	wg.Wait()
}

func TestAPanickingPublishIsNoLongerCountedInFlight(t *testing.T) {
	ps, started, release := heldPubSub(t)
	ps.pub.(*heldPublisher).panics = true
	close(release)
	func() {
		defer func() { _ = recover() }()
		_ = ps.Publisher().Publish(ps.cfg.Topic, heldMessage(""))
	}()
	<-started
	if n := ps.inFlight[ps.cfg.Topic].Load(); n != 0 {
		t.Errorf("a publish that panicked is still counted in flight (%d)", n)
	}
}

func TestTheBusyPublisherIsMadeOnlyWhenItsDelayIsLonger(t *testing.T) {
	for _, c := range []struct {
		short, busy time.Duration
		want        bool
	}{
		{0, 0, false}, // no delay, under load either
		{time.Millisecond, 5 * time.Millisecond, true},
		{0, 5 * time.Millisecond, true},
		{time.Millisecond, 0, false},
		{time.Millisecond, time.Millisecond, false},
		{time.Millisecond, 500 * time.Microsecond, false},
	} {
		cfg := Config{Mode: ModeEmbedded, EmbeddedAddr: "127.0.0.1:0", PublishDelay: c.short, PublishBusyDelay: c.busy}
		ps, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if got := ps.busyPub != nil; got != c.want {
			t.Errorf("PublishDelay %s, PublishBusyDelay %s: busy publisher made %v, want %v", c.short, c.busy, got, c.want)
		}
		if !c.want && len(ps.inFlight) != 0 {
			t.Errorf("PublishDelay %s, PublishBusyDelay %s: publishes counted in flight with no busy publisher to choose", c.short, c.busy)
		}
		if err := ps.Close(); err != nil {
			t.Error(err)
		}
	}
}
