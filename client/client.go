// Package client posts change payloads to gatekeeper's ingestion API from
// a backend written in Go, and waits until they are applied.
//
// Post sends every attempt of a payload with the same Idempotency-Key, so
// that a retry of a payload that was in fact accepted (its answer lost to
// a dropped connection, say) keeps its payload id and is applied once. It
// retries what the API says to retry (503, 429, 409, 408, and transport
// errors), after Retry-After or a jittered exponential backoff, until its
// deadline; it never retries a refusal (400, 401, 403, 413, 415, 422) or
// a 500. docs/api.md says what each answer means.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// expectContinueOver is the body size from which Post asks the service
// before it sends the body (Expect: 100-continue); a smaller body costs
// less to send than the round trip costs to wait.
const expectContinueOver = 64 << 10

// Config configures a Client.
type Config struct {
	// BaseURL is the service's ingestion listener, e.g.
	// "http://127.0.0.1:8080". Required.
	BaseURL string
	// APIKey is the backend's key from BACKENDS_FILE, sent as
	// Authorization: Bearer. Optional: a service without BACKENDS_FILE
	// takes none.
	APIKey string
	// HTTPClient sends the requests. Optional, default a client whose
	// each attempt times out after 30 s.
	HTTPClient *http.Client
	// RetryFor bounds how long Post keeps retrying one payload, from its
	// first attempt (the context's deadline, when earlier, wins).
	// Optional, default 1 minute.
	RetryFor time.Duration
	// InitialBackoff and MaxBackoff bound the wait between attempts when
	// the answer gives no Retry-After: it doubles from InitialBackoff up to
	// MaxBackoff, and each wait is drawn at random up to it (full
	// jitter), so that clients refused together do not return together.
	// Optional, defaults 100 ms and 5 s.
	InitialBackoff, MaxBackoff time.Duration
	// PollInterval is how often WaitApplied asks for the payload's status.
	// Optional, default 200 ms.
	PollInterval time.Duration
	// OnRetry, when set, is told of each attempt that will be retried: the
	// attempt's number (from 1), why, and the wait before the next.
	// Optional.
	OnRetry func(attempt int, err error, wait time.Duration)
}

func (c *Config) setDefaults() {
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.RetryFor == 0 {
		c.RetryFor = time.Minute
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = 200 * time.Millisecond
	}
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.BaseURL); c.BaseURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("client config: BaseURL %q must be an http(s) URL such as http://127.0.0.1:8080", c.BaseURL))
	}
	if c.RetryFor < 0 || c.InitialBackoff < 0 || c.MaxBackoff < 0 || c.PollInterval < 0 {
		errs = append(errs, errors.New("client config: RetryFor, InitialBackoff, MaxBackoff and PollInterval must not be negative"))
	}
	return errors.Join(errs...)
}

// Client posts payloads to one gatekeeper service. It is safe for
// concurrent use.
type Client struct {
	cfg  Config
	base string
}

// New returns a Client, or every problem with cfg.
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/")}, nil
}

// Result is what became of a posted payload at the ingestion API.
type Result struct {
	// ID is the payload id: ask WaitApplied or Status about it.
	ID string
	// IdempotencyKey is the key every attempt was sent with.
	IdempotencyKey string
	// Attempts is how many requests it took, from 1.
	Attempts int
	// Replayed: the service had accepted the payload under this key
	// before (an earlier attempt whose answer was lost) and did not
	// publish it again.
	Replayed bool
}

// PostOption sets something of one Post.
type PostOption func(*postOptions)

type postOptions struct {
	idempotencyKey string
	orderingKey    string
}

// WithIdempotencyKey sends key as the Idempotency-Key instead of a random
// one. Use a key of your own (an order id, an event id) when the payload
// may be posted again after your process restarts: the service then gives
// it the same payload id, and it is applied once.
func WithIdempotencyKey(key string) PostOption {
	return func(o *postOptions) { o.idempotencyKey = key }
}

// WithOrderingKey sends key as X-Ordering-Key: payloads of one key are
// applied in the order they were accepted. Post the key's next payload
// only after this Post returned.
func WithOrderingKey(key string) PostOption {
	return func(o *postOptions) { o.orderingKey = key }
}

// APIError is an answer other than 200.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the body's message ("Invalid Schema", "Forbidden").
	Message string
	// Problems lists what is wrong, each with a JSON pointer into the
	// payload when it is about a part of it.
	Problems []Problem
	// RetryAfter is the answer's Retry-After, 0 without one.
	RetryAfter time.Duration
	// CorrelationID is the request's X-Correlation-ID: the service's log
	// has the details under it.
	CorrelationID string
}

// Problem is one thing wrong with a request.
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gatekeeper answered %d", e.StatusCode)
	if e.Message != "" {
		fmt.Fprintf(&b, " %s", e.Message)
	}
	for i, p := range e.Problems {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		if p.Path != "" {
			b.WriteString(p.Path + ": ")
		}
		b.WriteString(p.Message)
	}
	return b.String()
}

// Retryable reports whether the same request may succeed later: 503 (not
// accepted, nothing published), 429 (over the quota), 409 (the first
// request with the key is still being published) and 408 (the body came
// too slowly). Every other status is the request's, and comes again.
func (e *APIError) Retryable() bool {
	switch e.StatusCode {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusConflict, http.StatusRequestTimeout:
		return true
	}
	return false
}

// answer is the ingestion API's body.
type answer struct {
	Status  int       `json:"status"`
	ID      string    `json:"id"`
	Message string    `json:"message"`
	Error   []Problem `json:"error"`
}

// Post sends payload (JSON bytes, or a value to encode as JSON) to
// POST /api/activities until it is accepted, refused, or its deadline
// passes, and returns its payload id. A refusal is an *APIError; when the
// deadline passes, the last attempt's error is returned.
func (c *Client) Post(ctx context.Context, payload any, opts ...PostOption) (Result, error) {
	var o postOptions
	for _, opt := range opts {
		opt(&o)
	}
	body, err := encode(payload)
	if err != nil {
		return Result{}, err
	}
	if o.idempotencyKey == "" {
		if o.idempotencyKey, err = newKey(); err != nil {
			return Result{}, err
		}
	}
	deadline := time.Now().Add(c.cfg.RetryFor)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	res := Result{IdempotencyKey: o.idempotencyKey}
	for {
		res.Attempts++
		id, replayed, err := c.attempt(ctx, body, o)
		if err == nil {
			res.ID, res.Replayed = id, replayed
			return res, nil
		}
		var apiErr *APIError
		if errors.As(err, &apiErr) && !apiErr.Retryable() {
			return res, err
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		}
		wait := c.backoff(res.Attempts)
		if apiErr != nil && apiErr.RetryAfter > 0 {
			// At least what the service asked for, plus up to a tenth more,
			// so that the clients it shed together do not return together.
			wait = apiErr.RetryAfter + time.Duration(mrand.Int64N(int64(apiErr.RetryAfter)/10+1))
		}
		if time.Now().Add(wait).After(deadline) {
			return res, fmt.Errorf("gave up after %d attempts (RetryFor %s): %w", res.Attempts, c.cfg.RetryFor, err)
		}
		if c.cfg.OnRetry != nil {
			c.cfg.OnRetry(res.Attempts, err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// backoff is the full-jitter wait after the given attempt: at random up
// to InitialBackoff doubled per attempt, at most MaxBackoff.
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := float64(c.cfg.InitialBackoff) * math.Pow(2, float64(attempt-1))
	ceiling = min(ceiling, float64(c.cfg.MaxBackoff))
	return time.Duration(mrand.Int64N(int64(ceiling) + 1))
}

// attempt sends one request: the payload id and whether it was replayed,
// an *APIError for an answer other than 200, or the transport's error.
func (c *Client) attempt(ctx context.Context, body []byte, o postOptions) (string, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/activities", bytes.NewReader(body))
	if err != nil {
		return "", false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Idempotency-Key", o.idempotencyKey)
	if len(body) > expectContinueOver {
		// The service refuses a request by its headers before it reads a
		// byte of the body (401, 429, a 503 shed, a 413 by Content-Length)
		// and closes the connection: a large body sent meanwhile is wasted,
		// and the close can reset the connection before the answer is
		// read, which would look like a transport error. With 100-continue
		// the body goes only once the service wants it (Go's transport
		// waits up to its ExpectContinueTimeout, 1 s by default).
		req.Header.Set("Expect", "100-continue")
	}
	if o.orderingKey != "" {
		req.Header.Set("X-Ordering-Key", o.orderingKey)
	}
	c.authorize(req)
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		// The answer broke off: whether the payload was accepted is
		// unknown, which a retry under the same key settles.
		return "", false, fmt.Errorf("reading the answer: %w", err)
	}
	var a answer
	_ = json.Unmarshal(raw, &a)
	if resp.StatusCode == http.StatusOK && a.ID != "" {
		return a.ID, resp.Header.Get("Idempotent-Replayed") == "true", nil
	}
	return "", false, apiError(resp, a, raw)
}

func apiError(resp *http.Response, a answer, raw []byte) *APIError {
	e := &APIError{StatusCode: resp.StatusCode, Message: a.Message, Problems: a.Error,
		CorrelationID: resp.Header.Get("X-Correlation-ID")}
	if e.Message == "" && len(e.Problems) == 0 {
		// Not the API's body (a proxy's page, the status API's shape).
		var other struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &other) == nil && other.Error != "" {
			e.Problems = []Problem{{Message: other.Error}}
		} else if len(raw) > 0 {
			e.Problems = []Problem{{Message: strings.TrimSpace(string(raw[:min(len(raw), 200)]))}}
		}
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

func (c *Client) authorize(req *http.Request) {
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
}

func encode(payload any) ([]byte, error) {
	switch p := payload.(type) {
	case []byte:
		return p, nil
	case json.RawMessage:
		return p, nil
	case string:
		return []byte(p), nil
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encoding the payload: %w", err)
	}
	return b, nil
}

// newKey is a random Idempotency-Key: 128 bits, hex.
func newKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("idempotency key: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
