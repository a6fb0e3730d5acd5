package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthcheck asks the local service's /readyz, for container healthchecks
// in images that have no curl or shell.
func healthcheck(args []string, stdout, stderr io.Writer) int {
	cfg, _, rest, err := loadSettings("healthcheck", "usage: gatekeeper healthcheck [flags]\n\nExits 0 when the service on --http-addr answers /readyz with 200.",
		[]string{"HTTP_ADDR"}, args, stdout, stderr)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("healthcheck takes no arguments (got %s)", strings.Join(rest, " "))
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 2
	}
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: HTTP_ADDR=%s: want HOST:PORT or :PORT, such as :8080 (%v)\n", cfg.HTTPAddr, err)
		return 2
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	client := http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/readyz")
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: not ready: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "gatekeeper: not ready: %d %s\n", resp.StatusCode, body)
		return 1
	}
	return 0
}
