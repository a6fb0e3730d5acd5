package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/client"
)

// answering serves the given answers in turn (the last one again and
// again) and counts the requests and their Idempotency-Keys.
func answering(t *testing.T, answers ...func(w http.ResponseWriter)) (*httptest.Server, *atomic.Int64, *[]string) {
	var n atomic.Int64
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		answers[min(i, len(answers)-1)](w)
	}))
	t.Cleanup(srv.Close)
	return srv, &n, &keys
}

func status(code int, retryAfter string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"status":` + strconv.Itoa(code) + `,"payload":null,"message":"` + http.StatusText(code) + `","error":[{"path":"","message":"because"}]}`))
	}
}

func accepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":200,"id":"the-id","payload":{},"message":"Valid Schema","error":null}`))
}

// A 429 and a 409 are retried under the same key, after Retry-After, and
// the payload id comes back.
func TestPostRetriesWithTheSameKey(t *testing.T) {
	srv, n, keys := answering(t, status(429, "1"), status(409, ""), accepted)
	var waits []time.Duration
	c, err := client.New(client.Config{BaseURL: srv.URL, InitialBackoff: time.Millisecond,
		OnRetry: func(_ int, _ error, wait time.Duration) { waits = append(waits, wait) }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Post(context.Background(), `{}`)
	if err != nil || res.ID != "the-id" || res.Attempts != 3 || n.Load() != 3 {
		t.Fatalf("Post: %+v %v after %d requests", res, err, n.Load())
	}
	if (*keys)[0] == "" || (*keys)[0] != (*keys)[1] || (*keys)[1] != (*keys)[2] || (*keys)[0] != res.IdempotencyKey {
		t.Errorf("keys %q, want one key on every attempt", *keys)
	}
	if len(waits) != 2 || waits[0] < time.Second || waits[0] > 1100*time.Millisecond || waits[1] > time.Millisecond*2 {
		t.Errorf("waits %v: want Retry-After plus at most a tenth, then the backoff", waits)
	}
}

// Past RetryFor, Post gives up with the last answer instead of waiting.
func TestPostGivesUpAtItsDeadline(t *testing.T) {
	srv, n, _ := answering(t, status(503, "5"))
	c, err := client.New(client.Config{BaseURL: srv.URL, RetryFor: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Post(context.Background(), `{}`)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.RetryAfter != 5*time.Second || !strings.Contains(err.Error(), "gave up after 1 attempts") {
		t.Errorf("Post: %v", err)
	}
	if n.Load() != 1 || time.Since(start) > 400*time.Millisecond {
		t.Errorf("%d requests in %s: a wait past the deadline is not waited", n.Load(), time.Since(start))
	}
}

// A refusal is returned at once, whatever it is.
func TestPostNeverRetriesARefusal(t *testing.T) {
	for _, code := range []int{400, 401, 403, 413, 415, 422, 500} {
		srv, n, _ := answering(t, status(code, ""))
		c, err := client.New(client.Config{BaseURL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Post(context.Background(), `{}`)
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != code || apiErr.Message != http.StatusText(code) ||
			len(apiErr.Problems) != 1 || n.Load() != 1 {
			t.Errorf("%d: %v after %d requests, want the APIError after 1", code, err, n.Load())
		}
	}
}

// A large body waits for the service to want it (Expect: 100-continue): a
// request the service refuses by its headers is answered before its body
// is sent, so that the refusal is read, not a reset connection. The
// handler here answers 413 without reading the body, as the service does
// for a Content-Length over MAX_BODY_BYTES.
func TestPostAsksBeforeALargeBody(t *testing.T) {
	var expects []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		expects = append(expects, r.Header.Get("Expect"))
		if r.ContentLength > 1<<20 {
			status(http.StatusRequestEntityTooLarge, "")(w)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		accepted(w)
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Post(context.Background(), `{"activities":[]}`); err != nil {
		t.Fatal(err)
	}
	big := `{"pad":"` + strings.Repeat("x", 2<<20) + `"}`
	var apiErr *client.APIError
	if _, err := c.Post(context.Background(), big); !errors.As(err, &apiErr) || apiErr.StatusCode != 413 {
		t.Errorf("a body over the limit: %v, want the 413 APIError", err)
	}
	if want := []string{"", "100-continue"}; !slices.Equal(expects, want) {
		t.Errorf("Expect headers %q, want %q (none on a small body)", expects, want)
	}
}
