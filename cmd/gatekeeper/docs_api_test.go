package main

import (
	"os"
	"strings"
	"testing"
)

// docs/api.md shows what `gatekeeper serve` says when it would run
// unauthenticated on the emulator; the binary says exactly that, and
// exits 2 (a usage error) without starting.
func TestDocAPIUnauthenticatedEmulatorRefusal(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	const prompt = "$ PUBSUB_EMULATOR_HOST=127.0.0.1:8085 gatekeeper serve\n"
	_, after, ok := strings.Cut(string(raw), prompt)
	if !ok {
		t.Fatalf("docs/api.md no longer shows %q", prompt)
	}
	want, _, _ := strings.Cut(after, "\n")
	r := gk(t, t.TempDir(), map[string]string{"PUBSUB_EMULATOR_HOST": "127.0.0.1:8085"}, "serve")
	if r.code != 2 || strings.TrimSpace(r.stderr) != want {
		t.Errorf("gatekeeper serve on the emulator without keys: exit %d, stderr\n%s\ndocs/api.md shows\n%s", r.code, r.stderr, want)
	}
}
