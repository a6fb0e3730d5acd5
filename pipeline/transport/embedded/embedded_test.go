package embedded_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatekeeper/gatekeeper/pipeline/transport/embedded"
)

func embeddedClient(t testing.TB, emb *embedded.Server) *pubsub.Client {
	t.Helper()
	c, err := pubsub.NewClient(context.Background(), "p",
		option.WithEndpoint(emb.Addr()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCConnectionPool(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/p/topics/t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/p/subscriptions/s", Topic: "projects/p/topics/t", AckDeadlineSeconds: 60,
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

func publishN(t testing.TB, pub *pubsub.Publisher, n int, data []byte) {
	t.Helper()
	results := make([]*pubsub.PublishResult, 0, 1000)
	for i := 0; i < n; i++ {
		results = append(results, pub.Publish(context.Background(), &pubsub.Message{Data: data}))
		if len(results) == cap(results) || i == n-1 {
			for _, r := range results {
				if _, err := r.Get(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			results = results[:0]
		}
	}
}

// receiveN acks n messages and returns what they carried.
func receiveN(t testing.TB, c *pubsub.Client, n int, within time.Duration) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var mu sync.Mutex
	got := map[string]bool{}
	sub := c.Subscriber("s")
	sub.ReceiveSettings.NumGoroutines = 4
	err := sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		got[string(m.Data)] = true
		if len(got) >= n {
			cancel()
		}
	})
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	return got
}

// Trimming the log must never lose a message a subscription has not acked:
// that is what makes it safe where pstest's ClearMessages is not.
func TestEmbeddedTrimKeepsPendingMessages(t *testing.T) {
	t.Parallel()
	emb, err := embedded.New(embedded.Config{TrimEvery: time.Hour}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	c := embeddedClient(t, emb)
	pub := c.Publisher("t")
	defer pub.Stop()

	for i := 0; i < 100; i++ {
		publishN(t, pub, 1, []byte("acked-"+strconv.Itoa(i)))
	}
	if got := receiveN(t, c, 100, 10*time.Second); len(got) != 100 {
		t.Fatalf("received %d of the first 100", len(got))
	}
	for i := 0; i < 50; i++ {
		publishN(t, pub, 1, []byte("pending-"+strconv.Itoa(i)))
	}
	if n := emb.TrimLog(); n != 150 {
		t.Errorf("TrimLog dropped %d log entries, want 150", n)
	}
	if n := len(emb.PSTest().Messages()); n != 0 {
		t.Errorf("log still holds %d messages", n)
	}
	got := receiveN(t, c, 50, 15*time.Second)
	for i := 0; i < 50; i++ {
		if !got["pending-"+strconv.Itoa(i)] {
			t.Errorf("pending-%d was lost by trimming", i)
		}
	}
}

func TestEmbeddedRefusesAddressInUse(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	first, err := embedded.New(embedded.Config{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if second, err := embedded.New(embedded.Config{Addr: first.Addr()}, logger); err == nil {
		second.Close()
		t.Fatal("a second server on the same address started")
	}
}

// TestEmbeddedMemorySoak pushes 200,000 messages through the embedded
// Pub/Sub, acking them as they arrive, and reports the heap and RSS after.
// It runs only with GATEKEEPER_SOAK=1 (it takes about a minute); run it
// once with GATEKEEPER_SOAK_TRIM=0 for the baseline without trimming:
//
//	GATEKEEPER_SOAK=1 go test -run EmbeddedMemorySoak -v ./pipeline
func TestEmbeddedMemorySoak(t *testing.T) {
	if os.Getenv("GATEKEEPER_SOAK") != "1" {
		t.Skip("set GATEKEEPER_SOAK=1 to run the 200,000-message soak")
	}
	trimEvery := time.Second
	if os.Getenv("GATEKEEPER_SOAK_TRIM") == "0" {
		trimEvery = 1000 * time.Hour
	}
	emb, err := embedded.New(embedded.Config{TrimEvery: trimEvery}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	c := embeddedClient(t, emb)
	pub := c.Publisher("t")
	pub.PublishSettings.DelayThreshold = time.Millisecond
	defer pub.Stop()

	const total = 200_000
	data := []byte(strings.Repeat("x", 300)) // about the example payload's canonical size
	var acked atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sub := c.Subscriber("s")
		sub.ReceiveSettings.NumGoroutines = 32
		sub.ReceiveSettings.MaxOutstandingMessages = 5000
		_ = sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			acked.Add(1)
		})
	}()
	start := time.Now()
	// Publish at the pace the subscriber keeps, as a service whose apply
	// stage keeps up would: pstest scans every pending message on each
	// delivery tick, so a deep backlog slows delivery to a crawl and would
	// measure pstest's backlog rather than the log that trimming bounds.
	for sent := 0; sent < total; sent += 1000 {
		for int64(sent)-acked.Load() > 2000 {
			time.Sleep(time.Millisecond) // the pace described above: the soak's load shape
		}
		publishN(t, pub, 1000, data)
	}
	for acked.Load() < total && time.Since(start) < 5*time.Minute {
		time.Sleep(50 * time.Millisecond) // the poll's interval; five minutes bound it
	}
	cancel()
	<-done
	if os.Getenv("GATEKEEPER_SOAK_TRIM") != "0" {
		emb.TrimLog() // what the trimmer would do a moment later
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("trim every %s: %d published, %d acked in %s; heap in use after GC %.1f MiB, %s",
		trimEvery, total, acked.Load(), time.Since(start).Round(time.Millisecond),
		float64(ms.HeapInuse)/(1<<20), vmRSS())
}

func vmRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "RSS unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			return "RSS " + strings.Join(strings.Fields(line)[1:], " ")
		}
	}
	return "RSS unknown"
}
