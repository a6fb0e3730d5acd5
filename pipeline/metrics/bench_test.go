package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/metrics"
)

// The series a payload touches on its way, each timed alone. bench/RESULTS.md
// records these; they should stay within a few hundred ns.
func BenchmarkHotPath(b *testing.B) {
	m := metrics.New()
	received := time.Now()
	b.Run("Payload", func(b *testing.B) {
		for b.Loop() {
			m.Payload(metrics.OutcomeAccepted, "")
		}
	})
	b.Run("Rejected", func(b *testing.B) {
		for b.Loop() {
			m.Rejected(messages.RuleSchema)
		}
	})
	b.Run("Published", func(b *testing.B) {
		for b.Loop() {
			m.Published(metrics.TopicAccepted, time.Millisecond)
		}
	})
	b.Run("Applied", func(b *testing.B) {
		for b.Loop() {
			m.Applied(received)
		}
	})
	b.Run("Group", func(b *testing.B) {
		for b.Loop() {
			m.Group(10, time.Millisecond, nil)
		}
	})
	b.Run("HTTPBaseline", func(b *testing.B) {
		// The same request through the bare handler: what InstrumentHTTP
		// adds is the difference.
		h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
		req := httptest.NewRequest(http.MethodPost, "/api/activities", nil)
		w := httptest.NewRecorder()
		for b.Loop() {
			h.ServeHTTP(w, req)
		}
	})
	b.Run("InstrumentHTTP", func(b *testing.B) {
		h := m.InstrumentHTTP("/api/activities", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		req := httptest.NewRequest(http.MethodPost, "/api/activities", nil)
		w := httptest.NewRecorder()
		for b.Loop() {
			h.ServeHTTP(w, req)
		}
	})
}
