// Command gatekeeper runs the gatekeeper service and its operator tools.
// `gatekeeper help` lists the commands, from the one table of them
// (commands); `gatekeeper` alone, or with flags only, is `gatekeeper serve`.
// Each command's --help lists its flags and the settings it reads.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/joho/godotenv"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one of gatekeeper's commands. The table below is the only
// list of them: the dispatcher, the help and the "unknown command" message
// all read it.
type command struct {
	name, args, summary string
	run                 func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "[flags]", "run the service (the default; embedded Pub/Sub and SQLite unless set otherwise)", serve},
		{"tables", "[flags]", "list the warehouse's tables (asks the running service)", func(a []string, o, e io.Writer) int { return inspect("tables", a, o, e) }},
		{"rows", "TABLE [flags]", "print a table's rows as JSON lines (asks the running service)", func(a []string, o, e io.Writer) int { return inspect("rows", a, o, e) }},
		{"poison", "COMMAND", "the poison index: list, summary, show, replay, export, purge (asks the running service)", poison},
		{"status", "ID", "what became of one payload (asks the running service)", status},
		{"outbox", "salvage", "save what can be read of a damaged outbox into a new one", outboxCommand},
		{"keys", "new BACKEND", "a fresh API key: an entry for BACKENDS_FILE on stdout, the key on stderr", keysCommand},
		{"loadgen", "[flags]", "post a bounded load to a local service and report latency", loadgenCommand},
		{"check", "[flags]", "before a deploy: check settings, Pub/Sub, IAM and the warehouse; exit 0 only when all pass", check},
		{"healthcheck", "", "exit 0 when the local service is ready (for containers without curl)", healthcheck},
		{"version", "", "print the version (also --version)", versionCommand},
		{"help", "", "print this list (also --help)", help},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	// godotenv.Load never overrides a variable the environment already has.
	if err := godotenv.Load(); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "gatekeeper: .env: %v\n", err)
		return exitUsage
	}
	name := "serve"
	if len(args) > 0 {
		switch args[0] {
		case "--help", "-h":
			name, args = "help", args[1:]
		case "--version":
			name, args = "version", args[1:]
		default:
			if !strings.HasPrefix(args[0], "-") {
				name, args = args[0], args[1:]
			}
		}
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args, stdout, stderr)
		}
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	fmt.Fprintf(stderr, "gatekeeper: unknown command %q (want %s); see gatekeeper --help\n", name, strings.Join(names, ", "))
	return exitUsage
}

// help lists the commands, on stdout; `help CMD [SUBCOMMAND]` is
// `CMD [SUBCOMMAND] --help`.
func help(args []string, stdout, stderr io.Writer) int {
	// `help help` is the list, as `help` is.
	if len(args) > 0 && args[0] != "help" {
		return run(append(slices.Clone(args), "--help"), stdout, stderr)
	}
	fmt.Fprintf(stdout, "usage: gatekeeper [COMMAND] [flags]\n\nCommands:\n")
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	_ = tw.Flush()
	fmt.Fprintln(stdout, "\ngatekeeper help COMMAND, or gatekeeper COMMAND --help, lists a command's flags and the settings it reads.")
	return exitOK
}

func newLogger(w io.Writer, levelName, format string) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(levelName)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", levelName)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
}

// setMemoryLimit gives the Go runtime a soft memory limit of twice
// MAX_IN_FLIGHT_BYTES plus 64 MiB (576 MiB by default), unless GOMEMLIMIT
// sets one. Without a limit the heap grows to twice what was live at the
// last collection: 100 bodies of 1 MiB in flight live as about 3.7 MiB
// each (the body, its canonical form, gRPC's buffer and the embedded
// Pub/Sub's copy), so the heap reached 750 MiB and RSS 690-1058 MiB. With
// this limit the same bursts peaked at 738-790 MiB RSS, within the
// budget's promise (3 × MAX_IN_FLIGHT_BYTES + 100 MB = 863 MiB); the
// rest of RSS, about 200 MiB under these bursts, is SQLite's (page caches
// and large rows), outside the Go heap. Below the limit it costs nothing:
// the collector paces by GOGC as before.
func setMemoryLimit(cfg pipeline.Config, logger *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		logger.Info("Memory limit from GOMEMLIMIT", "bytes", debug.SetMemoryLimit(-1))
		return
	}
	if cfg.MaxInFlightBytes <= 0 {
		return
	}
	limit := 2*cfg.MaxInFlightBytes + 64<<20
	debug.SetMemoryLimit(limit)
	logger.Info("Memory limit from MAX_IN_FLIGHT_BYTES", "bytes", limit, "max_in_flight_bytes", cfg.MaxInFlightBytes)
}

func serve(args []string, stdout, stderr io.Writer) int {
	cfg, logger, rest, err := loadValidated("serve", "usage: gatekeeper serve [flags]\n\nRuns the ingestion and apply stages (see --stages).", args, stdout, stderr)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("serve takes no arguments (got %s); see gatekeeper serve --help", strings.Join(rest, " "))
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	setMemoryLimit(cfg, logger)

	svc, err := pipeline.NewService(ctx, cfg, logger)
	if err != nil {
		logger.Error("Cannot start", "error", err)
		return 1
	}
	// SIGHUP reloads BACKENDS_FILE; requests keep flowing meanwhile.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer close(hup)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			_ = svc.ReloadBackends() // logged either way
		}
	}()
	if err := svc.Run(ctx); err != nil {
		logger.Error("Stopped with an error", "error", err)
		return 1
	}
	logger.Info("Stopped cleanly")
	return 0
}
