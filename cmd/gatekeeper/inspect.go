package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
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
	var limit int
	synopsis := "usage: gatekeeper tables [flags]\n\nLists the warehouse's tables."
	if cmd == "rows" {
		synopsis = "usage: gatekeeper rows TABLE [flags]\n\nPrints a table's rows as JSON lines."
	}
	// The flag package stops at the first argument that is not a flag; the
	// table name may come before or after the flags.
	var table string
	if cmd == "rows" && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		table, args = args[0], args[1:]
	}
	cfg, logger, fs, err := loadConfig(cmd, synopsis, args, stderr, func(fs *flag.FlagSet) {
		if cmd == "rows" {
			fs.IntVar(&limit, "limit", 100, "most rows to print; 0 for all")
		}
	})
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 2
	}
	if cmd == "rows" && table == "" && fs.NArg() == 1 {
		table = fs.Arg(0)
	} else if cmd == "rows" && (table == "" || fs.NArg() != 0) || cmd == "tables" && fs.NArg() != 0 {
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
	rows, err := store.Rows(ctx, table, limit)
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
