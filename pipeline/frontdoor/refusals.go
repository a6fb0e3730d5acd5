package frontdoor

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
)

// The front door's refusals. Each carries its own answer (edge.Refusal),
// which the edge renders; messages.Refused gives each the class refused:
// who sent the request, or how often, was refused, not what it holds.

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
	// Paths, beside Tables, points at each table's first activity
	// (/activities/2/table), for the problem's path.
	Paths  []string
	Reason string
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
	setRateLimit(h, e.Burst, e.Window, e.Remaining, e.retryAfter())
}

// setRateLimit sets the IETF RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers): the policy, q requests per w
// seconds (the burst, and the time an empty bucket takes to fill), and
// where the backend stands, r requests left and t seconds until the quota
// resets. Every answer to a backend with a quota carries them, so that a
// client paces itself before it is refused.
func setRateLimit(h http.Header, burst, window, remaining, reset int) {
	h["Ratelimit-Policy"] = []string{`"default";q=` + strconv.Itoa(burst) + ";w=" + strconv.Itoa(window)}
	h["Ratelimit"] = []string{`"default";r=` + strconv.Itoa(remaining) + ";t=" + strconv.Itoa(reset)}
}

// rateLimitHeader sets the RateLimit fields of an admitted request: t is
// the seconds until the bucket is full again, rounded up (0: it is full).
func rateLimitHeader(h http.Header, b *Backend, v Verdict) {
	setRateLimit(h, b.Burst, b.Window(), v.Remaining, int(math.Ceil(v.Full.Seconds())))
}

// Answer is 401 with WWW-Authenticate: Bearer.
func (e *UnauthorizedError) Answer() (int, string, []messages.Problem, func(http.Header)) {
	return http.StatusUnauthorized, "Unauthorized", []messages.Problem{{Message: e.Error()}},
		func(h http.Header) { h.Set("WWW-Authenticate", "Bearer") }
}

// Answer is 403, one problem per refused table.
func (e *ForbiddenError) Answer() (int, string, []messages.Problem, func(http.Header)) {
	problems := make([]messages.Problem, len(e.Tables))
	for i, t := range e.Tables {
		problems[i] = messages.Problem{Message: fmt.Sprintf("backend %s may not write table %q", e.Backend, t)}
		if i < len(e.Paths) {
			problems[i].Path = e.Paths[i]
		}
	}
	if len(problems) == 0 {
		problems = []messages.Problem{{Message: e.Reason}}
	}
	return http.StatusForbidden, "Forbidden", problems, nil
}

// Answer is 429 with Retry-After and the RateLimit fields.
func (e *QuotaError) Answer() (int, string, []messages.Problem, func(http.Header)) {
	return http.StatusTooManyRequests, "Too Many Requests", []messages.Problem{{Message: e.Error()}}, e.header
}
