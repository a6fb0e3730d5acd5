package edge_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
)

func TestNewValidatesEveryField(t *testing.T) {
	_, err := edge.New(edge.Config{MaxBodyBytes: -1, VerdictWait: -1}, slog.New(slog.DiscardHandler))
	want := "edge config: MaxBodyBytes must not be negative\nedge config: VerdictWait must not be negative"
	if err == nil || err.Error() != want {
		t.Fatalf("New: %v, want:\n%s", err, want)
	}
	if _, err := edge.New(edge.Config{}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("the zero Config is the default: %v", err)
	}
}

func TestRulesOf(t *testing.T) {
	_, invalid := messages.Parse([]byte(`{"activities":[{"operation":"insert","table":"t","col_names":["a","b"],"col_types":["INTEGER"],"col_values":[1,2]}]}`))
	_, syntax := messages.Parse([]byte(`{`))
	cases := []struct {
		err  error
		want []messages.Rule
	}{
		{nil, nil},
		{invalid, []messages.Rule{messages.RuleLengthMismatch}},
		{syntax, []messages.Rule{messages.RuleNotJSON}},
		{&http.MaxBytesError{Limit: 10}, []messages.Rule{messages.RuleTooLarge}},
		{fmt.Errorf("edge: %w", edge.ErrUnsupportedMediaType), []messages.Rule{messages.RuleUnsupportedMediaType}},
		{messages.Transient(errors.New("pub/sub down")), nil},
	}
	for _, c := range cases {
		if got := edge.RulesOf(c.err); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("RulesOf(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// A request the edge refuses itself never reaches the gate: it is still
// answered in the replaced service's shape and reported once to OnVerdict.
func TestEdgeRefusesAWrongContentTypeItself(t *testing.T) {
	var settled []error
	e, err := edge.New(edge.Config{OnVerdict: func(_ *message.Message, err error) { settled = append(settled, err) }}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	reached := false
	srv := httptest.NewServer(e.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true })))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader(`{"activities":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(string(body), `"message":"Unsupported Media Type"`) {
		t.Errorf("got %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Correlation-ID") == "" {
		t.Error("no X-Correlation-ID on the answer")
	}
	if reached {
		t.Error("the request reached the handler behind the edge")
	}
	if len(settled) != 1 || !errors.Is(settled[0], edge.ErrUnsupportedMediaType) {
		t.Errorf("OnVerdict saw %v, want the one refusal", settled)
	}
}

// A body that breaks off midway is the client's fault: 400, not the 503
// of the service's own failures.
func TestEdgeAnswers400ToABodyThatBreaksOff(t *testing.T) {
	e, err := edge.New(edge.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := e.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = e.Unmarshal("", r)
	}))
	req := httptest.NewRequest(http.MethodPost, "/api/activities", io.MultiReader(strings.NewReader(`{"activ`), failingReader{}))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusBadRequest || w.Header().Get("Retry-After") != "" {
		t.Errorf("got %d %s, want 400 without Retry-After", w.Code, w.Body)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// Payload ids are UUIDv7, handed out in increasing order, so that the
// indexes on them (the outbox's, the SQLite ledger's) grow at their end.
func TestPayloadIDsAreTimeOrderedUUIDs(t *testing.T) {
	e, err := edge.New(edge.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	h := e.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		msg, err := e.Unmarshal("", r)
		if err != nil {
			t.Error(err)
			return
		}
		ids = append(ids, msg.UUID)
	}))
	for range 1000 {
		req := httptest.NewRequest(http.MethodPost, "/api/activities", strings.NewReader(`{"activities":[]}`))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	if len(ids) != 1000 {
		t.Fatalf("%d ids, want 1000", len(ids))
	}
	for i, id := range ids {
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || u.String() != id {
			t.Fatalf("id %q: version %d, %v; want a canonical UUIDv7", id, u.Version(), err)
		}
		if i > 0 && id <= ids[i-1] {
			t.Fatalf("id %d %s does not sort after %s", i, id, ids[i-1])
		}
	}
}
