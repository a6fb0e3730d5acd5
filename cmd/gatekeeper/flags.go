package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// setting ties a flag to the environment variable it reads by default.
// shownDefault, when set, is the default --help and the README show instead
// of the flag's own: one that is derived from other settings (the flag's is
// then zero), or one a Func flag cannot carry.
type setting struct {
	flag, env, shownDefault string
}

// invertedBool is a flag whose true clears a Config field named for the
// opposite (Config's zero value is the default: DoNotCreateResources), so
// that the command line keeps the positive spelling users know
// (CREATE_RESOURCES=false).
type invertedBool struct{ p *bool }

func (b invertedBool) String() string {
	if b.p == nil {
		return "true"
	}
	return strconv.FormatBool(!*b.p)
}

func (b invertedBool) Set(v string) error {
	on, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("want true or false")
	}
	*b.p = !on
	return nil
}

func (invertedBool) IsBoolFlag() bool { return true }

// zeroMeansNone is a numeric flag whose 0 means "none", stored as -1 in a
// Config field whose zero value means its default (RETRY_MAX=0: no
// retries, not the default 5).
type zeroMeansNone[T int | float64 | time.Duration] struct {
	p     *T
	parse func(string) (T, error)
}

func (z zeroMeansNone[T]) String() string {
	if z.p == nil {
		return ""
	}
	if *z.p < 0 {
		return fmt.Sprint(T(0))
	}
	return fmt.Sprint(*z.p)
}

func (z zeroMeansNone[T]) Set(v string) error {
	n, err := z.parse(v)
	if err != nil {
		return err
	}
	if n == 0 {
		n = -1
	}
	*z.p = n
	return nil
}

// bindSettings registers every setting on fs, the logging ones (which are
// not Config fields) first, and returns them in the order --help lists
// them.
func bindSettings(fs *flag.FlagSet, c *pipeline.Config, logLevel, logFormat *string) []setting {
	fs.StringVar(logLevel, "log-level", *logLevel, "debug, info, warn or error")
	fs.StringVar(logFormat, "log-format", *logFormat, "text or json")
	return append([]setting{{flag: "log-level", env: "LOG_LEVEL"}, {flag: "log-format", env: "LOG_FORMAT"}}, bindConfig(fs, c)...)
}

// bindConfig registers one flag per Config field on fs and returns the
// settings in the order --help lists them.
func bindConfig(fs *flag.FlagSet, c *pipeline.Config) []setting {
	var ss []setting
	str := func(p *string, name, env, usage string) {
		fs.StringVar(p, name, *p, usage)
		ss = append(ss, setting{flag: name, env: env})
	}
	dur := func(p *time.Duration, name, env, usage string) {
		fs.DurationVar(p, name, *p, usage)
		ss = append(ss, setting{flag: name, env: env})
	}
	num := func(p *int, name, env, usage string) {
		fs.IntVar(p, name, *p, usage)
		ss = append(ss, setting{flag: name, env: env})
	}
	enum := func(set func(string), name, env, usage, def string) {
		fs.Func(name, usage, func(v string) error { set(v); return nil })
		ss = append(ss, setting{flag: name, env: env, shownDefault: def})
	}
	boolean := func(p *bool, name, env, usage string) {
		fs.BoolVar(p, name, *p, usage)
		ss = append(ss, setting{flag: name, env: env})
	}
	inverted := func(p *bool, name, env, usage string) {
		fs.Var(invertedBool{p}, name, usage)
		ss = append(ss, setting{flag: name, env: env})
	}
	derived := func(def string) { ss[len(ss)-1].shownDefault = def }
	str(&c.ProjectID, "project-id", "PROJECT_ID", "Google Cloud project of the topics and the BigQuery dataset")
	derived("gatekeeper-local; required on Google")
	str(&c.DatasetID, "dataset-id", "DATASET_ID", "BigQuery dataset")
	str(&c.TopicID, "topic-id", "TOPIC_ID", "topic of accepted payloads")
	str(&c.SubscriptionID, "subscription-id", "SUBSCRIPTION_ID", "apply stage's subscription on the topic")
	str(&c.OrderedTopicID, "ordered-topic-id", "ORDERED_TOPIC_ID", "topic of accepted payloads with an ordering key")
	derived("TOPIC_ID-ordered")
	str(&c.OrderedSubscriptionID, "ordered-subscription-id", "ORDERED_SUBSCRIPTION_ID", "apply stage's ordered subscription on the ordered topic")
	derived("SUBSCRIPTION_ID-ordered")
	str(&c.PoisonTopicID, "poison-topic-id", "POISON_TOPIC_ID", "topic of payloads that could not be applied")
	derived("TOPIC_ID-poison")
	str(&c.PoisonSubscriptionID, "poison-subscription-id", "POISON_SUBSCRIPTION_ID", "subscription that keeps poisoned payloads")
	derived("SUBSCRIPTION_ID-poison")
	str(&c.AppliedTopicID, "applied-topic-id", "APPLIED_TOPIC_ID", "topic of applied events")
	derived("TOPIC_ID-applied")
	str(&c.CredentialsFile, "credentials", "GOOGLE_APPLICATION_CREDENTIALS", "service account key file; selects Google Pub/Sub in auto mode")
	enum(func(v string) { c.PubSubMode = pipeline.PubSubMode(v) }, "pubsub-mode", "PUBSUB_MODE", "auto, embedded, emulator or google", string(pipeline.PubSubAuto))
	str(&c.EmulatorHost, "pubsub-emulator-host", "PUBSUB_EMULATOR_HOST", "Pub/Sub emulator host:port; selects emulator mode")
	str(&c.EmbeddedPubSubAddr, "pubsub-embedded-addr", "PUBSUB_EMBEDDED_ADDR", "where the embedded Pub/Sub listens")
	num(&c.EmbeddedMaxBacklog, "embedded-max-backlog", "EMBEDDED_MAX_BACKLOG", "accepted payloads that may wait for the apply stage on the embedded Pub/Sub; past it, 503")
	inverted(&c.DoNotCreateResources, "create-resources", "CREATE_RESOURCES", "create missing topics, subscriptions and the BigQuery dataset at start; false only checks them")
	dur(&c.PublishTimeout, "publish-timeout", "PUBLISH_TIMEOUT", "longest wait for Pub/Sub to acknowledge a publish; then 503")
	fs.Var(zeroMeansNone[time.Duration]{&c.PublishDelayThreshold, time.ParseDuration}, "publish-delay-threshold", "publish batching delay; 0 for none")
	ss = append(ss, setting{flag: "publish-delay-threshold", env: "PUBLISH_DELAY_THRESHOLD"})
	fs.Var(zeroMeansNone[time.Duration]{&c.PublishBusyDelayThreshold, time.ParseDuration}, "publish-busy-delay-threshold",
		"publish batching delay while more than 32 publishes to the same topic are in flight (not on the ordered topic); 0 for PUBLISH_DELAY_THRESHOLD always, as when that is 0")
	ss = append(ss, setting{flag: "publish-busy-delay-threshold", env: "PUBLISH_BUSY_DELAY_THRESHOLD"})
	num(&c.ReceiveStreams, "receive-streams", "RECEIVE_STREAMS", "streaming pulls opened by the apply stage")
	derived("32 on the embedded Pub/Sub, 16 on the emulator, 4 on Google")
	num(&c.MaxOutstanding, "max-outstanding", "MAX_OUTSTANDING", "unacknowledged messages the apply stage holds at once")
	enum(func(v string) {
		c.Stages = nil
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.Stages = append(c.Stages, pipeline.Stage(s))
			}
		}
	}, "stages", "STAGES", "comma-separated stages to run: ingest, apply", "ingest,apply")
	str(&c.HTTPAddr, "http-addr", "HTTP_ADDR", "HTTP listen address (API, /healthz, /readyz, /metrics)")
	str(&c.AdminAddr, "admin-addr", "ADMIN_ADDR", "operators' console listen address (admin API /api/poison, page /ui/poison; needs an admin key with --backends-file), or off")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", c.MaxBodyBytes, "largest accepted request body; larger gets 413")
	ss = append(ss, setting{flag: "max-body-bytes", env: "MAX_BODY_BYTES"})
	dur(&c.IdempotencyTTL, "idempotency-ttl", "IDEMPOTENCY_TTL", "how long an ingestion process remembers an accepted Idempotency-Key for 200 replayed and 422; the ledger dedups after")
	num(&c.IdempotencyMaxKeys, "idempotency-max-keys", "IDEMPOTENCY_MAX_KEYS", "Idempotency-Keys an ingestion process remembers at most; the oldest go first")
	str(&c.BackendsFile, "backends-file", "BACKENDS_FILE", "backends, their API keys (see gatekeeper keys new), quotas and tables, and the admin keys; reloaded on SIGHUP")
	enum(func(v string) { c.Auth = pipeline.AuthMode(v) }, "auth", "AUTH",
		"auto: API keys with --backends-file; without it only the embedded Pub/Sub runs unauthenticated. none: no authentication on any Pub/Sub", string(pipeline.AuthAuto))
	num(&c.MaxInFlightPublishes, "max-in-flight-publishes", "MAX_IN_FLIGHT_PUBLISHES", "payloads the gate publishes at once; past it, 503 (load shedding)")
	fs.Int64Var(&c.MaxInFlightBytes, "max-in-flight-bytes", c.MaxInFlightBytes, "request body bytes handled at once (Content-Length, else --max-body-bytes, reserved before the body is read); past it, 503 (load shedding)")
	ss = append(ss, setting{flag: "max-in-flight-bytes", env: "MAX_IN_FLIGHT_BYTES"})
	dur(&c.ReadHeaderTimeout, "read-header-timeout", "READ_HEADER_TIMEOUT", "HTTP server ReadHeaderTimeout")
	dur(&c.ReadTimeout, "read-timeout", "READ_TIMEOUT", "HTTP server ReadTimeout")
	dur(&c.WriteTimeout, "write-timeout", "WRITE_TIMEOUT", "HTTP server WriteTimeout; must exceed --publish-timeout")
	dur(&c.IdleTimeout, "idle-timeout", "IDLE_TIMEOUT", "HTTP server IdleTimeout")
	str(&c.Warehouse, "warehouse", "WAREHOUSE", "sqlite:PATH or bigquery")
	str(&c.BigQueryEmulatorHost, "bigquery-emulator-host", "BIGQUERY_EMULATOR_HOST", "BigQuery emulator host:port, for WAREHOUSE=bigquery")
	str(&c.BigQueryLocation, "bigquery-location", "BIGQUERY_LOCATION", "location of a dataset gatekeeper creates, and of its jobs")
	dur(&c.ApplyTimeout, "apply-timeout", "APPLY_TIMEOUT", "longest single apply attempt")
	fs.Var(zeroMeansNone[int]{&c.RetryMax, strconv.Atoi}, "retry-max", "retries of a transient apply failure before the payload is poisoned; 0 for none")
	ss = append(ss, setting{flag: "retry-max", env: "RETRY_MAX"})
	dur(&c.RetryInitial, "retry-initial", "RETRY_INITIAL", "first retry backoff")
	dur(&c.RetryMaxInterval, "retry-max-interval", "RETRY_MAX_INTERVAL", "largest retry backoff")
	fs.Float64Var(&c.RetryMultiplier, "retry-multiplier", c.RetryMultiplier, "backoff growth per retry")
	ss = append(ss, setting{flag: "retry-multiplier", env: "RETRY_MULTIPLIER"})
	fs.Var(zeroMeansNone[float64]{&c.RetryJitter, func(v string) (float64, error) { return strconv.ParseFloat(v, 64) }},
		"retry-jitter", "backoff randomization factor, 0..1")
	ss = append(ss, setting{flag: "retry-jitter", env: "RETRY_JITTER"})
	num(&c.GroupMaxSize, "group-max-size", "GROUP_MAX_SIZE", "most payloads in one warehouse transaction")
	dur(&c.GroupMaxWait, "group-max-wait", "GROUP_MAX_WAIT", "longest wait to fill a group")
	num(&c.GroupMaxInFlight, "group-max-in-flight", "GROUP_MAX_IN_FLIGHT", "groups applied at once (never two on one table)")
	enum(func(v string) { c.Outbox = pipeline.OutboxMode(v) }, "outbox", "OUTBOX",
		"keep accepted payloads on local disk until applied: auto (when this process runs the ingest stage on the embedded Pub/Sub or an emulator), on or off", string(pipeline.OutboxAuto))
	str(&c.OutboxPath, "outbox-path", "OUTBOX_PATH", "the outbox's SQLite file")
	derived("beside a SQLite warehouse: NAME-outbox.db; else gatekeeper-outbox.db")
	dur(&c.OutboxRedeliverAfter, "outbox-redeliver-after", "OUTBOX_REDELIVER_AFTER", "a payload still in the outbox this long is published again while the process runs (then after twice as long, and so on)")
	boolean(&c.OutboxAcceptLoss, "outbox-accept-loss", "OUTBOX_ACCEPT_LOSS", "start although the outbox this process kept before is missing, empty or another file, accepting that the payloads waiting in it are lost (logged and counted); for one start, after restoring the file proved impossible")
	str(&c.SQLiteSync, "sqlite-sync", "SQLITE_SYNC", "full: every SQLite commit (warehouse, outbox) waits for the disk; normal: survives a process crash, not a power loss")
	dur(&c.UnhealthyAfter, "unhealthy-after", "UNHEALTHY_AFTER", "/healthz answers 503 once publishing to Pub/Sub or its resource checks have failed this long without a success, or the apply stage is wedged this long")
	dur(&c.LogRepeatInterval, "log-repeat-interval", "LOG_REPEAT_INTERVAL", "a repeated condition is logged once, then as a count at most once per this interval, then once when it ends")
	dur(&c.ResourceCheckInterval, "resource-check-interval", "RESOURCE_CHECK_INTERVAL", "how often topics and subscriptions are checked (and recreated) and the warehouse probed")
	inverted(&c.DisableExactlyOnceDelivery, "exactly-once-delivery", "EXACTLY_ONCE_DELIVERY", "enable exactly-once delivery on an apply subscription gatekeeper creates on Google Pub/Sub")
	enum(func(v string) { c.OrderingPoison = pipeline.OrderingPoison(v) }, "ordering-poison", "ORDERING_POISON",
		"what a poisoned payload does to the later payloads of its ordering key: continue applies them (replay the poisoned one); block holds them until the poisoned one is replayed or purged", string(pipeline.OrderingPoisonContinue))
	num(&c.DeadLetterMaxAttempts, "dead-letter-max-attempts", "DEAD_LETTER_MAX_ATTEMPTS", "5 to 100: an apply subscription gatekeeper creates dead-letters to the poison topic after this many deliveries; 0 for off")
	str(&c.PushgatewayHost, "pushgateway", "PUSHGATEWAY_PROMETHEUS_HOST", "Prometheus Pushgateway host:port; metrics are pushed when set")
	dur(&c.PushInterval, "push-interval", "PUSH_INTERVAL", "how often metrics are pushed")
	str(&c.PushJob, "push-job", "PUSH_JOB", "job label of the pushed metrics (the instance label is the host name)")
	dur(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", "longest drain on SIGTERM")
	dur(&c.ShutdownDelay, "shutdown-delay", "SHUTDOWN_DELAY", "on SIGTERM, how long /readyz answers 503 while the service still serves, before the drain")
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

// defaultText is the default --help and the README show for s.
func defaultText(fs *flag.FlagSet, s setting) string {
	if s.shownDefault != "" {
		return s.shownDefault
	}
	return fs.Lookup(s.flag).DefValue
}

// usage prints the command's own flags, then each setting with the
// environment variable it falls back to and its default.
func usage(w io.Writer, fs *flag.FlagSet, ss []setting, synopsis string) func() {
	return func() {
		fmt.Fprintf(w, "%s\n", synopsis)
		bound := map[string]bool{}
		for _, s := range ss {
			bound[s.flag] = true
		}
		var own []*flag.Flag
		fs.VisitAll(func(f *flag.Flag) {
			if !bound[f.Name] {
				own = append(own, f)
			}
		})
		if len(own) > 0 {
			fmt.Fprintf(w, "\nFlags of this command:\n")
			for _, f := range own {
				text := f.Usage
				// As flag.PrintDefaults: no zero defaults, and none twice.
				if !strings.Contains(text, "(default") && !slices.Contains([]string{"", "0", "0s", "false"}, f.DefValue) {
					text += " (default " + f.DefValue + ")"
				}
				fmt.Fprintf(w, "  --%s\n        %s\n", f.Name, text)
			}
		}
		fmt.Fprintf(w, "\nSettings (each flag falls back to the environment variable in brackets; flags win):\n")
		for _, s := range ss {
			text := fs.Lookup(s.flag).Usage
			if def := defaultText(fs, s); def != "" {
				text += " (default " + def + ")"
			}
			fmt.Fprintf(w, "  --%s [%s]\n        %s\n", s.flag, s.env, text)
		}
		fmt.Fprintln(w, "\nA .env file in the working directory is read first; the real environment wins over it.")
	}
}

func envLookup(name string) (string, bool) { return os.LookupEnv(name) }
