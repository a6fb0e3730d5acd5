package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/operator"
)

// status says what became of one payload: it asks the service's admin
// API, which also knows what it accepted and has not applied yet; with
// --direct it reads the warehouse, which cannot know "accepted".
func status(args []string, stdout, stderr io.Writer) int {
	var own struct {
		JSON bool `name:"json" help:"print the JSON the status API answers"`
	}
	var reach reachFlags
	cfg, logger, ids, err := loadSettings("status", "usage: gatekeeper status ID [--json] [flags]\n\n"+
		"Prints a payload's status: accepted, applied, poisoned, purged or unknown (exit 1).\n"+
		"Asks the service's admin API (ADMIN_ADDR, or --server); with --direct, reads the warehouse, which cannot know \"accepted\".",
		reachReads, args, stdout, stderr, &own, &reach)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	asJSON := own.JSON
	if err == nil && len(ids) != 1 {
		err = errors.New("status takes one payload id; see gatekeeper status --help")
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var p operator.PayloadStatus
	if reach.direct(args) {
		var c *directSource
		if c, err = openDirectSource(ctx, cfg, logger); err == nil {
			p, err = c.c.Status(ctx, ids[0])
			c.close()
		}
	} else {
		var c *adminClient
		if c, err = newAdminClient(reach, cfg.AdminAddr); err == nil {
			p, err = askStatus(ctx, c, ids[0])
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

// askStatus asks the admin API's GET /api/activities/{id}, which answers
// 404 with the status "unknown".
func askStatus(ctx context.Context, c *adminClient, id string) (operator.PayloadStatus, error) {
	path := strings.Replace(operator.StatusPath, "{id}", url.PathEscape(id), 1)
	_, raw, err := c.call(ctx, http.MethodGet, path, nil, nil, 30*time.Second, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return operator.PayloadStatus{}, err
	}
	var p operator.PayloadStatus
	if err := json.Unmarshal(raw, &p); err != nil || p.Status == "" {
		return p, fmt.Errorf("the service on %s answered without a status: %s", c.host, strings.TrimSpace(string(raw)))
	}
	return p, nil
}
