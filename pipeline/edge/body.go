package edge

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
)

// A body the client did not send whole is the client's fault, not the
// service's: it is answered 4xx, never 503, and counted apart from the
// failures (metrics.OutcomeTimeout, metrics.OutcomeAborted).

// BodyTimeoutError refuses a request whose body did not arrive within the
// HTTP server's READ_TIMEOUT: 408.
type BodyTimeoutError struct {
	// Read is how many bytes of the body arrived; Announced the
	// Content-Length, -1 when unknown (chunked).
	Read, Announced int64
	Err             error
}

func (e *BodyTimeoutError) Error() string {
	return fmt.Sprintf("the request body did not arrive in time: %d of %s bytes read (%v)",
		e.Read, announced(e.Announced), e.Err)
}
func (e *BodyTimeoutError) Unwrap() error { return e.Err }

// BodyAbortedError refuses a request whose body broke off: the client
// closed or reset the connection, or sent a malformed chunked body, before
// its end. 400.
type BodyAbortedError struct {
	Read, Announced int64
	Err             error
}

func (e *BodyAbortedError) Error() string {
	return fmt.Sprintf("the request body broke off: %d of %s bytes read (%v)",
		e.Read, announced(e.Announced), e.Err)
}
func (e *BodyAbortedError) Unwrap() error { return e.Err }

func announced(n int64) string {
	if n < 0 {
		return "an unknown number of"
	}
	return fmt.Sprint(n)
}

// bodyReadError classifies the error of reading a request's body. A read
// deadline passed (READ_TIMEOUT) is the client being slow; any other error
// but a server's own closing of the connection is the client breaking off
// (net/http reports a short body as io.ErrUnexpectedEOF, a reset as
// ECONNRESET, a malformed chunk as its own error). Only a connection the
// server itself closed (Server.Close at the end of a shutdown) is ours.
func bodyReadError(err error, read int64, r *http.Request) error {
	var ne net.Error
	switch {
	case errors.As(err, new(*http.MaxBytesError)):
		return err
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return &BodyTimeoutError{Read: read, Announced: r.ContentLength, Err: err}
	case errors.Is(err, net.ErrClosed), errors.Is(err, http.ErrServerClosed):
		return errServerClosedBody
	}
	return &BodyAbortedError{Read: read, Announced: r.ContentLength, Err: err}
}

// errServerClosedBody: the server closed the connection under a body being
// read (a shutdown past its timeout). Not the client's fault; the answer
// will not reach it anyway.
var errServerClosedBody = messages.Transient(errors.New("the service closed the connection while the body was read; retry"))

// ErrBodyBudget sheds a request while MAX_IN_FLIGHT_BYTES of bodies are
// being handled (the service's front door answers it, before the body is
// read). It is counted as shed and logged at debug: a burst sheds
// hundreds at once, and a WARN line each would be the flood.
var ErrBodyBudget = errors.New("too many request body bytes are being handled at once (MAX_IN_FLIGHT_BYTES); retry")

// writeGrace is how long a 408 still has to be written. net/http sets the
// connection's write deadline WRITE_TIMEOUT after the request's headers
// were read; with READ_TIMEOUT as long as WRITE_TIMEOUT (the defaults) that
// deadline passes about when the read deadline does, and the 408 would
// never reach the client. The answer is small, so a few seconds suffice.
const writeGrace = 5 * time.Second
