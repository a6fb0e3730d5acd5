package pipeline_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline"
)

// A backlog of unkeyed payloads drains without stalls and in groups. On an
// ordered apply subscription the emulator hands out ~100 messages per stream
// at a time and slows as its backlog grows: from 100,000 the apply stage
// applied 18 payloads/s with stalls of up to 133 s. The drain is measured on
// the ledger (the truth), every 50 ms.
func TestBacklogDrainsWithoutStalls(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a 5,000-payload backlog")
	}
	mode := pipeline.PubSubEmulator
	skipWithoutEmulator(t, mode)
	if os.Getenv("GATEKEEPER_BACKLOG_TEST") == "" {
		// Not reliable beside heavy load: alone it drains 5,000 in 2.2-2.4 s
		// under -race with gaps of 150-200 ms, but in .ci/run's BigQuery
		// phase (beside the BigQuery emulator's tests, on an emulator the
		// whole suite has used) it drained 394/s with a 1.8 s gap.
		t.Skip("set GATEKEEPER_BACKLOG_TEST=1 to run it")
	}
	const backlog = 5_000
	cfg := testConfig(t, mode)

	// Fill: an ingest-only service creates the subscriptions, so the topic
	// keeps what is published to it.
	ingestCfg := cfg
	ingestCfg.Stages = []pipeline.Stage{pipeline.StageIngest}
	ingest := startService(t, ingestCfg)
	publishBacklog(t, ingest.client, cfg.TopicID, backlog)
	if err := ingest.stop(); err != nil {
		t.Fatal(err)
	}

	cfg.Stages = []pipeline.Stage{pipeline.StageApply}
	start := time.Now()
	r := startService(t, cfg)
	db, err := sql.Open("sqlite", "file:"+strings.TrimPrefix(cfg.Warehouse, "sqlite:")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// lateness records how late a 50 ms ticker runs: on a machine too busy
	// to run this process on time, a gap in the applies says nothing.
	var firstApply, lastChange time.Time
	var longestGap, worstLateness time.Duration
	count, last := 0, 0
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	expected := time.Now()
	for count < backlog {
		if time.Since(start) > 60*time.Second {
			size, groups := groupSize(t, r)
			t.Fatalf("%d of %d applied after 60 s (first apply %v after start, longest gap %v, %d groups of %.1f)",
				count, backlog, firstApply.Sub(start).Round(time.Millisecond), longestGap.Round(time.Millisecond), groups, size)
		}
		now := <-tick.C
		expected = expected.Add(50 * time.Millisecond)
		worstLateness = max(worstLateness, now.Sub(expected))
		expected = now
		if err := db.QueryRow(`SELECT count(*) FROM "_gatekeeper_ledger"`).Scan(&count); err != nil {
			continue // the warehouse is not created yet
		}
		switch {
		case count > 0 && firstApply.IsZero():
			firstApply, lastChange = now, now
		case count > last:
			longestGap = max(longestGap, now.Sub(lastChange))
			lastChange = now
		}
		last = count
	}
	took := time.Since(firstApply)
	size, groups := groupSize(t, r)
	t.Logf("%d payloads: first apply %v after start, all in %v (%.0f/s), longest gap %v, %d groups of %.1f on average, worst ticker lateness %v",
		backlog, firstApply.Sub(start).Round(time.Millisecond), took.Round(time.Millisecond), backlog/took.Seconds(),
		longestGap.Round(time.Millisecond), groups, size, worstLateness.Round(time.Millisecond))
	if size < 5 {
		t.Errorf("groups held %.1f payloads on average; a backlog should fill them (at least 5)", size)
	}
	if worstLateness > 500*time.Millisecond {
		t.Logf("the machine is too busy to judge gaps (a 50 ms ticker ran %v late)", worstLateness)
		return
	}
	// The goal is no gap over 1 s; a busy machine's own lateness is allowed
	// on top, twice. Before the fix, gaps were 10-20 s.
	if allowed := time.Second + 2*worstLateness; longestGap > allowed {
		t.Errorf("applies stalled for %v with a backlog; want no gap over %v", longestGap, allowed)
	}
	if d := firstApply.Sub(start); d > 5*time.Second {
		t.Errorf("first apply %v after start; want within 5 s", d)
	}
}

// publishBacklog publishes n distinct insert payloads to topic, as the gate
// would: canonical, with a payload id.
func publishBacklog(t *testing.T, client *pubsub.Client, topic string, n int) {
	t.Helper()
	ctx := context.Background()
	pub := client.Publisher(topic)
	pub.PublishSettings.CountThreshold = 100
	defer pub.Stop()
	results := make([]*pubsub.PublishResult, n)
	for i := range n {
		p, err := messages.Parse(fmt.Appendf(nil,
			`{"activities":[{"operation":"insert","table":"backlog","col_names":["n"],"col_types":["INT64"],"col_values":[%d]}]}`, i))
		if err != nil {
			t.Fatal(err)
		}
		results[i] = pub.Publish(ctx, &pubsub.Message{
			Data: p.Canonical(), Attributes: map[string]string{googlecloud.UUIDHeaderKey: fmt.Sprintf("backlog-%d", i)},
		})
	}
	for _, res := range results {
		if _, err := res.Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// groupSize reads the average of gatekeeper_group_size and its count.
func groupSize(t *testing.T, r *running) (avg float64, groups uint64) {
	t.Helper()
	families, err := r.svc.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "gatekeeper_group_size" {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			groups += h.GetSampleCount()
			avg += h.GetSampleSum()
		}
	}
	if groups == 0 {
		t.Fatal("no group was applied")
	}
	return avg / float64(groups), groups
}
