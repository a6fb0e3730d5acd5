package edge

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/messages"
)

// The front door's refusals (BACKENDS_FILE), made by package frontdoor and
// rendered here. Their types, like the edge's own, decide the status in
// refusalOf; Refused gives each the class refused: who sent the request, or
// how often, was refused, not what it holds.

// UnauthorizedError refuses a request without a valid API key: 401.
type UnauthorizedError struct{ Err error }

func (e *UnauthorizedError) Error() string { return e.Err.Error() }
func (e *UnauthorizedError) Unwrap() error { return e.Err }

// ForbiddenError refuses a request whose key is valid but may not do what
// it asks: write Tables (listed, one problem each), or, without tables,
// for Reason. 403.
type ForbiddenError struct {
	Backend string
	Tables  []string
	Reason  string
}

func (e *ForbiddenError) Error() string {
	if len(e.Tables) == 0 {
		return e.Reason
	}
	return fmt.Sprintf("backend %s may not write the tables %s", e.Backend, strings.Join(e.Tables, ", "))
}

// QuotaError refuses a request over its backend's quota: 429 with
// Retry-After and the IETF RateLimit fields.
type QuotaError struct {
	Backend string
	Rate    float64
	Burst   int
	// Window is the policy's window in seconds; Remaining the whole tokens
	// left; Wait the time until the next token.
	Window, Remaining int
	Wait              time.Duration
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("backend %s is over its quota of %s payloads/s (burst %d); retry after %d s",
		e.Backend, strconv.FormatFloat(e.Rate, 'f', -1, 64), e.Burst, e.retryAfter())
}

// retryAfter is Wait in whole seconds, rounded up, at least 1.
func (e *QuotaError) retryAfter() int {
	return max(1, int(math.Ceil(e.Wait.Seconds())))
}

func (e *QuotaError) header(h http.Header) {
	s := strconv.Itoa(e.retryAfter())
	h.Set("Retry-After", s)
	h.Set("RateLimit-Policy", fmt.Sprintf(`"default";q=%d;w=%d`, e.Burst, e.Window))
	h.Set("RateLimit", fmt.Sprintf(`"default";r=%d;t=%s`, e.Remaining, s))
}

// Refused gives a front-door refusal (401, 403, 429) its class: refused
// for who sent it or how often, never published.
func Refused(err error) error {
	return messages.Refused(err)
}

// Refuse answers a request the front door refused before the edge read it
// (401, 429), in the replaced service's body shape, and reports it to
// OnVerdict like every other verdict.
func (e *Edge) Refuse(w http.ResponseWriter, r *http.Request, err error) {
	e.render(w, r, &exchange{decided: true, err: err}, false)
}

// bareMessage stands for a request refused before it became a message,
// for OnVerdict: no id, no payload, only who sent it.
func bareMessage(r *http.Request) *message.Message {
	msg := message.NewMessage("", nil)
	if r != nil {
		if b := BackendFrom(r.Context()); b != "" {
			msg.Metadata.Set(messages.MetaBackend, b)
		}
	}
	return msg
}
