package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
)

const outboxUsage = `usage: gatekeeper outbox salvage [--dry-run] [flags]

Saves what can still be read of a damaged outbox (the service refuses to
start on one, and names this command). Stop every process that uses the
outbox first. It reads every entry it can, row by row around the damaged
pages, into a new outbox at OUTBOX_PATH with the damaged one's identity,
moves the damaged file aside to OUTBOX_PATH.damaged-TIMESTAMP, and reports
how many entries it saved and how many it could not read. Start the
service then: it publishes the saved entries again, and the warehouse's
ledger applies each exactly once.

Exit codes: 0 salvaged, every entry saved (or nothing to salvage);
1 some entries could not be read, or the salvage failed; 2 usage.`

// outboxCommand is `gatekeeper outbox COMMAND`.
func outboxCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
		fmt.Fprintln(stdout, outboxUsage)
		return exitOK
	}
	if len(args) == 0 || args[0] != "salvage" {
		fmt.Fprintln(stderr, "gatekeeper: outbox needs a command (salvage); see gatekeeper outbox --help")
		return exitUsage
	}
	var own struct {
		DryRun bool `name:"dry-run" help:"read and count; write and move nothing"`
	}
	cfg, _, rest, err := loadSettings("outbox salvage", outboxUsage, []string{"LOG_LEVEL", "LOG_FORMAT", "OUTBOX_PATH", "WAREHOUSE", "SQLITE_SYNC"},
		args[1:], stdout, stderr, &own)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("outbox salvage takes no arguments (got %v); the file is --outbox-path", rest)
	}
	dryRun := own.DryRun
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return exitUsage
	}
	path := cfg.WithDefaults().OutboxPath
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := outbox.Salvage(ctx, path, outbox.SalvageOptions{DryRun: dryRun, Sync: cfg.WithDefaults().SQLiteSync})
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return exitOperational
	}
	printSalvage(stdout, rep, dryRun)
	if rep.Unreadable > 0 || !rep.UnreadableKnown {
		return exitOperational
	}
	return exitOK
}

func printSalvage(w io.Writer, rep outbox.SalvageReport, dryRun bool) {
	if rep.Damage == "ok" {
		fmt.Fprintf(w, "The outbox %s is not damaged (quick_check: ok): nothing to salvage. It holds %d pending and %d poisoned entries.\n",
			rep.Path, rep.Saved[outbox.Pending], rep.Saved[outbox.Poisoned])
		return
	}
	verb := "Salvaged"
	if dryRun {
		verb = "Dry run, nothing written or moved: would salvage"
	}
	fmt.Fprintf(w, "%s the outbox %s\n", verb, rep.Path)
	fmt.Fprintf(w, "  damage:          %s\n", rep.Damage)
	fmt.Fprintf(w, "  entries saved:   %d (%d pending, %d poisoned)\n", rep.SavedTotal(), rep.Saved[outbox.Pending], rep.Saved[outbox.Poisoned])
	switch {
	case rep.UnreadableKnown:
		fmt.Fprintf(w, "  could not read:  %d\n", rep.Unreadable)
	case rep.MostUnreadable() >= 0:
		fmt.Fprintf(w, "  could not read:  unknown, at least %d and at most %d (the file lost rows that nothing in it counts any more; "+
			"at most: the row numbers up to %d not saved, some of them settled and forgotten before the damage)\n",
			rep.Unreadable, rep.MostUnreadable(), rep.LastRow)
	default:
		fmt.Fprintf(w, "  could not read:  unknown, at least %d (the file lost rows that nothing in it counts any more)\n", rep.Unreadable)
	}
	switch {
	case dryRun && rep.NewIdentity:
		fmt.Fprintf(w, "  identity:        unreadable: the new outbox will have a new one\n")
	case rep.NewIdentity:
		fmt.Fprintf(w, "  identity:        %s, new: the damaged file's could not be read, so the service will refuse to start "+
			"against its record of the old one; start it once with --outbox-accept-loss (OUTBOX_ACCEPT_LOSS=true)\n", rep.Identity)
	default:
		fmt.Fprintf(w, "  identity:        %s (kept)\n", rep.Identity)
	}
	if dryRun {
		return
	}
	fmt.Fprintf(w, "  damaged file:    moved to %s\n", rep.DamagedPath)
	fmt.Fprintf(w, "Start the service now: it publishes the %d saved entries again, and the ledger applies each once.\n", rep.SavedTotal())
}
