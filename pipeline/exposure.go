package pipeline

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
)

// exposure says who can write through the ingestion API listening on
// addr: the level and message of the start's log line. Without keys
// anyone who reaches the address writes to the warehouse, so the start
// says so, loudest when the address is not loopback.
func exposure(authenticated bool, addr string) (slog.Level, string) {
	switch {
	case authenticated:
		return slog.LevelInfo, "Ingestion API open to the keys of BACKENDS_FILE"
	case loopbackOnly(addr):
		return slog.LevelInfo, "Ingestion API unauthenticated, on loopback only: " +
			"set BACKENDS_FILE to require keys, and HTTP_ADDR=:8080 to take requests from other machines"
	}
	return slog.LevelWarn, "Ingestion API unauthenticated and reachable from other machines: " +
		"anyone who reaches this address writes to the warehouse; set BACKENDS_FILE to require keys"
}

// loopbackOnly reports whether addr (host:port) listens on loopback only.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// logExposure logs, once at start, who can write through the ingestion
// API.
func (s *Service) logExposure() {
	if s.ingest == nil {
		return
	}
	level, msg := exposure(s.door != nil, s.cfg.HTTPAddr)
	s.logger.Log(context.Background(), level, msg, "addr", s.Addr().String(), "http_addr", s.cfg.HTTPAddr, "backends_file", s.cfg.BackendsFile)
}
