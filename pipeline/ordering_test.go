package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/warehouse/sqlite"
)

// rowPayload is the payload number seq of key's sequence on table: odd
// numbers insert the key's row, even ones delete it, so the row exists
// after the sequence exactly when its last payload was an insert, holding
// that insert's seq.
func rowPayload(table string, id, seq int, orderingKeyInBody string) string {
	var activity string
	if seq%2 == 1 {
		activity = fmt.Sprintf(`{"operation":"insert","table":%q,"col_names":["id","seq"],"col_types":["INT64","INT64"],"col_values":[%d,%d]}`, table, id, seq)
	} else {
		activity = fmt.Sprintf(`{"operation":"delete","table":%q,"value_to_delete":{"col_names":["id"],"col_types":["INT64"],"col_values":[%d]}}`, table, id)
	}
	if orderingKeyInBody == "" {
		return `{"activities":[` + activity + `]}`
	}
	return fmt.Sprintf(`{"activities":[%s],"ordering_key":%q}`, activity, orderingKeyInBody)
}

// The header and the body name a payload's key; both must agree, and a bad
// key is refused before anything is published. An accepted key travels as
// the Pub/Sub ordering key, in the metadata, and in the canonical body.
func TestOrderingKeyAtTheEdge(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		cfg.Stages = []pipeline.Stage{pipeline.StageIngest}
		r := startService(t, cfg)
		// A keyed payload travels on the ordered topic, the others on the
		// accepted topic; the watches tell them apart by the key they
		// expect.
		arrived, arrivedOrdered := r.watch(t, cfg.TopicID), r.watch(t, cfg.OrderedTopicID)

		refused := []struct {
			name, body string
			header     []string
			fragment   string
		}{
			{"header and body differ", rowPayload("t", 1, 1, "order-1"), []string{"X-Ordering-Key", "order-2"},
				`ordering_key "order-1" differs from the X-Ordering-Key header "order-2"`},
			{"empty header", rowPayload("t", 1, 1, ""), []string{"X-Ordering-Key", ""}, "X-Ordering-Key must not be empty"},
			{"header too long", rowPayload("t", 1, 1, ""), []string{"X-Ordering-Key", strings.Repeat("k", 257)},
				"X-Ordering-Key has 257 characters; at most 256 are allowed"},
			{"body key too long", rowPayload("t", 1, 1, strings.Repeat("k", 257)), nil, "has 257 characters; at most 256 allowed"},
			{"body key empty", strings.Replace(rowPayload("t", 1, 1, "x"), `"ordering_key":"x"`, `"ordering_key":""`, 1), nil, "must not be empty"},
		}
		for _, c := range refused {
			code, resp, _ := post(t, r.base, "application/json", c.body, c.header...)
			if code != http.StatusBadRequest || len(resp.Error) != 1 || !strings.Contains(resp.Error[0].Message, c.fragment) {
				t.Errorf("%s: got %d %+v, want 400 mentioning %q", c.name, code, resp, c.fragment)
			}
		}

		// A header given twice, and one that is not UTF-8, which post's
		// Header.Set cannot send.
		for name, values := range map[string][]string{
			"header twice":     {"a", "b"},
			"header not UTF-8": {"\xff"},
		} {
			req, _ := http.NewRequest(http.MethodPost, r.base+pipeline.IngestPath, strings.NewReader(rowPayload("t", 1, 1, "")))
			req.Header.Set("Content-Type", "application/json")
			req.Header["X-Ordering-Key"] = values
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), "X-Ordering-Key must be") {
				t.Errorf("%s: got %d %s, want 400 about X-Ordering-Key", name, resp.StatusCode, raw)
			}
		}

		accepted := map[string]string{} // payload id → the key it must carry
		for _, c := range []struct {
			body   string
			header []string
			key    string
		}{
			{rowPayload("t", 1, 1, ""), []string{"X-Ordering-Key", "from-header"}, "from-header"},
			{rowPayload("t", 1, 1, "from-body"), nil, "from-body"},
			{rowPayload("t", 1, 1, "both"), []string{"X-Ordering-Key", "both"}, "both"},
			{rowPayload("t", 1, 1, ""), nil, ""},
		} {
			code, resp, _ := post(t, r.base, "application/json", c.body, c.header...)
			if code != http.StatusOK {
				t.Fatalf("POST %s %v: %d %+v", c.body, c.header, code, resp)
			}
			accepted[resp.ID] = c.key
		}
		for range accepted {
			var m *pubsub.Message
			var onOrderedTopic bool
			select {
			case m = <-arrived:
			case m = <-arrivedOrdered:
				onOrderedTopic = true
			case <-time.After(10 * time.Second):
				t.Fatalf("payloads never published: %v", accepted)
			}
			id := m.Attributes["_watermill_message_uuid"]
			key, ok := accepted[id]
			if !ok {
				t.Fatalf("published %s, which was refused or never sent: %s", id, m.Data)
			}
			delete(accepted, id)
			if onOrderedTopic != (key != "") {
				t.Errorf("payload with key %q published to the ordered topic: %v, want %v", key, onOrderedTopic, key != "")
			}
			if m.OrderingKey != key || m.Attributes[messages.MetaOrderingKey] != key {
				t.Errorf("payload with key %q published with ordering key %q and metadata %q", key, m.OrderingKey, m.Attributes[messages.MetaOrderingKey])
			}
			p, err := messages.Parse(m.Data)
			if err != nil || p.OrderingKey != key {
				t.Errorf("published body %s carries key %q (%v), want %q", m.Data, p.OrderingKey, err, key)
			}
		}
	})
}

// The ordered apply subscription gatekeeper creates delivers in order; the
// one of payloads without a key does not, since ordered delivery is slow
// for everything it delivers.
func TestApplySubscriptionIsOrdered(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		r := startService(t, cfg)
		for name, want := range map[string]bool{cfg.OrderedSubscriptionID: true, cfg.SubscriptionID: false} {
			sub, err := r.client.SubscriptionAdminClient.GetSubscription(context.Background(), &pubsubpb.GetSubscriptionRequest{
				Subscription: fmt.Sprintf("projects/%s/subscriptions/%s", cfg.ProjectID, name),
			})
			if err != nil {
				t.Fatal(err)
			}
			if sub.GetEnableMessageOrdering() != want {
				t.Errorf("apply subscription %s: message ordering %v, want %v", name, sub.GetEnableMessageOrdering(), want)
			}
		}
	})
}

// Ordering cannot be turned on for an existing subscription: the service
// still starts on one without it, and says so once.
func TestUnorderedApplySubscriptionIsWarnedAbout(t *testing.T) {
	t.Parallel()
	mode := pipeline.PubSubEmulator
	skipWithoutEmulator(t, mode)
	cfg := testConfig(t, mode)
	admin := newAdminClient(t, cfg)
	ctx := context.Background()
	if _, err := admin.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + cfg.ProjectID + "/topics/" + cfg.OrderedTopicID}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:  "projects/" + cfg.ProjectID + "/subscriptions/" + cfg.OrderedSubscriptionID,
		Topic: "projects/" + cfg.ProjectID + "/topics/" + cfg.OrderedTopicID,
	}); err != nil {
		t.Fatal(err)
	}
	cfg.ResourceCheckInterval = 50 * time.Millisecond
	spec, _ := pipeline.ParseWarehouse(cfg.Warehouse)
	inner, err := sqlite.Open(ctx, sqlite.Config{Path: spec.Path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := &pingCounter{Warehouse: inner}
	r := startServiceWith(t, cfg, pipeline.WithWarehouse(store))
	// Several resource checks later, the warning is still there once.
	since := store.pings.Load()
	if !eventually(15*time.Second, func() bool { return store.pings.Load()-since >= 5 }) {
		t.Fatalf("%d resource checks within 15 s, want 5", store.pings.Load()-since)
	}
	if n := strings.Count(r.logs.String(), "Subscription delivers without message ordering"); n != 1 {
		t.Fatalf("warned %d times about the unordered subscription, want once; log:\n%s", n, r.logs.String())
	}
}

// pingCounter counts the warehouse's pings: with nothing committed, the
// resource monitor pings it once per round of checks.
type pingCounter struct {
	*sqlite.Warehouse
	pings atomic.Int64
}

func (p *pingCounter) Ping(ctx context.Context) error {
	p.pings.Add(1)
	return p.Warehouse.Ping(ctx)
}

// A poisoned payload does not hold back its key (ORDERING_POISON=continue):
// the next payload of the key applies.
func TestPoisonedPayloadDoesNotBlockItsKey(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		r := startService(t, cfg)
		poisoned := r.watch(t, cfg.PoisonTopicID)
		store := r.svc.Store
		key := []string{"X-Ordering-Key", "row-7"}

		_, first, _ := post(t, r.base, "application/json", rowPayload("rows", 7, 1, ""), key...)
		// A delete on a table that does not exist can never apply.
		code, bad, _ := post(t, r.base, "application/json", rowPayload("missing_table", 7, 2, ""), key...)
		if code != http.StatusOK {
			t.Fatalf("POST: %d %+v", code, bad)
		}
		_, third, _ := post(t, r.base, "application/json", rowPayload("rows", 7, 2, ""), key...)
		_, fourth, _ := post(t, r.base, "application/json", rowPayload("rows", 7, 3, ""), key...)
		for _, id := range []string{first.ID, third.ID, fourth.ID} {
			waitApplied(t, store, id, 20*time.Second)
		}
		m := receive(t, poisoned, 20*time.Second)
		if m.Attributes["_watermill_message_uuid"] != bad.ID || m.Attributes[messages.MetaOrderingKey] != "row-7" {
			t.Errorf("poisoned %s with key %q, want %s with row-7", m.Attributes["_watermill_message_uuid"], m.Attributes[messages.MetaOrderingKey], bad.ID)
		}
		if got := rows(t, store, "rows"); len(got) != 1 || got[0]["seq"] != int64(3) {
			t.Fatalf("rows = %v, want the row of the key's last payload (seq 3)", got)
		}
	})
}

// While the first payload of a key is retried, the later ones accepted
// behind it wait: none overtakes it.
func TestRetryDoesNotLetALaterPayloadOvertake(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		cfg.RetryInitial = 200 * time.Millisecond
		cfg.RetryMaxInterval = 400 * time.Millisecond
		faulty, inner, withFaulty := faultyWarehouse(t, cfg)
		r := startServiceWith(t, cfg, withFaulty)
		key := []string{"X-Ordering-Key", "row-1"}

		faulty.FailNext(3, nil)
		var last string
		for seq := 1; seq <= 3; seq++ {
			code, resp, _ := post(t, r.base, "application/json", rowPayload("rows", 1, seq, ""), key...)
			if code != http.StatusOK {
				t.Fatalf("POST %d: %d %+v", seq, code, resp)
			}
			last = resp.ID
		}
		waitApplied(t, inner, last, 30*time.Second)
		// Insert 1, delete, insert 3 leave one row, seq 3. Had the delete or
		// the second insert overtaken the first insert while it was
		// retried, the first insert's row would be there too.
		if got := rows(t, inner, "rows"); len(got) != 1 || got[0]["seq"] != int64(3) {
			t.Fatalf("rows = %v, want one row with seq 3", got)
		}
		if faulty.Failures() != 3 {
			t.Fatalf("%d injected failures, want 3", faulty.Failures())
		}
	})
}

// Under load from 32 concurrent clients, 100 keys each get an alternating
// insert, delete, insert… sequence of one row. Each client posts a key's
// next payload only after the previous one was answered 200, which is what
// makes "the order they were accepted" defined. At the end every row is in
// the state its key's last payload set.
func TestOrderingPerKeyUnderLoad(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode pipeline.PubSubMode) {
		cfg := testConfig(t, mode)
		r := startService(t, cfg)
		store := r.svc.Store
		const clients, keys = 32, 100
		// Between 5 and 8 payloads per key: some keys end on an insert,
		// some on a delete.
		length := func(key int) int { return 5 + key%4 }

		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
		defer httpClient.CloseIdleConnections()
		var mu sync.Mutex
		var accepted []string
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		began := time.Now()
		for c := range clients {
			wg.Go(func() {
				// Client c owns keys c, c+32, …, and posts round-robin over
				// them, so keys interleave on the wire.
				var own []int
				for k := c; k < keys; k += clients {
					own = append(own, k)
				}
				next := make(map[int]int, len(own))
				for len(own) > 0 {
					k := own[0]
					own = own[1:]
					next[k]++
					id, err := postUntilAccepted(ctx, httpClient, r.base, rowPayload("ordered", k, next[k], ""), fmt.Sprintf("row-%d", k))
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					accepted = append(accepted, id)
					mu.Unlock()
					if next[k] < length(k) {
						own = append(own, k)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		ingested := time.Since(began)
		for _, id := range accepted {
			waitApplied(t, store, id, time.Until(deadlineOf(ctx)))
		}
		t.Logf("accepted in %s, applied %s later", ingested.Round(time.Millisecond), (time.Since(began) - ingested).Round(time.Millisecond))

		got := map[int64]int64{}
		for _, row := range rows(t, store, "ordered") {
			if _, twice := got[row["id"].(int64)]; twice {
				t.Errorf("row %v is there twice", row["id"])
			}
			got[row["id"].(int64)] = row["seq"].(int64)
		}
		for k := range keys {
			n := length(k)
			seq, exists := got[int64(k)]
			switch {
			case n%2 == 1 && (!exists || seq != int64(n)):
				t.Errorf("key row-%d: last payload %d inserted the row, but the table holds %v (exists %v)", k, n, seq, exists)
			case n%2 == 0 && exists:
				t.Errorf("key row-%d: last payload %d deleted the row, but the table holds seq %d", k, n, seq)
			}
		}
		t.Logf("%d payloads over %d keys from %d clients, all applied in order", len(accepted), keys, clients)
	})
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// postUntilAccepted posts body with the ordering key until it is answered
// 200 and returns its payload id. A 503 is retried: the payload was not
// accepted, so the key's order is still the one the client wants.
func postUntilAccepted(ctx context.Context, client *http.Client, base, body, key string) (string, error) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+pipeline.IngestPath, strings.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Ordering-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out struct{ ID string }
		_ = json.Unmarshal(raw, &out)
		switch resp.StatusCode {
		case http.StatusOK:
			return out.ID, nil
		case http.StatusServiceUnavailable:
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		default:
			return "", fmt.Errorf("POST %s: %d %s", body, resp.StatusCode, raw)
		}
	}
}

func newAdminClient(t *testing.T, cfg pipeline.Config) *pubsub.Client {
	t.Helper()
	c, err := pubsub.NewClient(context.Background(), cfg.ProjectID, pipeline.ClientOptions(cfg)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
