package client_test

import (
	"os"
	"strings"
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

// docs/api.md shows Example's body as it is.
func TestDocsShowTheExample(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	start := strings.Index(s, "func Example() {\n")
	end := strings.LastIndex(s, "\n}")
	if start < 0 || end < start {
		t.Fatal("no func Example in example_test.go")
	}
	lines := strings.Split(s[start+len("func Example() {\n"):end], "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "\t")
	}
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	if block := "```go\n" + strings.Join(lines, "\n") + "\n```\n"; !strings.Contains(string(doc), block) {
		t.Errorf("docs/api.md does not show Example's body; it should hold:\n%s", block)
	}
}
