package edge_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/pipeline/edge"
)

// bodyServer serves the edge over a real socket, with the server's read and
// write timeouts equal (as READ_TIMEOUT and WRITE_TIMEOUT are by default),
// and records what OnVerdict saw; entered gets a value as each request
// reaches the handler, before it reads the body.
func bodyServer(t *testing.T, timeout time.Duration) (addr string, settled func() []error, entered <-chan struct{}) {
	t.Helper()
	var mu sync.Mutex
	var errs []error
	in := make(chan struct{}, 16)
	e, err := edge.New(edge.Config{OnVerdict: func(_ *message.Message, err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(e.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in <- struct{}{}
		if _, err := e.Unmarshal("", r); err == nil {
			t.Error("Unmarshal read a body that never arrived whole")
		}
	})))
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = timeout, timeout
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), func() []error {
		mu.Lock()
		defer mu.Unlock()
		return append([]error(nil), errs...)
	}, in
}

// await waits (at most 5 s) for a value on ch.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not within 5 s", what)
	}
}

// sendHead opens a connection and sends a POST announcing length bytes.
func sendHead(t *testing.T, addr string, length int) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_, err = fmt.Fprintf(c, "POST /api/activities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"activities\":[", length)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}

func readStatus(t *testing.T, c net.Conn, within time.Duration) (*http.Response, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer came: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// A client that trickles its body past the read timeout gets 408 (not
// 503), even though the write deadline passed with the read deadline.
func TestEdgeAnswers408ToASlowBodyOverARealSocket(t *testing.T) {
	addr, settled, _ := bodyServer(t, 400*time.Millisecond)
	c := sendHead(t, addr, 1<<20)
	stop := make(chan struct{})
	go func() { // a byte every 50 ms: alive, never done
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	resp, body := readStatus(t, c, 5*time.Second)
	close(stop)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, `"message":"Request Timeout"`) {
		t.Errorf("got %d %s, want 408 Request Timeout", resp.StatusCode, body)
	}
	if resp.Header.Get("Retry-After") != "" || !resp.Close {
		t.Errorf("408 headers: Retry-After %q, Connection close %v; want none and close", resp.Header.Get("Retry-After"), resp.Close)
	}
	errs := settled()
	var slow *edge.BodyTimeoutError
	if len(errs) != 1 || !errors.As(errs[0], &slow) || slow.Announced != 1<<20 || slow.Read == 0 {
		t.Errorf("OnVerdict saw %v, want one BodyTimeoutError with what was read", errs)
	}
}

// A client that closes its side mid-body gets 400 (it can still read the
// answer on a half-closed connection); one that resets the connection is
// counted the same, though no answer can reach it.
func TestEdgeAnswers400ToABodyThatBreaksOffOverARealSocket(t *testing.T) {
	addr, settled, entered := bodyServer(t, 5*time.Second)
	c := sendHead(t, addr, 1000)
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, body := readStatus(t, c, 5*time.Second)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "broke off") {
		t.Errorf("half-closed: got %d %s, want 400 naming the broken body", resp.StatusCode, body)
	}

	await(t, entered, "the half-closed request reached the handler")

	reset := sendHead(t, addr, 1000)
	_ = reset.SetLinger(0) // Close sends RST
	// Reset once the server reads the body: a reset before it has read the
	// head ends the connection with no request and no verdict.
	await(t, entered, "the request to reset reached the handler")
	reset.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(settled()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	errs := settled()
	if len(errs) != 2 {
		t.Fatalf("OnVerdict saw %v, want two verdicts", errs)
	}
	for _, err := range errs {
		var aborted *edge.BodyAbortedError
		if !errors.As(err, &aborted) || aborted.Announced != 1000 {
			t.Errorf("OnVerdict saw %v, want a BodyAbortedError", err)
		}
	}
}
