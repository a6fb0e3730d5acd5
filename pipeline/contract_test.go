package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/gatekeeper/gatekeeper/pipeline/edge"
)

// TestMain holds the OpenAPI document to what the service answers: every
// response the tests of this package receive through http.DefaultTransport
// (http.Get, http.DefaultClient, any client without a Transport of its
// own) on a path and method the document describes is validated against
// it, status, headers and body. One that does not validate fails the run.
func TestMain(m *testing.M) {
	contract, err := newContractCheck(edge.OpenAPIJSON())
	if err != nil {
		fmt.Fprintln(os.Stderr, "OpenAPI document:", err)
		os.Exit(1)
	}
	http.DefaultTransport = contract.wrap(http.DefaultTransport)
	code := m.Run()
	if report := contract.report(); report != "" {
		fmt.Fprint(os.Stderr, report)
		code = 1
	} else if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "OpenAPI: %s\n", contract.summary())
	}
	os.Exit(code)
}

type contractCheck struct {
	router routers.Router

	mu        sync.Mutex
	checked   map[string]int // "POST /api/activities 200" → responses validated
	failures  []string
	unmatched int
}

func newContractCheck(doc []byte) (*contractCheck, error) {
	t, err := openapi3.NewLoader().LoadFromData(doc)
	if err != nil {
		return nil, err
	}
	router, err := legacy.NewRouter(t)
	if err != nil {
		return nil, err
	}
	return &contractCheck{router: router, checked: map[string]int{}}, nil
}

func (c *contractCheck) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(req)
		if err != nil {
			return resp, err
		}
		route, params, ferr := c.router.FindRoute(req)
		if ferr == nil && slices.Contains(slices.Collect(maps.Values(params)), "") {
			// The router matches /api/activities to /api/activities/{id}
			// with an empty id.
			ferr = routers.ErrPathNotFound
		}
		if ferr == nil && (resp.ContentLength < 0 || resp.ContentLength > 64<<10) {
			// A large echo is left alone: validating it would allocate
			// far more than the service does, and the memory tests
			// measure this process.
			ferr = errors.New("large body")
		}
		if ferr != nil {
			c.mu.Lock()
			c.unmatched++
			c.mu.Unlock()
			return resp, nil // not an endpoint of the document (metrics, the admin API), or a large body
		}
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if rerr != nil {
			return resp, nil // the test sees the broken body itself
		}
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
			Status: resp.StatusCode,
			Header: resp.Header,
			Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
				AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		}
		in.SetBodyBytes(body)
		verr := openapi3filter.ValidateResponse(context.Background(), in)
		key := fmt.Sprintf("%s %s %d", req.Method, route.Path, resp.StatusCode)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.checked[key]++
		if verr != nil {
			c.failures = append(c.failures, fmt.Sprintf("%s (%s): %v\n  body: %.400s", key, resp.Header.Get("Content-Type"), verr, body))
		}
		return resp, nil
	})
}

func (c *contractCheck) report() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failures) == 0 {
		return ""
	}
	return fmt.Sprintf("FAIL: %d responses do not validate against pipeline/edge/openapi.json:\n%s\n", len(c.failures),
		strings.Join(c.failures, "\n"))
}

func (c *contractCheck) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.checked))
	for k, n := range c.checked {
		keys = append(keys, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(keys)
	return fmt.Sprintf("validated %s; %d responses on other paths or too large to check", strings.Join(keys, ", "), c.unmatched)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The check itself catches a response that breaks the document.
func TestContractCheckCatchesAWrongAnswer(t *testing.T) {
	c, err := newContractCheck(edge.OpenAPIJSON())
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		status int
		ctype  string
		body   string
	}{
		{200, "application/json", `{"status":200,"payload":{},"message":"Valid Schema","error":null}`}, // no id
		{400, "application/json", `{"error":"not the ingestion body"}`},
		{418, "application/json", `{"status":418,"payload":null,"message":"Teapot","error":[{"path":"","message":"x"}]}`},
		{400, "text/plain", "plain"},
	} {
		tr := c.wrap(roundTripFunc(func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: bad.status, Header: http.Header{"Content-Type": {bad.ctype}},
				Body: io.NopCloser(strings.NewReader(bad.body))}, nil
		}))
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/api/activities", strings.NewReader("{}"))
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.failures); n != 4 {
		t.Errorf("%d of 4 wrong answers caught:\n%s", n, c.report())
	}
}
