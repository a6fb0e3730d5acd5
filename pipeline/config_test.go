package pipeline_test

import (
	"strings"
	"testing"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// The same configuration gives the same message, byte for byte, so that a
// diff of two starts' logs or a test on the text means something.
func TestValidateReportsProblemsInAFixedOrder(t *testing.T) {
	t.Parallel()
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

// block is accepted, but not beside a dead-letter policy, which would
// dead-letter the payloads a blocked key holds.
func TestValidateOrderingPoison(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		value      pipeline.OrderingPoison
		deadLetter int
		want       string
	}{
		{"", 0, ""},
		{pipeline.OrderingPoisonContinue, 0, ""},
		{pipeline.OrderingPoisonContinue, 5, ""},
		{pipeline.OrderingPoisonBlock, 0, ""},
		{pipeline.OrderingPoisonBlock, 5, "ORDERING_POISON=block and DEAD_LETTER_MAX_ATTEMPTS (5) contradict each other"},
		{"skip", 0, `ORDERING_POISON "skip": want continue or block`},
	} {
		cfg := pipeline.DefaultConfig()
		cfg.OrderingPoison = tt.value
		cfg.DeadLetterMaxAttempts = tt.deadLetter
		err := cfg.Validate()
		if tt.want == "" && err != nil {
			t.Errorf("ORDERING_POISON=%q: %v", tt.value, err)
		}
		if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("ORDERING_POISON=%q: got %v, want %q", tt.value, err, tt.want)
		}
	}
}
