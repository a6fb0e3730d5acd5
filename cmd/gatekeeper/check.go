package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// check is `gatekeeper check`: before a deploy, with the settings the
// process will run with, it looks at each thing the process needs and
// prints a table of them, each ok, skipped or FAIL with its fix. It exits
// 0 only when nothing failed. It changes nothing (pipeline.Check).
func check(args []string, stdout, stderr io.Writer) int {
	synopsis := "usage: gatekeeper check [flags]\n\n" +
		"Checks, with the settings a process will run with, what it needs before traffic: the settings and\n" +
		"the backends file; Pub/Sub and the topics and subscriptions of its stages; on Google the IAM\n" +
		"permissions on them and on the dataset; the warehouse and its ledger. Prints one line per item;\n" +
		"exits 0 only when none failed. It creates nothing."
	cfg, _, rest, err := loadConfig("check", synopsis, args, stdout, stderr)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("check takes no arguments (got %s); see gatekeeper check --help", strings.Join(rest, " "))
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// The adapters' logs would interleave with the table; check says all.
	results := pipeline.Check(ctx, cfg, nil)
	printChecks(stdout, results)
	if !pipeline.CheckPassed(results) {
		return 1
	}
	return exitOK
}

func printChecks(w io.Writer, results []pipeline.CheckResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	failed, skipped := 0, 0
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Item, r.Status, r.Detail)
		if r.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", r.Fix)
		}
		switch r.Status {
		case pipeline.CheckFailed:
			failed++
		case pipeline.CheckSkipped:
			skipped++
		}
	}
	_ = tw.Flush()
	if failed > 0 {
		fmt.Fprintf(w, "\n%d of %d checks failed.\n", failed, len(results))
		return
	}
	// A skipped item was not checked: the total says so, so that "all
	// passed" is not read as "IAM was checked" on the emulator.
	if skipped > 0 {
		fmt.Fprintf(w, "\nAll %d checks passed; %d more skipped, as said above.\n", len(results)-skipped, skipped)
		return
	}
	fmt.Fprintf(w, "\nAll %d checks passed.\n", len(results))
}
