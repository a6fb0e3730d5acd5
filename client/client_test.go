package client_test

import (
	"testing"

	"github.com/gatekeeper/gatekeeper/client"
	"github.com/gatekeeper/gatekeeper/messages"
)

// The client keeps its own copy of the statuses, so that a backend does
// not link the gate: the copy must stay the wire contract's.
func TestStatusesAreTheWireContract(t *testing.T) {
	for got, want := range map[string]string{
		client.StatusAccepted: messages.StatusAccepted, client.StatusApplied: messages.StatusApplied,
		client.StatusPoisoned: messages.StatusPoisoned, client.StatusPurged: messages.StatusPurged,
		client.StatusUnknown: messages.StatusUnknown,
	} {
		if got != want {
			t.Errorf("client status %q, messages says %q", got, want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	_, err := client.New(client.Config{BaseURL: "localhost:8080", RetryFor: -1})
	want := "client config: BaseURL \"localhost:8080\" must be an http(s) URL such as http://127.0.0.1:8080\n" +
		"client config: RetryFor, InitialBackoff, MaxBackoff and PollInterval must not be negative"
	if err == nil || err.Error() != want {
		t.Errorf("New: %v, want:\n%s", err, want)
	}
	if _, err := client.New(client.Config{BaseURL: "http://127.0.0.1:8080"}); err != nil {
		t.Errorf("New with only BaseURL: %v", err)
	}
}
