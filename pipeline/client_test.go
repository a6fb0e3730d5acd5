package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/client"
	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
)

// dropProxy forwards each request to upstream, and for the request
// numbered drop (from 1) waits for upstream's answer and then resets the
// client's connection instead of passing it on: the payload was accepted,
// and the client cannot know.
func dropProxy(t *testing.T, upstream string, drop int64) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	// ExpectContinueTimeout: the proxy forwards the client's Expect:
	// 100-continue as a client would, so a request refused by its headers
	// is answered before its body is sent.
	fwd := &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: time.Second}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		out, _ := http.NewRequestWithContext(r.Context(), r.Method, upstream+r.URL.RequestURI(), r.Body)
		out.Header = r.Header.Clone()
		out.ContentLength = r.ContentLength
		resp, err := fwd.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if i == drop {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.(*net.TCPConn).SetLinger(0) // a reset, not a clean close
				conn.Close()
			}
			return
		}
		// A new connection per attempt: Go's transport would retry a
		// request with an Idempotency-Key on a reused connection by
		// itself, and the test would not see the drop.
		w.Header().Set("Connection", "close")
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// The Go client, against the real service: its first attempt is shed
// (503, the body budget full), its second is accepted but the connection
// drops before the answer, its third is answered from the Idempotency-Key
// record. The payload is applied exactly once, under the id the key gives.
func TestClientRetriesToExactlyOnce(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.MaxInFlightBytes = 60 << 10
	r := startService(t, cfg)
	proxy, requests := dropProxy(t, r.base, 2)

	// A request that announces 60 KiB and sends none holds the whole body
	// budget, so that the next one is shed.
	blocker, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	fmt.Fprintf(blocker, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", pipeline.IngestPath, 60<<10)
	if !eventually(10*time.Second, func() bool { return scrape(t, r.base)["gatekeeper_ingest_body_bytes"] == 60<<10 }) {
		t.Fatal("the blocker's 60 KiB were never reserved")
	}

	var mu sync.Mutex
	var retried []string
	c, err := client.New(client.Config{BaseURL: proxy.URL, InitialBackoff: 10 * time.Millisecond, RetryFor: 30 * time.Second,
		PollInterval: 20 * time.Millisecond,
		OnRetry: func(attempt int, err error, wait time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			retried = append(retried, err.Error())
			if attempt == 1 {
				blocker.Close() // frees the budget for the next attempt
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	payload := map[string]any{"activities": []map[string]any{{"operation": "insert", "table": "client_once",
		"col_names": []string{"n"}, "col_types": []string{"INTEGER"}, "col_values": []any{1}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Post(ctx, payload, client.WithIdempotencyKey("order-1"))
	if err != nil {
		t.Fatalf("Post: %v (retried after %q)", err, retried)
	}
	mu.Lock()
	if len(retried) != 2 || !strings.Contains(retried[0], "503") || strings.Contains(retried[1], "gatekeeper answered") {
		t.Errorf("retried after %q, want a 503 then a transport error", retried)
	}
	mu.Unlock()
	if res.Attempts != 3 || !res.Replayed || res.ID != edge.IdempotentPayloadID("", "order-1") || requests.Load() != 3 {
		t.Errorf("result %+v after %d requests; want 3 attempts, the last replayed, id %s", res, requests.Load(),
			edge.IdempotentPayloadID("", "order-1"))
	}
	st, err := c.WaitApplied(ctx, res.ID)
	if err != nil || st.Status != client.StatusApplied || st.RowsAffected == nil || *st.RowsAffected != 1 {
		t.Fatalf("WaitApplied: %+v %v", st, err)
	}
	if got := rows(t, r.svc.Store, "client_once"); len(got) != 1 {
		t.Errorf("client_once holds %d rows, want 1: %v", len(got), got)
	}
}

// What the API refuses, the client does not send again.
func TestClientNeverRetriesARefusal(t *testing.T) {
	t.Parallel()
	r := startService(t, testConfig(t, pipeline.PubSubEmbedded))
	proxy, requests := dropProxy(t, r.base, 0)
	c, err := client.New(client.Config{BaseURL: proxy.URL, InitialBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	big := `{"activities":[{"operation":"insert","table":"t","col_names":["s"],"col_types":["TEXT"],"col_values":["` +
		strings.Repeat("x", 2<<20) + `"]}]}`
	for _, c0 := range []struct {
		body string
		code int
	}{
		{`{"activities":[]}`, 400},
		{`{`, 400},
		{big, 413},
	} {
		before := requests.Load()
		_, err := c.Post(context.Background(), c0.body)
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != c0.code || len(apiErr.Problems) == 0 || apiErr.Retryable() {
			t.Errorf("Post(%.40s): %v, want a %d APIError", c0.body, err, c0.code)
		}
		if n := requests.Load() - before; n != 1 {
			t.Errorf("Post(%.40s) sent %d requests, want 1", c0.body, n)
		}
	}
	// A payload the apply stage cannot apply is not "applied": a delete
	// from a table that does not exist is poisoned.
	res, err := c.Post(context.Background(), `{"activities":[{"operation":"delete","table":"nowhere","value_to_delete":{"col_names":["n"],"col_types":["INTEGER"],"col_values":[1]}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var notApplied *client.NotAppliedError
	if _, err := c.WaitApplied(ctx, res.ID); !errors.As(err, &notApplied) || notApplied.Status.Status != client.StatusPoisoned {
		t.Errorf("WaitApplied on a poisoned payload: %v", err)
	}
}

// The Python example of docs/api.md, run as written against the service.
func TestPythonExample(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	if err := exec.Command(python, "-c", "import requests").Run(); err != nil {
		t.Skip("python3 has no requests")
	}
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```python\n")
	if ok {
		block, _, ok = strings.Cut(block, "\n```")
	}
	if !ok {
		t.Fatal("docs/api.md has no python block")
	}
	r := startService(t, testConfig(t, pipeline.PubSubEmbedded))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", block)
	cmd.Env = append(os.Environ(), "GATEKEEPER_URL="+r.base)
	out, err := cmd.CombinedOutput()
	if want := edge.IdempotentPayloadID("", "order-42") + " applied 1\n"; err != nil || string(out) != want {
		t.Fatalf("python: %v\n%s\nwant %q", err, out, want)
	}
	if got := rows(t, r.svc.Store, "orders"); len(got) != 1 {
		t.Errorf("orders holds %v, want one row", got)
	}
}
