package pipeline

import (
	"log/slog"
	"strings"
	"testing"
)

// Without keys the ingestion API listens on loopback unless HTTP_ADDR
// says otherwise, and the start says who can write through it.
func TestUnauthenticatedListensOnLoopbackByDefault(t *testing.T) {
	for _, c := range []struct {
		backends, httpAddr, want string
	}{
		{"", "", "127.0.0.1:8080"},
		{"backends.yaml", "", ":8080"},
		{"", ":8080", ":8080"},
		{"", "0.0.0.0:9000", "0.0.0.0:9000"},
	} {
		cfg := DefaultConfig()
		cfg.BackendsFile, cfg.HTTPAddr = c.backends, c.httpAddr
		if got := cfg.WithDefaults().HTTPAddr; got != c.want {
			t.Errorf("BACKENDS_FILE=%q HTTP_ADDR=%q: listens on %q, want %q", c.backends, c.httpAddr, got, c.want)
		}
	}
	for _, c := range []struct {
		authenticated bool
		addr          string
		level         slog.Level
		says          string
	}{
		{true, ":8080", slog.LevelInfo, "keys of BACKENDS_FILE"},
		{false, "127.0.0.1:8080", slog.LevelInfo, "on loopback only"},
		{false, "[::1]:8080", slog.LevelInfo, "on loopback only"},
		{false, "localhost:8080", slog.LevelInfo, "on loopback only"},
		{false, ":8080", slog.LevelWarn, "reachable from other machines"},
		{false, "0.0.0.0:8080", slog.LevelWarn, "reachable from other machines"},
		{false, "192.168.1.5:8080", slog.LevelWarn, "reachable from other machines"},
	} {
		level, msg := exposure(c.authenticated, c.addr)
		if level != c.level || !strings.Contains(msg, c.says) {
			t.Errorf("exposure(%v, %s) = %s %q, want %s saying %q", c.authenticated, c.addr, level, msg, c.level, c.says)
		}
	}
}
