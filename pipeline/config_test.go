package pipeline_test

import (
	"strings"
	"testing"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// The same configuration gives the same message, byte for byte, so that a
// diff of two starts' logs or a test on the text means something.
func TestValidateReportsProblemsInAFixedOrder(t *testing.T) {
	cfg := pipeline.DefaultConfig()
	cfg.TopicID, cfg.SubscriptionID, cfg.PoisonTopicID, cfg.AppliedTopicID = "x", "y", "z", "w"
	cfg.PublishTimeout, cfg.ApplyTimeout, cfg.GroupMaxWait, cfg.ShutdownTimeout = -1, -1, -1, -1
	cfg.ReceiveStreams, cfg.MaxOutstanding, cfg.GroupMaxSize, cfg.PushInterval = -1, -1, -1, -1
	first := cfg.Validate()
	if first == nil || strings.Count(first.Error(), "\n") < 10 {
		t.Fatalf("want many problems, got %v", first)
	}
	for range 50 {
		if again := cfg.Validate(); again.Error() != first.Error() {
			t.Fatalf("Validate changed its answer:\n%s\n--- then ---\n%s", first, again)
		}
	}
}

// block is refused until it is implemented, rather than accepted and
// silently run as continue.
func TestValidateOrderingPoison(t *testing.T) {
	for _, tt := range []struct {
		value pipeline.OrderingPoison
		want  string
	}{
		{"", ""},
		{pipeline.OrderingPoisonContinue, ""},
		{pipeline.OrderingPoisonBlock, "ORDERING_POISON=block is not implemented yet"},
		{"skip", `ORDERING_POISON "skip": want continue`},
	} {
		cfg := pipeline.DefaultConfig()
		cfg.OrderingPoison = tt.value
		err := cfg.Validate()
		if tt.want == "" && err != nil {
			t.Errorf("ORDERING_POISON=%q: %v", tt.value, err)
		}
		if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("ORDERING_POISON=%q: got %v, want %q", tt.value, err, tt.want)
		}
	}
}
