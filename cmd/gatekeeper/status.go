package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/operator"
)

// status says what became of one payload: it asks the service on
// HTTP_ADDR, which also knows what it accepted and has not applied yet,
// and reads the warehouse itself when no service answers there.
func status(args []string, stdout, stderr io.Writer) int {
	var own struct {
		JSON bool `name:"json" help:"print the JSON the status API answers"`
	}
	cfg, logger, ids, err := loadConfig("status", "usage: gatekeeper status ID [--json] [flags]\n\n"+
		"Prints a payload's status: accepted, applied, poisoned, purged or unknown (exit 1).\n"+
		"Asks the service on --http-addr; without one there, reads the warehouse (which cannot know \"accepted\").",
		args, stdout, stderr, &own)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	asJSON := own.JSON
	if err == nil && len(ids) != 1 {
		err = errors.New("usage: gatekeeper status ID [--json]")
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	p, err := askService(ctx, cfg.HTTPAddr, ids[0])
	var unreachable *net.OpError
	if errors.As(err, &unreachable) {
		fmt.Fprintf(stderr, "gatekeeper: no service answers on %s; reading the warehouse\n", cfg.HTTPAddr)
		var c *operator.Console
		if c, err = pipeline.NewConsole(ctx, cfg, logger); err == nil {
			p, err = c.Status(ctx, ids[0])
			c.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return exitOperational
	}
	if asJSON {
		_ = json.NewEncoder(stdout).Encode(p)
	} else {
		fmt.Fprintf(stdout, "%s  %s\n", p.ID, p.Status)
		if p.ReceivedAt != nil {
			fmt.Fprintf(stdout, "  received  %s\n", p.ReceivedAt.Format(time.RFC3339Nano))
		}
		if p.AppliedAt != nil {
			fmt.Fprintf(stdout, "  applied   %s\n", p.AppliedAt.Format(time.RFC3339Nano))
		}
		if len(p.Tables) > 0 {
			fmt.Fprintf(stdout, "  tables    %s\n", strings.Join(p.Tables, ", "))
		}
		if p.RowsAffected != nil {
			fmt.Fprintf(stdout, "  rows      %d\n", *p.RowsAffected)
		}
		if p.Error != nil {
			fmt.Fprintf(stdout, "  error     %s: %s\n", p.Error.Class, p.Error.Reason)
		}
		if p.Replays > 0 {
			fmt.Fprintf(stdout, "  replays   %d\n", p.Replays)
		}
	}
	if p.Status == messages.StatusUnknown {
		return exitOperational
	}
	return exitOK
}

func askService(ctx context.Context, addr, id string) (operator.PayloadStatus, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return operator.PayloadStatus{}, fmt.Errorf("HTTP_ADDR: %w", err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+net.JoinHostPort(host, port)+"/api/activities/"+url.PathEscape(id), nil)
	if err != nil {
		return operator.PayloadStatus{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return operator.PayloadStatus{}, uerr.Err
		}
		return operator.PayloadStatus{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		return operator.PayloadStatus{}, fmt.Errorf("the service answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var p operator.PayloadStatus
	if err := json.Unmarshal(body, &p); err != nil || p.Status == "" {
		return p, fmt.Errorf("the service on %s answered %d without a status: %s", addr, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return p, nil
}
