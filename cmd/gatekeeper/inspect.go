package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strconv"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/operator"
)

// inspect shows what was applied, so nobody needs the sqlite3 shell (or bq)
// to check a result: `gatekeeper tables`, `gatekeeper rows TABLE`.
func inspect(cmd string, args []string, stdout, stderr io.Writer) int {
	synopsis := "usage: gatekeeper tables [flags]\n\nLists the warehouse's tables."
	if cmd == "rows" {
		synopsis = "usage: gatekeeper rows TABLE [flags]\n\nPrints a table's rows as JSON lines."
	}
	var rowsFlags struct {
		Limit int `name:"limit" default:"100" help:"most rows to print; 0 for all"`
	}
	var reach reachFlags
	own := []any{&reach}
	if cmd == "rows" {
		own = append(own, &rowsFlags)
	}
	cfg, logger, rest, err := loadSettings(cmd, synopsis, reachReads, args, stdout, stderr, own...)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 2
	}
	var table string
	if cmd == "rows" && len(rest) == 1 {
		table = rest[0]
	} else if cmd == "rows" || len(rest) != 0 {
		fmt.Fprintf(stderr, "gatekeeper: %s takes %s; see gatekeeper %s --help\n", cmd,
			map[string]string{"rows": "one table name", "tables": "no arguments"}[cmd], cmd)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if !reach.direct(args) {
		c, err := newAdminClient(reach, cfg.AdminAddr)
		if err == nil {
			err = askInspect(ctx, c, table, rowsFlags.Limit, stdout)
		}
		if err != nil {
			fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
			return 1
		}
		return 0
	}
	if err := cfg.ValidateWarehouse(); err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 2
	}
	cfg, err = openDirect(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 1
	}
	store, err := pipeline.OpenWarehouse(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 1
	}
	defer store.Close()

	enc := json.NewEncoder(stdout)
	if cmd == "tables" {
		tables, err := store.Tables(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
			return 1
		}
		for _, t := range tables {
			fmt.Fprintln(stdout, t)
		}
		return 0
	}
	rows, err := store.Rows(ctx, table, rowsFlags.Limit)
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 1
	}
	for _, row := range rows {
		if err := enc.Encode(row); err != nil {
			fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
			return 1
		}
	}
	return 0
}

// askInspect prints the service's tables, or a table's rows as JSON
// lines, as the admin API answers them.
func askInspect(ctx context.Context, c *adminClient, table string, limit int, stdout io.Writer) error {
	if table == "" {
		var out struct {
			Tables []string `json:"tables"`
		}
		if err := c.get(ctx, operator.AdminTablesPath, nil, &out); err != nil {
			return err
		}
		for _, t := range out.Tables {
			fmt.Fprintln(stdout, t)
		}
		return nil
	}
	var out struct {
		Rows []json.RawMessage `json:"rows"`
	}
	err := c.get(ctx, operator.AdminTablesPath+"/"+url.PathEscape(table)+"/rows", url.Values{"limit": {strconv.Itoa(limit)}}, &out)
	if err != nil {
		return err
	}
	for _, row := range out.Rows {
		fmt.Fprintf(stdout, "%s\n", row)
	}
	return nil
}
