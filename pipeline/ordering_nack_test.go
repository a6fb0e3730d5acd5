package pipeline_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// What ORDERING_POISON=block can rely on, on each Pub/Sub, when it nacks a
// held ordered message. m1 of a key is nacked once; every delivery is
// recorded until all three are acked. Both bring m1 back and lose nothing.
// The embedded Pub/Sub (pstest) delivers only the oldest unacked message of
// a key, so m1 comes back before m2 is delivered at all. The gcloud
// emulator hands over m2 and m3 before m1 comes back, as Google's client
// does with messages it already pulled: the apply stage itself must hold
// them (ordering.Blocks' heads), Pub/Sub does not.
func TestNackedOrderedMessageComesBackFirst(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		cfg.Stages = []pipeline.Stage{pipeline.StageIngest}
		r := startService(t, cfg)
		ctx := context.Background()
		name := fmt.Sprintf("nack-%s-%d", cfg.TopicID, testSeq.Add(1))
		if _, err := r.client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
			Name:                  fmt.Sprintf("projects/%s/subscriptions/%s", cfg.ProjectID, name),
			Topic:                 fmt.Sprintf("projects/%s/topics/%s", cfg.ProjectID, cfg.OrderedTopicID),
			EnableMessageOrdering: true, AckDeadlineSeconds: 10,
		}); err != nil {
			t.Fatal(err)
		}
		pub := r.client.Publisher(cfg.OrderedTopicID)
		pub.EnableMessageOrdering = true
		defer pub.Stop()
		for _, d := range []string{"m1", "m2", "m3"} {
			if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(d), OrderingKey: "k"}).Get(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var mu sync.Mutex
		var deliveries, acked []string
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 40*time.Second)
		defer cancel()
		nacked := false
		_ = r.client.Subscriber(name).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			mu.Lock()
			defer mu.Unlock()
			d := string(m.Data)
			deliveries = append(deliveries, fmt.Sprintf("%s@%.1fs", d, time.Since(start).Seconds()))
			if d == "m1" && !nacked {
				nacked = true
				m.Nack()
				return
			}
			m.Ack()
			acked = append(acked, d)
			if len(acked) == 3 {
				cancel()
			}
		})
		mu.Lock()
		defer mu.Unlock()
		t.Logf("%s: deliveries %s; acked in order %v", mode, strings.Join(deliveries, " "), acked)
		var m1 int
		for _, d := range deliveries {
			if strings.HasPrefix(d, "m1@") {
				m1++
			}
		}
		if len(acked) != 3 || m1 != 2 {
			t.Fatalf("%s: acked %v after %d deliveries of m1; want all three, m1 delivered again after its nack", mode, acked, m1)
		}
		if mode == pipeline.PubSubEmbedded && strings.Join(acked, ",") != "m1,m2,m3" {
			t.Errorf("embedded: acked %v, want m1,m2,m3: pstest holds the key's later messages until the nacked one is acked", acked)
		}
	})
}
