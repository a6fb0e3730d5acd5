package frontdoor_test

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/pipeline/frontdoor"
)

// answerRefusal answers a refusal as the edge does: its status and headers.
type answerRefusal struct{}

func (answerRefusal) Refuse(w http.ResponseWriter, _ *http.Request, err error) {
	var ref edge.Refusal
	if !errors.As(err, &ref) {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	code, _, _, header := ref.Answer()
	if header != nil {
		header(w.Header())
	}
	w.WriteHeader(code)
}

// Every answer to a backend with a quota carries the RateLimit fields,
// whatever its status, so that a client paces itself before its 429; a
// backend without a quota gets none.
func TestRateLimitFieldsOnEveryAnswer(t *testing.T) {
	shopKey, shop := entry(t, frontdoor.Entry{Name: "shop", Rate: 1, Burst: 3})
	freeKey, free := entry(t, frontdoor.Entry{Name: "free"})
	path := filepath.Join(t.TempDir(), "backends.yaml")
	if err := os.WriteFile(path, append(shop, free...), 0o600); err != nil {
		t.Fatal(err)
	}
	door, err := frontdoor.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := frontdoor.NewGuard(frontdoor.GuardConfig{Door: door, RefuseAdmin: func(http.ResponseWriter, int, error) {}},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// Behind the door, the gate answers 200, then 400 (an invalid payload).
	codes := []int{200, 400}
	n := 0
	h := g.Ingest(answerRefusal{}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(codes[n%2])
		n++
	}))
	for i, want := range []struct {
		code              int
		policy, ratelimit string
	}{
		{200, `"default";q=3;w=3`, `"default";r=2;t=1`},
		{400, `"default";q=3;w=3`, `"default";r=1;t=2`},
		{200, `"default";q=3;w=3`, `"default";r=0;t=3`},
		{429, `"default";q=3;w=3`, `"default";r=0;t=1`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, request("X-API-Key", shopKey))
		if rec.Code != want.code || rec.Header().Get("RateLimit-Policy") != want.policy || rec.Header().Get("RateLimit") != want.ratelimit {
			t.Errorf("request %d: %d, RateLimit-Policy %q, RateLimit %q; want %d, %q, %q", i+1, rec.Code,
				rec.Header().Get("RateLimit-Policy"), rec.Header().Get("RateLimit"), want.code, want.policy, want.ratelimit)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, request("X-API-Key", freeKey))
	if rec.Header().Get("RateLimit") != "" || rec.Header().Get("RateLimit-Policy") != "" {
		t.Errorf("a backend without a quota got RateLimit fields: %v", rec.Header())
	}
}
