package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gatekeeper/gatekeeper/loadgen"
	"github.com/gatekeeper/gatekeeper/pipeline"
)

const loadgenSynopsis = `usage: gatekeeper loadgen (--duration D | --requests N) [--rate R] [--connections C] [--mix locust] [--output FILE] [flags]
       gatekeeper loadgen report FILE [--format text|json|hist|hgrm]

Posts payloads to --target's /api/activities and reports latency, status codes and errors.
Open model: --rate R/s sends at fixed intended times, at most --connections in flight; each
latency counts from the intended send time, and a send that starts over 1ms late is counted
late. Closed model (no --rate): --connections workers send back to back.
Stops at --duration or --requests, whichever comes first. Exit 1 when a --fail-if threshold is
crossed or no request got an answer, 2 on a usage error. --output FILE keeps every result;
gatekeeper loadgen report FILE reports it again.
--e2e reads the status API, or the applied topic, found from the same settings as serve's
(PUBSUB_EMULATOR_HOST, PROJECT_ID, TOPIC_ID, APPLIED_TOPIC_ID...); no other setting is used.`

// loadgenCommand is `gatekeeper loadgen`: its own flags (loadgen.Options), and
// the service's settings beside them, for --e2e to find the topics serve
// uses.
func loadgenCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "report" {
		return loadgenReport(args[1:], stdout, stderr)
	}
	var o loadgen.Options
	cfg, _, rest, err := loadConfig("loadgen", loadgenSynopsis, args, stdout, stderr, &o)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected argument %q", rest[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper loadgen: %v\n", err)
		return exitUsage
	}
	if o.Key == "" {
		o.Key = os.Getenv("GATEKEEPER_KEY")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return loadgen.Run(ctx, o, topicsOf(cfg), stdout, stderr)
}

// topicsOf is where the service cfg describes publishes applied events
// and poisoned payloads.
func topicsOf(cfg pipeline.Config) loadgen.Topics {
	cfg = cfg.WithDefaults()
	return loadgen.Topics{
		Project: cfg.ProjectID, Applied: cfg.AppliedTopicID, Poison: cfg.PoisonTopicID, Where: pubSubWhere(cfg),
		Dial: func(ctx context.Context) (*pubsub.Client, error) {
			if err := cfg.ValidatePubSub(); err != nil {
				return nil, err
			}
			return pubsub.NewClient(ctx, cfg.ProjectID, pipeline.ClientOptions(cfg)...)
		},
	}
}

// pubSubWhere names the Pub/Sub cfg selects, for errors.
func pubSubWhere(cfg pipeline.Config) string {
	switch cfg.ResolvedPubSubMode() {
	case pipeline.PubSubEmbedded:
		return fmt.Sprintf("embedded Pub/Sub at %s (project %s)", cfg.EmbeddedPubSubAddr, cfg.ProjectID)
	case pipeline.PubSubEmulator:
		return fmt.Sprintf("Pub/Sub emulator at %s (project %s)", cfg.EmulatorHost, cfg.ProjectID)
	default:
		return fmt.Sprintf("Google Pub/Sub (project %s)", cfg.ProjectID)
	}
}

const loadgenReportSynopsis = `usage: gatekeeper loadgen report FILE [--format text|json|hist|hgrm] [--buckets B]

Reports again a run whose results gatekeeper loadgen --output FILE kept: the same report as text
or JSON, the answered requests per latency bucket (hist), or the latency's percentile distribution
in HdrHistogram's .hgrm format, in milliseconds, for HdrHistogram's plotter.`

func loadgenReport(args []string, stdout, stderr io.Writer) int {
	var o loadgen.ReportOptions
	rest, err := parseFlags("loadgen report", loadgenReportSynopsis, args, stdout, &o)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err == nil && len(rest) != 1 {
		err = errors.New("want one results FILE (written by gatekeeper loadgen --output FILE)")
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper loadgen report: %v\n", err)
		return exitUsage
	}
	return loadgen.ReportFile(rest[0], o, stdout, stderr)
}
