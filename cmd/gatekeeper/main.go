// Command gatekeeper runs the gatekeeper service and its operator tools.
//
//	gatekeeper [serve] [flags]     run the service (default: embedded Pub/Sub and SQLite)
//	gatekeeper tables [flags]      list the warehouse's tables
//	gatekeeper rows TABLE [flags]  print a table's rows as JSON lines
//	gatekeeper poison COMMAND      the poison index: list, summary, show, replay, export, purge
//	gatekeeper status ID           what became of one payload
//	gatekeeper outbox salvage      save what can be read of a damaged outbox into a new one
//	gatekeeper keys new BACKEND    a fresh API key: an entry for BACKENDS_FILE on stdout, the key on stderr
//	gatekeeper loadgen [flags]     post a bounded load to a local service and report latency
//	gatekeeper healthcheck         exit 0 when the local service is ready (for containers without curl)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/joho/godotenv"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// godotenv.Load never overrides a variable the environment already has.
	if err := godotenv.Load(); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "gatekeeper: .env: %v\n", err)
		return 2
	}
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "tables", "rows":
		return inspect(cmd, args, stdout, stderr)
	case "healthcheck":
		return healthcheck(args, stderr)
	case "poison":
		return poison(args, stdout, stderr)
	case "status":
		return status(args, stdout, stderr)
	case "outbox":
		return outboxCommand(args, stdout, stderr)
	case "keys":
		return keysCommand(args, stdout, stderr)
	case "loadgen":
		return loadgen(args, stdout, stderr)
	case "help":
		fmt.Fprintln(stdout, "usage: gatekeeper [serve|tables|rows TABLE|poison COMMAND|status ID|outbox salvage|keys new BACKEND|loadgen|healthcheck] [flags]; gatekeeper COMMAND --help for flags")
		return 0
	default:
		fmt.Fprintf(stderr, "gatekeeper: unknown command %q (want serve, tables, rows, poison, status, outbox, keys, loadgen or healthcheck)\n", cmd)
		return 2
	}
}

// loadConfig parses flags over the environment into a Config. Defaults
// derived from other settings (project, poison and applied names, receive
// streams, outbox path) are left zero, so that NewService derives them from
// the final values.
func loadConfig(name, synopsis string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (pipeline.Config, *slog.Logger, *flag.FlagSet, error) {
	cfg := pipeline.DefaultConfig()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if extra != nil {
		extra(fs)
	}
	// Tools print results on stdout; their logs stay quiet unless asked.
	logLevel, logFormat := "warn", "text"
	if name == "serve" {
		logLevel = "info"
	}
	ss := bindSettings(fs, &cfg, &logLevel, &logFormat)
	fs.Usage = usage(stderr, fs, ss, synopsis)
	if err := applyEnv(fs, ss, envLookup); err != nil {
		return cfg, nil, fs, err
	}
	if err := fs.Parse(args); err != nil {
		return cfg, nil, fs, err
	}
	logger, err := newLogger(stderr, logLevel, logFormat)
	return cfg, logger, fs, err
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

func serve(args []string, stderr io.Writer) int {
	cfg, logger, _, err := loadConfig("serve", "usage: gatekeeper serve [flags]\n\nRuns the ingestion and apply stages (see --stages).", args, stderr, nil)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return 2
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
