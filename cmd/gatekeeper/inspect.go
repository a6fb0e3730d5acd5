package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// inspect shows what was applied, so nobody needs the sqlite3 shell (or bq)
// to check a result: `gatekeeper tables`, `gatekeeper rows TABLE`.
func inspect(cmd string, args []string, stdout, stderr io.Writer) int {
	synopsis := "usage: gatekeeper tables [flags]\n\nLists the warehouse's tables."
	if cmd == "rows" {
		synopsis = "usage: gatekeeper rows TABLE [flags]\n\nPrints a table's rows as JSON lines."
	}
	var own []any
	var rowsFlags struct {
		Limit int `name:"limit" default:"100" help:"most rows to print; 0 for all"`
	}
	if cmd == "rows" {
		own = append(own, &rowsFlags)
	}
	cfg, logger, rest, err := loadConfig(cmd, synopsis, args, stdout, stderr, own...)
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
		fmt.Fprintf(stderr, "gatekeeper: %s\n", strings.SplitN(synopsis, "\n", 2)[0])
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := cfg.ValidateWarehouse(); err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 2
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
