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

const loadgenSynopsis = `usage: gatekeeper loadgen (--duration D | --requests N) [--rate R] [--connections C] [--mix seed] [flags]

Posts payloads to --target's /api/activities and reports latency, status codes and errors.
Open model: --rate R/s sends at fixed intended times, at most --connections in flight; each
latency counts from the intended send time, and a send that starts over 1ms late is counted
late. Closed model (no --rate): --connections workers send back to back.
Stops at --duration or --requests, whichever comes first. Exit 1 when a --fail-if threshold is
crossed or no request got an answer, 2 on a usage error.
--e2e reads the status API, or the applied topic, found from the same settings as serve's
(PUBSUB_EMULATOR_HOST, PROJECT_ID, TOPIC_ID, APPLIED_TOPIC_ID...); no other setting is used.`

// loadgenCommand is `gatekeeper loadgen`: its own flags (loadgen.Options), and
// the service's settings beside them, for --e2e to find the topics serve
// uses.
func loadgenCommand(args []string, stdout, stderr io.Writer) int {
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
