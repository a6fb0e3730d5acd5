// Command gatekeeper runs the gatekeeper service and its operator tools.
//
//	gatekeeper [serve] [flags]     run the service (default: embedded Pub/Sub and SQLite)
//	gatekeeper tables [flags]      list the warehouse's tables
//	gatekeeper rows TABLE [flags]  print a table's rows as JSON lines
//	gatekeeper poison list|replay  inspect or replay the poison subscription
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
	case "help":
		fmt.Fprintln(stdout, "usage: gatekeeper [serve|tables|rows TABLE|poison list|poison replay|healthcheck] [flags]; gatekeeper COMMAND --help for flags")
		return 0
	default:
		fmt.Fprintf(stderr, "gatekeeper: unknown command %q (want serve, tables, rows, poison or healthcheck)\n", cmd)
		return 2
	}
}

// loadConfig parses flags over the environment into a Config. Fields whose
// default derives from another (poison and applied topics, project) are
// left empty so that the derivation sees the final values.
func loadConfig(name, synopsis string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (pipeline.Config, *slog.Logger, *flag.FlagSet, error) {
	cfg := pipeline.DefaultConfig()
	cfg.ProjectID, cfg.PoisonTopicID, cfg.PoisonSubscriptionID, cfg.AppliedTopicID, cfg.PubSubMode = "", "", "", "", ""
	cfg.OutboxPath, cfg.Outbox = "", ""
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	// Tools print results on stdout; their logs stay quiet unless asked.
	defaultLevel := "warn"
	if name == "serve" {
		defaultLevel = "info"
	}
	var logLevel string
	fs.StringVar(&logLevel, "log-level", envOr("LOG_LEVEL", defaultLevel), "debug, info, warn or error [LOG_LEVEL]")
	if extra != nil {
		extra(fs)
	}
	ss := bindConfig(fs, &cfg)
	fs.Usage = usage(stderr, fs, ss, synopsis)
	if err := applyEnv(fs, ss, envLookup); err != nil {
		return cfg, nil, fs, err
	}
	if err := fs.Parse(args); err != nil {
		return cfg, nil, fs, err
	}
	logger, err := newLogger(stderr, logLevel)
	return cfg, logger, fs, err
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func newLogger(w io.Writer, levelName string) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(levelName)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", levelName)
	}
	if envOr("LOG_FORMAT", "text") == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})), nil
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), nil
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

	svc, err := pipeline.NewService(ctx, cfg, logger)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	if err := svc.Run(ctx); err != nil {
		logger.Error("stopped with error", "err", err)
		return 1
	}
	logger.Info("stopped cleanly")
	return 0
}
