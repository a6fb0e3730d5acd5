package pipeline_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
)

// unsizedReader hides a body's length from net/http, so the client sends
// it chunked, without Content-Length.
type unsizedReader struct{ r io.Reader }

func (u unsizedReader) Read(p []byte) (int, error) { return u.r.Read(p) }

// TestIngestHostileAndOddInputs lists every hostile or odd input the
// ingestion edge meets, on one running service, and checks that only the
// accepted ones are published.
func TestIngestHostileAndOddInputs(t *testing.T) {
	t.Parallel()
	const headerTimeout = 500 * time.Millisecond
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.Stages = []pipeline.Stage{pipeline.StageIngest}
	cfg.ReadHeaderTimeout = headerTimeout
	r := startService(t, cfg)
	arrived := r.watch(t, cfg.TopicID)

	const valid = `{"operation":"insert","table":"table1","col_names":["a"],"col_types":["TEXT"],"col_values":["x"]}`
	const drop = `{"operation":"drop","table":"table1","col_names":["a"],"col_types":["TEXT"],"col_values":["x"]}`
	text := func(value string) string {
		return `{"activities":[{"operation":"insert","table":"table1","col_names":["a"],"col_types":["TEXT"],"col_values":[` + value + `]}]}`
	}
	const appJSON = "application/json"
	cases := []struct {
		name        string
		contentType string
		body        string
		chunked     bool // sent without Content-Length, Transfer-Encoding: chunked
		slowloris   bool // headers sent a byte at a time, never finished
		status      int  // 0: the server closes the connection without an answer
		path        string
		message     string // a substring of one problem's message at path
		published   bool
	}{
		{name: "duplicated top-level key smuggling an invalid copy", contentType: appJSON,
			body:   `{"activities":[` + drop + `],"activities":[` + valid + `]}`,
			status: 400, path: "/activities", message: `object key "activities" appears twice`},
		{name: "duplicated key in an activity", contentType: appJSON,
			body:   `{"activities":[{"operation":"insert","table":"table1","table":"other","col_names":["a"],"col_types":["TEXT"],"col_values":["x"]}]}`,
			status: 400, path: "/activities/0/table", message: `object key "table" appears twice`},
		{name: "duplicate key spelled with an escape", contentType: appJSON,
			body:   `{"activities":[],"\u0061ctivities":[` + valid + `]}`,
			status: 400, path: "/activities", message: "appears twice"},
		{name: "duplicated key inside a JSON value", contentType: appJSON,
			body:   `{"activities":[{"operation":"insert","table":"table1","col_names":["j"],"col_types":["JSON"],"col_values":[{"k":1,"k":2}]}]}`,
			status: 400, path: "/activities/0/col_values/0/k", message: "appears twice"},
		{name: "lone high surrogate", contentType: appJSON, body: text(`"\ud800"`),
			status: 400, path: "/activities/0/col_values/0", message: `lone UTF-16 surrogate escape \ud800`},
		{name: "high surrogate not followed by a low one", contentType: appJSON, body: text(`"\ud83dx"`),
			status: 400, path: "/activities/0/col_values/0", message: `lone UTF-16 surrogate escape \ud83d`},
		{name: "lone low surrogate", contentType: appJSON, body: text(`"\ude00"`),
			status: 400, path: "/activities/0/col_values/0", message: `lone UTF-16 surrogate escape \ude00`},
		{name: "lone surrogate in a key", contentType: appJSON, body: `{"activities":[` + valid + `],"\ud800":1}`,
			status: 400, path: "", message: `an object key holds a lone UTF-16 surrogate escape \ud800`},
		{name: "valid surrogate pair", contentType: appJSON, body: text(`"\ud83d\ude00"`),
			status: 200, published: true},
		{name: "charset=utf-8", contentType: "application/json; charset=utf-8", body: text(`"utf-8"`),
			status: 200, published: true},
		{name: "charset=UTF-8 quoted", contentType: `application/json; charset="UTF-8"`, body: text(`"UTF-8"`),
			status: 200, published: true},
		{name: "charset=latin-1", contentType: "application/json; charset=latin-1", body: text(`"latin"`),
			status: 415, message: "only UTF-8 is accepted"},
		{name: "charset=iso-8859-1", contentType: "application/json; charset=ISO-8859-1", body: text(`"iso"`),
			status: 415, message: "only UTF-8 is accepted"},
		{name: "charset=utf-16", contentType: "application/json; charset=utf-16", body: text(`"utf-16"`),
			status: 415, message: "only UTF-8 is accepted"},
		{name: "another parameter, no charset", contentType: "application/json; profile=activities", body: text(`"profile"`),
			status: 200, published: true},
		{name: "chunked, no Content-Length", contentType: appJSON, body: text(`"chunked"`), chunked: true,
			status: 200, published: true},
		{name: "chunked and invalid", contentType: appJSON, body: text(`"\ud800"`), chunked: true,
			status: 400, path: "/activities/0/col_values/0", message: "lone UTF-16 surrogate"},
		{name: "slowloris", slowloris: true},
	}

	accepted := map[string]string{} // payload id → case
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.slowloris {
				slowloris(t, r.svc.Addr().String(), headerTimeout)
				return
			}
			code, resp := postOdd(t, r.base, c.contentType, c.body, c.chunked)
			if code != c.status {
				t.Fatalf("status %d, want %d: %+v", code, c.status, resp)
			}
			if c.published {
				if resp.ID == "" || resp.Message != "Valid Schema" {
					t.Fatalf("accepted without an id or with %q: %+v", resp.Message, resp)
				}
				accepted[resp.ID] = c.name
				return
			}
			if resp.ID != "" {
				t.Errorf("a refused request got a payload id %q", resp.ID)
			}
			found := false
			for _, p := range resp.Error {
				found = found || p.Path == c.path && strings.Contains(p.Message, c.message)
			}
			if !found {
				t.Errorf("no problem at %q containing %q in %+v", c.path, c.message, resp.Error)
			}
		})
	}

	// Exactly the accepted payloads are published, nothing refused is.
	for seen := 0; seen < len(accepted); {
		m := receive(t, arrived, 10*time.Second)
		if _, ok := accepted[m.Attributes[googlecloud.UUIDHeaderKey]]; !ok {
			t.Fatalf("published a payload no case accepted: %s", m.Data)
		}
		seen++
	}
	select {
	case extra := <-arrived:
		t.Fatalf("published a refused payload: %s", extra.Data)
	case <-time.After(500 * time.Millisecond):
	}
}

// postOdd posts body with a real client; chunked hides its length.
func postOdd(t *testing.T, base, contentType, body string, chunked bool) (int, edge.Response) {
	t.Helper()
	var reader io.Reader = strings.NewReader(body)
	if chunked {
		reader = unsizedReader{reader}
	}
	req, err := http.NewRequest(http.MethodPost, base+pipeline.IngestPath, reader)
	if err != nil {
		t.Fatal(err)
	}
	if chunked && req.ContentLength != 0 {
		t.Fatalf("the client knows the length (%d); it would not send chunked", req.ContentLength)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out edge.Response
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response is not the JSON body clients expect: %v\n%s", err, raw)
	}
	if out.Status != resp.StatusCode {
		t.Errorf("body status %d != HTTP status %d", out.Status, resp.StatusCode)
	}
	return resp.StatusCode, out
}

// slowloris sends a request's headers a byte at a time and never ends
// them; the server must close the connection about timeout after it
// opened.
func slowloris(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		head := "POST " + pipeline.IngestPath + " HTTP/1.1\r\nHost: gatekeeper\r\nContent-Type: application/json\r\nX-Slow: "
		for i := 0; ; i++ {
			b := byte('a')
			if i < len(head) {
				b = head[i]
			}
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(timeout + 5*time.Second))
	// Go's server closes a connection whose headers time out without an
	// answer; read whatever comes until it is closed.
	_, err = io.Copy(io.Discard, bufio.NewReader(conn))
	elapsed := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection was still open %v after it opened (ReadHeaderTimeout %v)", elapsed, timeout)
	}
	if elapsed < timeout/2 || elapsed > timeout+2*time.Second {
		t.Fatalf("the connection closed after %v, want about %v", elapsed, timeout)
	}
}
