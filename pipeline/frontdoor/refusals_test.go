package frontdoor_test

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/pipeline/frontdoor"
)

// A front-door refusal is neither the payload's fault nor the service's:
// its class is refused; the edge answers the refusal's own status and
// headers; and a handler that returned one did its job, so its message is
// acked, not nacked.
func TestRefusalsAreClassRefusedAndAnswerThemselves(t *testing.T) {
	e, err := edge.New(edge.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ref    error
		status int
		header string
	}{
		{&frontdoor.UnauthorizedError{Err: errors.New("no key")}, http.StatusUnauthorized, "WWW-Authenticate"},
		{&frontdoor.ForbiddenError{Backend: "b", Tables: []string{"t"}}, http.StatusForbidden, ""},
		{&frontdoor.QuotaError{Backend: "b", Rate: 1, Burst: 1, Window: 1, Wait: time.Second}, http.StatusTooManyRequests, "Retry-After"},
	} {
		err := messages.Refused(c.ref)
		if got := messages.ClassOf(err); got != messages.ClassRefused {
			t.Errorf("%T: class %q, want %q", c.ref, got, messages.ClassRefused)
		}
		w := httptest.NewRecorder()
		e.Refuse(w, httptest.NewRequest(http.MethodPost, "/api/activities", nil), err)
		if w.Code != c.status || c.header != "" && w.Header().Get(c.header) == "" {
			t.Errorf("%T: answered %d with %v, want %d with %s", c.ref, w.Code, w.Header(), c.status, c.header)
		}
		h := e.VerdictMiddleware(func(*message.Message) ([]*message.Message, error) { return nil, err })
		if _, got := h(message.NewMessage(uuid.NewString(), nil)); got != nil {
			t.Errorf("%T: the handler's result %v nacks the message; want it acked", c.ref, got)
		}
	}
}
