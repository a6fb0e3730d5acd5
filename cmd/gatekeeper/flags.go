package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// setting ties a flag to the environment variable it reads by default.
type setting struct {
	flag, env string
}

// bindConfig registers one flag per Config field on fs and returns the
// settings in the order --help lists them.
func bindConfig(fs *flag.FlagSet, c *pipeline.Config) []setting {
	var ss []setting
	str := func(p *string, name, env, usage string) {
		fs.StringVar(p, name, *p, usage)
		ss = append(ss, setting{name, env})
	}
	dur := func(p *time.Duration, name, env, usage string) {
		fs.DurationVar(p, name, *p, usage)
		ss = append(ss, setting{name, env})
	}
	num := func(p *int, name, env, usage string) {
		fs.IntVar(p, name, *p, usage)
		ss = append(ss, setting{name, env})
	}
	str(&c.ProjectID, "project-id", "PROJECT_ID", "Google Cloud project of the topics and the BigQuery dataset (required for Google; default gatekeeper-local otherwise)")
	str(&c.DatasetID, "dataset-id", "DATASET_ID", "BigQuery dataset")
	str(&c.TopicID, "topic-id", "TOPIC_ID", "topic of accepted payloads")
	str(&c.SubscriptionID, "subscription-id", "SUBSCRIPTION_ID", "apply stage's subscription on the topic")
	str(&c.PoisonTopicID, "poison-topic-id", "POISON_TOPIC_ID", "topic of payloads that could not be applied (default TOPIC_ID-poison)")
	str(&c.PoisonSubscriptionID, "poison-subscription-id", "POISON_SUBSCRIPTION_ID", "subscription that keeps poisoned payloads (default SUBSCRIPTION_ID-poison)")
	str(&c.AppliedTopicID, "applied-topic-id", "APPLIED_TOPIC_ID", "topic of applied events (default TOPIC_ID-applied)")
	str(&c.CredentialsFile, "credentials", "GOOGLE_APPLICATION_CREDENTIALS", "service account key file; selects Google Pub/Sub in auto mode")
	fs.Func("pubsub-mode", "auto, embedded, emulator or google (default auto)", func(v string) error {
		c.PubSubMode = pipeline.PubSubMode(v)
		return nil
	})
	ss = append(ss, setting{"pubsub-mode", "PUBSUB_MODE"})
	str(&c.EmulatorHost, "pubsub-emulator-host", "PUBSUB_EMULATOR_HOST", "Pub/Sub emulator host:port; selects emulator mode")
	str(&c.EmbeddedPubSubAddr, "pubsub-embedded-addr", "PUBSUB_EMBEDDED_ADDR", "where the embedded Pub/Sub listens")
	num(&c.EmbeddedMaxBacklog, "embedded-max-backlog", "EMBEDDED_MAX_BACKLOG", "accepted payloads that may wait for the apply stage on the embedded Pub/Sub; past it, 503")
	fs.BoolVar(&c.CreateResources, "create-resources", c.CreateResources, "create missing topics, subscriptions and the BigQuery dataset at start")
	ss = append(ss, setting{"create-resources", "CREATE_RESOURCES"})
	dur(&c.PublishTimeout, "publish-timeout", "PUBLISH_TIMEOUT", "longest wait for Pub/Sub to acknowledge a publish; then 503")
	dur(&c.PublishDelayThreshold, "publish-delay-threshold", "PUBLISH_DELAY_THRESHOLD", "publish batching delay")
	num(&c.ReceiveStreams, "receive-streams", "RECEIVE_STREAMS", "streaming pulls opened by the apply stage")
	num(&c.MaxOutstanding, "max-outstanding", "MAX_OUTSTANDING", "unacknowledged messages the apply stage holds at once")
	fs.Func("stages", "comma-separated stages to run: ingest, apply (default ingest,apply)", func(v string) error {
		c.Stages = nil
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.Stages = append(c.Stages, pipeline.Stage(s))
			}
		}
		return nil
	})
	ss = append(ss, setting{"stages", "STAGES"})
	str(&c.HTTPAddr, "http-addr", "HTTP_ADDR", "HTTP listen address (API, /healthz, /readyz, /metrics)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", c.MaxBodyBytes, "largest accepted request body; larger gets 413")
	ss = append(ss, setting{"max-body-bytes", "MAX_BODY_BYTES"})
	dur(&c.ReadHeaderTimeout, "read-header-timeout", "READ_HEADER_TIMEOUT", "HTTP server ReadHeaderTimeout")
	dur(&c.ReadTimeout, "read-timeout", "READ_TIMEOUT", "HTTP server ReadTimeout")
	dur(&c.WriteTimeout, "write-timeout", "WRITE_TIMEOUT", "HTTP server WriteTimeout; must exceed --publish-timeout")
	dur(&c.IdleTimeout, "idle-timeout", "IDLE_TIMEOUT", "HTTP server IdleTimeout")
	str(&c.Warehouse, "warehouse", "WAREHOUSE", "sqlite:PATH or bigquery")
	str(&c.BigQueryEmulatorHost, "bigquery-emulator-host", "BIGQUERY_EMULATOR_HOST", "BigQuery emulator host:port, for WAREHOUSE=bigquery")
	str(&c.BigQueryLocation, "bigquery-location", "BIGQUERY_LOCATION", "location of a dataset gatekeeper creates, and of its jobs")
	dur(&c.ApplyTimeout, "apply-timeout", "APPLY_TIMEOUT", "longest single apply attempt")
	num(&c.RetryMax, "retry-max", "RETRY_MAX", "retries of a transient apply failure before the payload is poisoned")
	dur(&c.RetryInitial, "retry-initial", "RETRY_INITIAL", "first retry backoff")
	dur(&c.RetryMaxGap, "retry-max-interval", "RETRY_MAX_INTERVAL", "largest retry backoff")
	fs.Float64Var(&c.RetryMultiplier, "retry-multiplier", c.RetryMultiplier, "backoff growth per retry")
	ss = append(ss, setting{"retry-multiplier", "RETRY_MULTIPLIER"})
	fs.Float64Var(&c.RetryJitter, "retry-jitter", c.RetryJitter, "backoff randomization factor, 0..1")
	ss = append(ss, setting{"retry-jitter", "RETRY_JITTER"})
	num(&c.GroupMaxSize, "group-max-size", "GROUP_MAX_SIZE", "most payloads in one warehouse transaction")
	dur(&c.GroupMaxWait, "group-max-wait", "GROUP_MAX_WAIT", "longest wait to fill a group")
	num(&c.GroupMaxInFlight, "group-max-in-flight", "GROUP_MAX_IN_FLIGHT", "groups applied at once (never two on one table)")
	fs.Func("outbox", "keep accepted payloads on local disk until applied: auto (when this process runs the ingest stage on the embedded Pub/Sub or an emulator), on or off (default auto)", func(v string) error {
		c.Outbox = pipeline.OutboxMode(v)
		return nil
	})
	ss = append(ss, setting{"outbox", "OUTBOX"})
	str(&c.OutboxPath, "outbox-path", "OUTBOX_PATH", "the outbox's SQLite file (default beside a SQLite warehouse: NAME-outbox.db; else gatekeeper-outbox.db)")
	dur(&c.OutboxRedeliverAfter, "outbox-redeliver-after", "OUTBOX_REDELIVER_AFTER", "a payload still in the outbox this long is published again while the process runs (then after twice as long, and so on)")
	str(&c.SQLiteSync, "sqlite-sync", "SQLITE_SYNC", "full: every SQLite commit (warehouse, outbox) waits for the disk; normal: survives a process crash, not a power loss")
	dur(&c.UnhealthyAfter, "unhealthy-after", "UNHEALTHY_AFTER", "/healthz answers 503 once Pub/Sub or the warehouse has failed this long without a success")
	dur(&c.ResourceCheckInterval, "resource-check-interval", "RESOURCE_CHECK_INTERVAL", "how often topics and subscriptions are checked (and recreated) and the warehouse probed")
	fs.BoolVar(&c.ExactlyOnceDelivery, "exactly-once-delivery", c.ExactlyOnceDelivery, "enable exactly-once delivery on an apply subscription gatekeeper creates on Google Pub/Sub")
	ss = append(ss, setting{"exactly-once-delivery", "EXACTLY_ONCE_DELIVERY"})
	str(&c.PushgatewayHost, "pushgateway", "PUSHGATEWAY_PROMETHEUS_HOST", "Prometheus Pushgateway host:port; metrics are pushed when set")
	dur(&c.PushInterval, "push-interval", "PUSH_INTERVAL", "how often metrics are pushed")
	dur(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", "longest drain on SIGTERM")
	return ss
}

// applyEnv sets every flag whose environment variable is set, before the
// command line is parsed, so flags win over the environment.
func applyEnv(fs *flag.FlagSet, ss []setting, lookup func(string) (string, bool)) error {
	var errs []error
	for _, s := range ss {
		if v, ok := lookup(s.env); ok && v != "" {
			if err := fs.Set(s.flag, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", s.env, v, err))
			}
		}
	}
	return errors.Join(errs...)
}

// usage prints each flag with the environment variable it falls back to.
func usage(w io.Writer, fs *flag.FlagSet, ss []setting, synopsis string) func() {
	return func() {
		fmt.Fprintf(w, "%s\n\nFlags (each falls back to the environment variable in brackets; flags win):\n", synopsis)
		for _, s := range ss {
			f := fs.Lookup(s.flag)
			text := f.Usage
			if !strings.Contains(text, "(default") && f.DefValue != "" {
				text += " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(w, "  --%s [%s]\n        %s\n", s.flag, s.env, text)
		}
		fmt.Fprintln(w, "\nA .env file in the working directory is read first; the real environment wins over it.")
	}
}

func envLookup(name string) (string, bool) { return os.LookupEnv(name) }
