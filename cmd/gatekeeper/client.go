package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// The operator commands (poison, status, tables, rows) ask the running
// service's admin API, which reads the warehouse the service writes: a CLI
// run from another directory, or on a laptop without production's
// environment, sees what the service sees or fails saying so. They read
// a warehouse (and publish to Pub/Sub) themselves only when told to, with
// --direct or --warehouse.

// adminKeyVar holds the admin key when --admin-key does not: a key on the
// command line shows in the process list.
const adminKeyVar = "GATEKEEPER_ADMIN_KEY"

// reachFlags are the flags of the commands that ask the service.
type reachFlags struct {
	Server   string `name:"server" placeholder:"URL" help:"the service's admin listener, such as http://127.0.0.1:8081 (default: ADMIN_ADDR, on 127.0.0.1 when it listens on all addresses)"`
	AdminKey string `name:"admin-key" placeholder:"KEY" help:"an admin key (admin: true in BACKENDS_FILE), when the service has keys; without it, $GATEKEEPER_ADMIN_KEY"`
	Direct   bool   `name:"direct" help:"do not ask the service: read the warehouse the settings name (an existing one; nothing is created); --warehouse implies it"`
}

// reachReads are the settings a command that asks the service reads: the
// admin address, and for --direct the warehouse's.
var reachReads = []string{"LOG_LEVEL", "LOG_FORMAT", "ADMIN_ADDR", "WAREHOUSE", "DATASET_ID", "PROJECT_ID",
	"GOOGLE_APPLICATION_CREDENTIALS", "BIGQUERY_EMULATOR_HOST", "BIGQUERY_LOCATION"}

// pubSubReads are the settings a direct replay reads besides: where to
// publish.
var pubSubReads = []string{"PUBSUB_MODE", "PUBSUB_EMULATOR_HOST", "PUBSUB_EMBEDDED_ADDR", "TOPIC_ID", "ORDERED_TOPIC_ID"}

// direct reports whether the command was told to read the warehouse
// itself: --direct, or --warehouse on the command line (WAREHOUSE in the
// environment is the service's, and does not say so).
func (f reachFlags) direct(args []string) bool {
	return f.Direct || slices.ContainsFunc(args, func(a string) bool {
		return a == "--warehouse" || strings.HasPrefix(a, "--warehouse=")
	})
}

// openDirect checks that the warehouse cfg names exists before anything
// opens it: SQLite would create an empty file, and a command reading it
// would answer "nothing there" about a warehouse it never saw. BigQuery's
// dataset is never created either.
func openDirect(cfg pipeline.Config) (pipeline.Config, error) {
	if err := cfg.ValidateWarehouse(); err != nil {
		return cfg, err
	}
	cfg.DoNotCreateResources = true
	spec, _ := pipeline.ParseWarehouse(cfg.Warehouse)
	if spec.Kind == pipeline.WarehouseSQLite {
		if _, err := os.Stat(spec.Path); err != nil {
			abs, _ := filepath.Abs(spec.Path)
			return cfg, fmt.Errorf("no SQLite warehouse at %s (WAREHOUSE=%s): --direct reads an existing warehouse and creates none; "+
				"name the service's with --warehouse sqlite:PATH", abs, cfg.Warehouse)
		}
	}
	return cfg, nil
}

// adminClient asks a running service's admin API. Its errors say what it
// tried and how to fix it.
type adminClient struct {
	base string // http://host:port, without a trailing slash
	host string // host:port, for messages
	from string // where base came from, for messages
	key  string
	http *http.Client
}

// dialTimeout bounds the wait for a connection: an address that drops
// packets fails within it, a closed port at once.
const dialTimeout = 3 * time.Second

// newAdminClient finds the service: --server, else ADMIN_ADDR.
func newAdminClient(f reachFlags, adminAddr string) (*adminClient, error) {
	c := &adminClient{key: f.AdminKey}
	if c.key == "" {
		c.key = os.Getenv(adminKeyVar)
	}
	switch {
	case f.Server != "":
		s := f.Server
		if !strings.Contains(s, "://") {
			s = "http://" + s
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("--server %q: want the admin listener's URL, such as http://127.0.0.1:8081", f.Server)
		}
		c.base, c.host, c.from = strings.TrimSuffix(u.Scheme+"://"+u.Host+u.Path, "/"), u.Host, "--server"
	case adminAddr == "off":
		return nil, errors.New("ADMIN_ADDR=off: there is no admin listener to ask; name the service's with --server URL, " +
			"or read the warehouse yourself with --direct")
	default:
		host, port, err := net.SplitHostPort(adminAddr)
		if err != nil {
			return nil, fmt.Errorf("ADMIN_ADDR=%s: want HOST:PORT of the service's admin listener: %v", adminAddr, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		c.host = net.JoinHostPort(host, port)
		c.base, c.from = "http://"+c.host, "ADMIN_ADDR"
	}
	c.http = &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dialTimeout}).DialContext,
		TLSHandshakeTimeout:   dialTimeout,
		ResponseHeaderTimeout: 0, // a replay answers when it is done; each call bounds its own wait
	}}
	return c, nil
}

// unreachable is the message for a service that did not answer.
func (c *adminClient) unreachable(err error) error {
	return fmt.Errorf("no gatekeeper on %s (%s): %v; is it running? set ADMIN_ADDR or --server, "+
		"or read the warehouse yourself with --direct", c.host, c.from, err)
}

// call sends one request and returns the body of an answer whose status
// is in ok. Any other answer is an error that says what to do.
func (c *adminClient) call(ctx context.Context, method, path string, query url.Values, body any, wait time.Duration, ok ...int) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		var uerr *url.Error
		switch {
		case errors.Is(err, context.Canceled):
			return 0, nil, fmt.Errorf("interrupted while waiting for the service on %s", c.host)
		case errors.As(err, &op) && op.Op == "dial":
			return 0, nil, c.unreachable(op.Err)
		case ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded):
			return 0, nil, fmt.Errorf("the service on %s did not answer %s %s within %s", c.host, method, path, wait)
		case errors.As(err, &uerr):
			return 0, nil, c.unreachable(uerr.Err)
		}
		return 0, nil, c.unreachable(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("the service on %s: %s %s: reading the answer: %w", c.host, method, path, err)
	}
	if slices.Contains(ok, resp.StatusCode) && isJSON(resp) {
		return resp.StatusCode, raw, nil
	}
	var e struct {
		Error string `json:"error"`
	}
	if !isJSON(resp) || json.Unmarshal(raw, &e) != nil || e.Error == "" {
		return resp.StatusCode, raw, fmt.Errorf("%s (%s) is not a gatekeeper admin listener: %s %s answered %d %s; "+
			"set ADMIN_ADDR or --server to the service's admin address (ADMIN_ADDR, not HTTP_ADDR)",
			c.host, c.from, method, path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		hint := "set " + adminKeyVar + " or --admin-key to an admin key"
		if c.key != "" {
			hint = "the admin key given is not in the service's BACKENDS_FILE"
		}
		return resp.StatusCode, raw, fmt.Errorf("the service on %s wants an admin key: %s (%s)", c.host, hint, e.Error)
	case http.StatusForbidden:
		return resp.StatusCode, raw, fmt.Errorf("the service on %s refused: %s", c.host, e.Error)
	case http.StatusServiceUnavailable:
		return resp.StatusCode, raw, fmt.Errorf("the service on %s cannot do it now: %s", c.host, e.Error)
	}
	return resp.StatusCode, raw, errors.New(e.Error)
}

// get decodes a 200 answer to GET path into out.
func (c *adminClient) get(ctx context.Context, path string, query url.Values, out any) error {
	_, raw, err := c.call(ctx, http.MethodGet, path, query, nil, 60*time.Second, http.StatusOK)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the service on %s answered GET %s with %w", c.host, path, err)
	}
	return nil
}

func isJSON(resp *http.Response) bool {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return mt == "application/json" || mt == "application/x-ndjson"
}
