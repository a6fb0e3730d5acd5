package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/google/uuid"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatekeeper/gatekeeper/messages"
)

// stagesApart stands for gatekeeper with its stages in two processes,
// sharing an in-process Pub/Sub: the ingest process answers POSTs and
// serves the status API from what it accepted (its own warehouse never
// sees an apply), and the apply stage publishes an applied event for each
// payload. seesApplied makes the status API say "applied" once the event
// is out, as a process reading the apply stage's warehouse would.
func stagesApart(t *testing.T, seesApplied bool) (target string, topics Topics) {
	t.Helper()
	srv := pstest.NewServer()
	t.Cleanup(func() { _ = srv.Close() })
	dial := func(ctx context.Context) (*pubsub.Client, error) {
		return pubsub.NewClient(ctx, "p", option.WithEndpoint(srv.Addr), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	ctx := context.Background()
	client, err := dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/p/topics/applied"}); err != nil {
		t.Fatal(err)
	}
	applied := client.Publisher("applied")
	t.Cleanup(applied.Stop)

	var mu sync.Mutex
	received := map[string]time.Time{}
	appliedAt := map[string]time.Time{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/activities", func(w http.ResponseWriter, r *http.Request) {
		id, now := uuid.NewString(), time.Now().UTC()
		mu.Lock()
		received[id] = now
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"id": id})
		go func() { // the apply stage, a moment later
			time.Sleep(5 * time.Millisecond) // the fake apply stage's latency, which the report measures
			at := time.Now().UTC()
			body, _ := json.Marshal(messages.AppliedEvent{PayloadID: id, AppliedAt: at})
			if _, err := applied.Publish(context.Background(), &pubsub.Message{Data: body}).Get(context.Background()); err == nil {
				mu.Lock()
				appliedAt[id] = at
				mu.Unlock()
			}
		}()
	})
	mux.HandleFunc("GET /api/activities/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		mu.Lock()
		rec, ok := received[id]
		at, done := appliedAt[id]
		mu.Unlock()
		switch {
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			_, _ = fmt.Fprintf(w, `{"id":%q,"status":"unknown","tables":[]}`, id)
		case done && seesApplied:
			_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "status": "applied", "received_at": rec, "applied_at": at})
		default:
			_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "status": "accepted", "received_at": rec})
		}
	})
	ingest := httptest.NewServer(mux)
	t.Cleanup(ingest.Close)
	return ingest.URL, Topics{Project: "p", Applied: "applied", Poison: "poison", Where: "pstest", Dial: dial}
}

func runE2E(t *testing.T, target string, topics Topics) (*Report, string, time.Duration) {
	t.Helper()
	o := Options{Target: target, Requests: 20, Mix: "insert", E2E: true, E2ESample: 1, E2ETimeout: 10 * time.Second,
		E2EVia: e2eAuto, Timeout: 5 * time.Second, JSON: true}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Run(context.Background(), o, topics, &stdout, &stderr)
	took := time.Since(start)
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || code != 0 {
		t.Fatalf("exit %d, %v; stdout %s\nstderr %s", code, err, stdout.String(), stderr.String())
	}
	if rep.E2E == nil {
		t.Fatalf("no e2e report; stderr %s", stderr.String())
	}
	return &rep, stderr.String(), took
}

// With the stages apart, the ingest process's status API never says
// "applied". --e2e (auto) counts what was applied from the applied topic,
// says why on stderr, and does not wait out --e2e-timeout. It used to
// report "20 followed: 0 applied" after the whole timeout.
func TestE2EAutoUsesTheAppliedTopicWhenTheStatusAPINeverSaysApplied(t *testing.T) {
	target, topics := stagesApart(t, false)
	rep, stderr, took := runE2E(t, target, topics)
	if e := rep.E2E; e.Via != "topic" || e.Followed != 20 || e.Applied != 20 || e.NotApplied != 0 || e.LatencyFrom != fromSent {
		t.Errorf("e2e %+v; want 20 followed and applied, via the applied topic", *e)
	}
	if !strings.Contains(stderr, "says accepted for") || !strings.Contains(stderr, "does not read the warehouse the apply stage writes") {
		t.Errorf("stderr does not say why the status API was not used:\n%s", stderr)
	}
	if took > 8*time.Second {
		t.Errorf("took %s: waited out --e2e-timeout (10s)", took)
	}
}

// Where the status API does see what the apply stage applied, auto mode
// reports from it, from the service's received time, as in one process.
func TestE2EAutoKeepsTheStatusAPIWhenItSeesApplied(t *testing.T) {
	target, topics := stagesApart(t, true)
	rep, stderr, _ := runE2E(t, target, topics)
	if e := rep.E2E; e.Via != "status" || e.Followed != 20 || e.Applied != 20 || e.LatencyFrom != fromReceived || e.TimeoutS != 10 {
		t.Errorf("e2e %+v; want 20 followed and applied, via the status API; stderr %s", *e, stderr)
	}
}
