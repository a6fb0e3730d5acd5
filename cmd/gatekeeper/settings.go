package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// loadConfig parses flags over the environment into a Config. own are
// pointers to structs of the command's own flags (kong tags); the
// positional arguments come back in order, wherever they stood among the
// flags. On --help it prints the help on stdout and returns errHelp. Its
// errors name every bad setting and end with a pointer to --help.
func loadConfig(name, synopsis string, args []string, stdout, stderr io.Writer, own ...any) (pipeline.Config, *slog.Logger, []string, error) {
	return loadSettings(name, synopsis, nil, args, stdout, stderr, own...)
}

// loadSettings is loadConfig for a command that reads only the settings
// whose variables reads names (nil: all of them). The others are neither
// flags nor read from the environment, and keep their defaults: --help
// lists only what the command reads, and a bad value of a setting it does
// not read (MAX_BODY_BYTES in the service's environment) is not its problem.
func loadSettings(name, synopsis string, reads []string, args []string, stdout, stderr io.Writer, own ...any) (pipeline.Config, *slog.Logger, []string, error) {
	return load(name, synopsis, reads, false, args, stdout, stderr, own...)
}

// loadValidated is loadConfig for serve: pipeline.Config's Validate
// problems are reported with the values that did not parse.
func loadValidated(name, synopsis string, args []string, stdout, stderr io.Writer, own ...any) (pipeline.Config, *slog.Logger, []string, error) {
	return load(name, synopsis, nil, true, args, stdout, stderr, own...)
}

func load(name, synopsis string, reads []string, validate bool, args []string, stdout, stderr io.Writer, own ...any) (pipeline.Config, *slog.Logger, []string, error) {
	logLevel := "warn"
	if name == "serve" {
		logLevel = "info"
	}
	s, rest, err := parseSome(name, synopsis, reads, args, os.LookupEnv, logLevel, stdout, own...)
	var bad *badValues
	if err == nil || errors.As(err, &bad) && !bad.early {
		// The log level and format, and (validate) the whole configuration, are
		// checked after the parse; what is wrong there is named with the
		// bad values, one problem per line, so that one run shows every
		// problem. A parse that stopped early (an unknown flag) says only
		// that.
		var problems []error
		if bad != nil {
			problems = bad.errs
		}
		problems = append(problems, logProblems(s, args)...)
		if validate {
			if verr := s.config().Validate(); verr != nil {
				problems = append(problems, verr)
			}
		}
		if len(problems) > 0 {
			err = &badValues{name: name, errs: problems}
		}
	}
	if err != nil {
		return pipeline.Config{}, nil, nil, err
	}
	logger, err := newLogger(stderr, s.LogLevel, s.LogFormat)
	return s.config(), logger, rest, err
}

// logProblems names a bad LOG_LEVEL or LOG_FORMAT as the user gave it.
func logProblems(s settings, args []string) []error {
	named := func(flag, env, value string) string {
		if slices.ContainsFunc(args, func(a string) bool { return a == "--"+flag || strings.HasPrefix(a, "--"+flag+"=") }) {
			return fmt.Sprintf("--%s %q", flag, value)
		}
		return fmt.Sprintf("%s=%q", env, value)
	}
	var errs []error
	var level slog.Level
	if level.UnmarshalText([]byte(s.LogLevel)) != nil {
		errs = append(errs, fmt.Errorf("%s: want debug, info, warn or error", named("log-level", "LOG_LEVEL", s.LogLevel)))
	}
	if s.LogFormat != "text" && s.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("%s: want text or json", named("log-format", "LOG_FORMAT", s.LogFormat)))
	}
	return errs
}

// badValues are the problems of one parse, each on its own line, then a
// pointer to the command's --help.
type badValues struct {
	name string
	errs []error
	// early is a parse that stopped at its first problem (an unknown
	// flag): the values after it were not read.
	early bool
}

func (b *badValues) Error() string {
	err := errors.Join(b.errs...)
	sep := "; "
	if strings.Contains(err.Error(), "\n") {
		sep = "\n"
	}
	return fmt.Sprintf("%v%ssee gatekeeper %s --help", err, sep, b.name)
}

func (b *badValues) Unwrap() []error { return b.errs }

// parseSettings is loadConfig's parse, with the environment given.
func parseSettings(name, synopsis string, args []string, lookup func(string) (string, bool), logLevel string,
	stdout io.Writer, own ...any) (settings, []string, error) {
	var c cli
	err := parseInto(&c, name, synopsis, args, lookup, logLevel, stdout, own...)
	return c.Settings, c.Args, err
}

// parseSome is parseSettings for the settings whose variables reads names
// (nil: all): they are bound as a struct of those fields of settings,
// built for the parse, and copied over the defaults of the others.
func parseSome(name, synopsis string, reads []string, args []string, lookup func(string) (string, bool), logLevel string,
	stdout io.Writer, own ...any) (settings, []string, error) {
	if reads == nil {
		return parseSettings(name, synopsis, args, lookup, logLevel, stdout, own...)
	}
	s, _, err := parseSettings(name, "", nil, func(string) (string, bool) { return "", false }, logLevel, io.Discard)
	if err != nil {
		return s, nil, err // a programming error in the tags
	}
	t := reflect.TypeFor[settings]()
	var fields []reflect.StructField
	asks := slices.ContainsFunc(own, func(o any) bool { _, ok := o.(*reachFlags); return ok })
	for i := range t.NumField() {
		if f := t.Field(i); slices.Contains(reads, f.Tag.Get("envvar")) {
			if h, ok := readerHelp[f.Tag.Get("envvar")]; ok && asks {
				f.Tag = reflect.StructTag(strings.Replace(string(f.Tag), `help:`+strconv.Quote(f.Tag.Get("help")), `help:`+strconv.Quote(h), 1))
			}
			fields = append(fields, f)
		}
	}
	if len(fields) != len(reads) {
		panic(fmt.Sprintf("%s reads %v: not every one is a setting", name, reads)) // every test of the command fails here
	}
	some := reflect.New(reflect.StructOf(fields))
	var c flagsOnly
	err = parseInto(&c, name, synopsis, args, lookup, logLevel, stdout, append([]any{some.Interface()}, own...)...)
	sv := reflect.ValueOf(&s).Elem()
	for _, f := range fields {
		sv.FieldByName(f.Name).Set(some.Elem().FieldByName(f.Name))
	}
	return s, c.Args, err
}

// readerHelp is what a setting means to the commands that ask the service,
// where it is not what serve listens on or writes.
var readerHelp = map[string]string{
	"ADMIN_ADDR": "the service's admin listener, asked unless --server or --direct; or off",
	"WAREHOUSE":  "with --direct: the service's warehouse, sqlite:PATH (an existing file) or bigquery",
}

// flagsOnly is the grammar of a command without settings: its own flags
// (embedded) and its positional arguments.
type flagsOnly struct {
	Help helpFlag `name:"help" short:"h" help:"print this help"`
	Args []string `arg:"" optional:"" hidden:""`
}

// parseFlags parses a command that reads no settings, only its own flags.
func parseFlags(name, synopsis string, args []string, stdout io.Writer, own ...any) ([]string, error) {
	var c flagsOnly
	err := parseInto(&c, name, synopsis, args, func(string) (string, bool) { return "", false }, "", stdout, own...)
	return c.Args, err
}

func parseInto(grammar any, name, synopsis string, args []string, lookup func(string) (string, bool), logLevel string,
	stdout io.Writer, own ...any) error {
	p := &parser{lookup: lookup, fromEnv: map[string]string{}}
	opts := append(p.options(), kong.Name("gatekeeper "+name), defaults(logLevel), kong.Writers(stdout, stdout))
	for _, o := range own {
		opts = append(opts, kong.Embed(o))
	}
	k, err := kong.New(grammar, opts...)
	if err != nil {
		return err // a programming error in the tags
	}
	_, err = k.Parse(args)
	if errors.Is(err, errHelp) || errors.Is(err, errHelpAll) {
		printHelp(stdout, k.Model, synopsis, errors.Is(err, errHelpAll))
		return errHelp
	}
	if err == nil && len(p.errs) > 0 {
		return &badValues{name: name, errs: p.errs}
	}
	if err != nil {
		return &badValues{name: name, errs: []error{err}, early: true}
	}
	return nil
}

// settings are the service's settings as a person gives them: each one a
// flag that falls back to the environment variable of its envvar tag (flags
// win), with the value it means. 0 is 0 here (RETRY_MAX=0 is no retries);
// config() turns them into a pipeline.Config, whose zero fields mean
// "default". Field names are pipeline.Config's, so that defaults() can read
// every static default from pipeline.DefaultConfig, their one home.
//
// The essential ones (tag essential) are what most deployments set; serve
// --help shows them, --help-all and docs/configuration.md every one.
//
// A shown tag is the default --help and the docs give for a setting whose
// default is derived from others (the field's default is then empty).
//
// Kong binds them: it reads struct tags, takes flags and positional
// arguments in any order, and leaves the parsing of each value to the
// mappers below, which name the setting and what it expects.
type settings struct {
	LogLevel              string        `name:"log-level" envvar:"LOG_LEVEL" default:"${LOG_LEVEL}" help:"debug, info, warn or error"`
	LogFormat             string        `name:"log-format" envvar:"LOG_FORMAT" default:"text" help:"text or json"`
	ProjectID             string        `name:"project-id" envvar:"PROJECT_ID" essential:"" shown:"gatekeeper-local; required on Google" help:"Google Cloud project of the topics and the BigQuery dataset"`
	DatasetID             string        `name:"dataset-id" envvar:"DATASET_ID" essential:"" default:"${DATASET_ID}" help:"BigQuery dataset"`
	TopicID               string        `name:"topic-id" envvar:"TOPIC_ID" essential:"" default:"${TOPIC_ID}" help:"topic of accepted payloads"`
	SubscriptionID        string        `name:"subscription-id" envvar:"SUBSCRIPTION_ID" essential:"" default:"${SUBSCRIPTION_ID}" help:"apply stage's subscription on the topic"`
	OrderedTopicID        string        `name:"ordered-topic-id" envvar:"ORDERED_TOPIC_ID" shown:"TOPIC_ID-ordered" help:"topic of accepted payloads with an ordering key"`
	OrderedSubscriptionID string        `name:"ordered-subscription-id" envvar:"ORDERED_SUBSCRIPTION_ID" shown:"SUBSCRIPTION_ID-ordered" help:"apply stage's ordered subscription on the ordered topic"`
	PoisonTopicID         string        `name:"poison-topic-id" envvar:"POISON_TOPIC_ID" shown:"TOPIC_ID-poison" help:"topic of payloads that could not be applied"`
	PoisonSubscriptionID  string        `name:"poison-subscription-id" envvar:"POISON_SUBSCRIPTION_ID" shown:"SUBSCRIPTION_ID-poison" help:"subscription that keeps poisoned payloads"`
	AppliedTopicID        string        `name:"applied-topic-id" envvar:"APPLIED_TOPIC_ID" shown:"TOPIC_ID-applied" help:"topic of applied events"`
	CredentialsFile       string        `name:"credentials" placeholder:"FILE" envvar:"GOOGLE_APPLICATION_CREDENTIALS" help:"service account key file; selects Google Pub/Sub in auto mode"`
	PubSubMode            string        `name:"pubsub-mode" envvar:"PUBSUB_MODE" essential:"" default:"${PUBSUB_MODE}" help:"auto, embedded, emulator or google"`
	EmulatorHost          string        `name:"pubsub-emulator-host" placeholder:"HOST:PORT" envvar:"PUBSUB_EMULATOR_HOST" essential:"" help:"Pub/Sub emulator host:port; selects emulator mode"`
	EmbeddedPubSubAddr    string        `name:"pubsub-embedded-addr" placeholder:"HOST:PORT" envvar:"PUBSUB_EMBEDDED_ADDR" default:"${PUBSUB_EMBEDDED_ADDR}" help:"where the embedded Pub/Sub listens"`
	EmbeddedMaxBacklog    int           `name:"embedded-max-backlog" envvar:"EMBEDDED_MAX_BACKLOG" default:"${EMBEDDED_MAX_BACKLOG}" help:"accepted payloads that may wait for the apply stage on the embedded Pub/Sub; past it, 503"`
	CreateResources       bool          `name:"create-resources" envvar:"CREATE_RESOURCES" default:"true" help:"create missing topics, subscriptions and the BigQuery dataset at start; false only checks them"`
	PublishTimeout        time.Duration `name:"publish-timeout" envvar:"PUBLISH_TIMEOUT" default:"${PUBLISH_TIMEOUT}" help:"longest wait for Pub/Sub to acknowledge a publish; then 503"`
	PublishDelayThreshold time.Duration `name:"publish-delay-threshold" envvar:"PUBLISH_DELAY_THRESHOLD" default:"${PUBLISH_DELAY_THRESHOLD}" help:"publish batching delay; 0 for none"`
	ReceiveStreams        int           `name:"receive-streams" envvar:"RECEIVE_STREAMS" shown:"${RECEIVE_STREAMS_EMBEDDED} on the embedded Pub/Sub, ${RECEIVE_STREAMS_EMULATOR} on the emulator, ${RECEIVE_STREAMS_GOOGLE} on Google" help:"streaming pulls opened by the apply stage"`
	MaxOutstanding        int           `name:"max-outstanding" envvar:"MAX_OUTSTANDING" default:"${MAX_OUTSTANDING}" help:"unacknowledged messages the apply stage holds at once"`
	Stages                string        `name:"stages" envvar:"STAGES" default:"${STAGES}" help:"comma-separated stages to run: ingest, apply"`
	HTTPAddr              string        `name:"http-addr" placeholder:"HOST:PORT" envvar:"HTTP_ADDR" essential:"" shown:"127.0.0.1:8080; :8080 with BACKENDS_FILE" help:"HTTP listen address (API, /healthz, /readyz, /metrics); without BACKENDS_FILE only loopback unless set"`
	AdminAddr             string        `name:"admin-addr" placeholder:"HOST:PORT" envvar:"ADMIN_ADDR" essential:"" default:"${ADMIN_ADDR}" help:"operators' console listen address (admin API /api/poison, page /ui/poison; needs an admin key with --backends-file), or off"`
	MaxBodyBytes          int64         `name:"max-body-bytes" envvar:"MAX_BODY_BYTES" default:"${MAX_BODY_BYTES}" help:"largest accepted request body; larger gets 413"`
	IdempotencyTTL        time.Duration `name:"idempotency-ttl" envvar:"IDEMPOTENCY_TTL" default:"${IDEMPOTENCY_TTL}" help:"how long an ingestion process remembers an accepted Idempotency-Key for 200 replayed and 422; the ledger dedups after"`
	IdempotencyMaxKeys    int           `name:"idempotency-max-keys" envvar:"IDEMPOTENCY_MAX_KEYS" default:"${IDEMPOTENCY_MAX_KEYS}" help:"Idempotency-Keys an ingestion process remembers at most; the oldest go first"`
	BackendsFile          string        `name:"backends-file" envvar:"BACKENDS_FILE" essential:"" help:"backends, their API keys (see gatekeeper keys new), quotas and tables, and the admin keys; reloaded on SIGHUP"`
	Auth                  string        `name:"auth" placeholder:"MODE" envvar:"AUTH" default:"${AUTH}" help:"auto: API keys with --backends-file; without it only the embedded Pub/Sub runs unauthenticated. none: no authentication on any Pub/Sub"`
	MaxInFlightPublishes  int           `name:"max-in-flight-publishes" envvar:"MAX_IN_FLIGHT_PUBLISHES" default:"${MAX_IN_FLIGHT_PUBLISHES}" help:"payloads the gate publishes at once; past it, 503 (load shedding)"`
	MaxInFlightBytes      int64         `name:"max-in-flight-bytes" envvar:"MAX_IN_FLIGHT_BYTES" default:"${MAX_IN_FLIGHT_BYTES}" help:"request body bytes handled at once (Content-Length, else --max-body-bytes, reserved before the body is read); past it, 503 (load shedding)"`
	ReadHeaderTimeout     time.Duration `name:"read-header-timeout" envvar:"READ_HEADER_TIMEOUT" default:"${READ_HEADER_TIMEOUT}" help:"HTTP server ReadHeaderTimeout"`
	ReadTimeout           time.Duration `name:"read-timeout" envvar:"READ_TIMEOUT" default:"${READ_TIMEOUT}" help:"HTTP server ReadTimeout"`
	WriteTimeout          time.Duration `name:"write-timeout" envvar:"WRITE_TIMEOUT" default:"${WRITE_TIMEOUT}" help:"HTTP server WriteTimeout; must exceed --publish-timeout"`
	IdleTimeout           time.Duration `name:"idle-timeout" envvar:"IDLE_TIMEOUT" default:"${IDLE_TIMEOUT}" help:"HTTP server IdleTimeout"`
	Warehouse             string        `name:"warehouse" placeholder:"URL" envvar:"WAREHOUSE" essential:"" default:"${WAREHOUSE}" help:"sqlite:PATH or bigquery"`
	BigQueryEmulatorHost  string        `name:"bigquery-emulator-host" placeholder:"HOST:PORT" envvar:"BIGQUERY_EMULATOR_HOST" help:"BigQuery emulator host:port, for WAREHOUSE=bigquery"`
	BigQueryLocation      string        `name:"bigquery-location" envvar:"BIGQUERY_LOCATION" help:"location of a dataset gatekeeper creates, and of its jobs"`
	BigQueryDMLBudget     int           `name:"bigquery-dml-budget" envvar:"BIGQUERY_DML_BUDGET" help:"DML statements per table every 10 s this process runs; BigQuery allows 25 across all processes, so give each of R apply replicas 25/R; 0 for 25"`
	ApplyTimeout          time.Duration `name:"apply-timeout" envvar:"APPLY_TIMEOUT" default:"${APPLY_TIMEOUT}" help:"longest single apply attempt"`
	RetryMax              int           `name:"retry-max" envvar:"RETRY_MAX" default:"${RETRY_MAX}" help:"retries of a transient apply failure before the payload is poisoned; 0 for none"`
	RetryInitial          time.Duration `name:"retry-initial" envvar:"RETRY_INITIAL" default:"${RETRY_INITIAL}" help:"first retry backoff"`
	RetryMaxInterval      time.Duration `name:"retry-max-interval" envvar:"RETRY_MAX_INTERVAL" default:"${RETRY_MAX_INTERVAL}" help:"largest retry backoff"`
	RetryMultiplier       float64       `name:"retry-multiplier" envvar:"RETRY_MULTIPLIER" default:"${RETRY_MULTIPLIER}" help:"backoff growth per retry"`
	RetryJitter           float64       `name:"retry-jitter" envvar:"RETRY_JITTER" default:"${RETRY_JITTER}" help:"backoff randomization factor, 0..1"`
	GroupMaxSize          int           `name:"group-max-size" envvar:"GROUP_MAX_SIZE" default:"${GROUP_MAX_SIZE}" help:"most payloads in one warehouse transaction"`
	GroupMaxWait          time.Duration `name:"group-max-wait" envvar:"GROUP_MAX_WAIT" default:"${GROUP_MAX_WAIT}" help:"longest wait to fill a group"`
	GroupMaxInFlight      int           `name:"group-max-in-flight" envvar:"GROUP_MAX_IN_FLIGHT" default:"${GROUP_MAX_IN_FLIGHT}" help:"groups applied at once (never two on one table)"`
	Outbox                string        `name:"outbox" placeholder:"MODE" envvar:"OUTBOX" default:"${OUTBOX}" help:"keep accepted payloads on local disk until applied: auto (when this process runs the ingest stage on the embedded Pub/Sub or an emulator), on or off"`
	OutboxPath            string        `name:"outbox-path" envvar:"OUTBOX_PATH" shown:"beside a SQLite warehouse: NAME-outbox.db; else gatekeeper-outbox.db" help:"the outbox's SQLite file"`
	OutboxRedeliverAfter  time.Duration `name:"outbox-redeliver-after" envvar:"OUTBOX_REDELIVER_AFTER" default:"${OUTBOX_REDELIVER_AFTER}" help:"a payload still in the outbox this long is published again while the process runs (then after twice as long, and so on)"`
	OutboxAcceptLoss      bool          `name:"outbox-accept-loss" envvar:"OUTBOX_ACCEPT_LOSS" default:"false" help:"start although the outbox this process kept before is missing, empty or another file, accepting that the payloads waiting in it are lost (logged and counted); for one start, after restoring the file proved impossible"`
	SQLiteSync            string        `name:"sqlite-sync" placeholder:"MODE" envvar:"SQLITE_SYNC" default:"${SQLITE_SYNC}" help:"full: every SQLite commit (warehouse, outbox) waits for the disk; normal: survives a process crash, not a power loss"`
	UnhealthyAfter        time.Duration `name:"unhealthy-after" envvar:"UNHEALTHY_AFTER" default:"${UNHEALTHY_AFTER}" help:"/healthz answers 503 once publishing to Pub/Sub or its resource checks have failed this long without a success, or the apply stage is wedged this long"`
	LogRepeatInterval     time.Duration `name:"log-repeat-interval" envvar:"LOG_REPEAT_INTERVAL" default:"${LOG_REPEAT_INTERVAL}" help:"a repeated condition is logged once, then as a count at most once per this interval, then once when it ends"`
	ResourceCheckInterval time.Duration `name:"resource-check-interval" envvar:"RESOURCE_CHECK_INTERVAL" default:"${RESOURCE_CHECK_INTERVAL}" help:"how often topics and subscriptions are checked (and recreated) and the warehouse probed"`
	ExactlyOnceDelivery   bool          `name:"exactly-once-delivery" envvar:"EXACTLY_ONCE_DELIVERY" default:"true" help:"enable exactly-once delivery on an apply subscription gatekeeper creates on Google Pub/Sub"`
	OrderingPoison        string        `name:"ordering-poison" placeholder:"MODE" envvar:"ORDERING_POISON" default:"${ORDERING_POISON}" help:"what a poisoned payload does to the later payloads of its ordering key: continue applies them (replay the poisoned one); block holds them until the poisoned one is replayed or purged"`
	DeadLetterMaxAttempts int           `name:"dead-letter-max-attempts" envvar:"DEAD_LETTER_MAX_ATTEMPTS" default:"0" help:"5 to 100: an apply subscription gatekeeper creates dead-letters to the poison topic after this many deliveries; 0 for off"`
	PushgatewayHost       string        `name:"pushgateway" placeholder:"HOST:PORT" envvar:"PUSHGATEWAY_PROMETHEUS_HOST" help:"Prometheus Pushgateway host:port; metrics are pushed when set"`
	PushInterval          time.Duration `name:"push-interval" envvar:"PUSH_INTERVAL" default:"${PUSH_INTERVAL}" help:"how often metrics are pushed"`
	PushJob               string        `name:"push-job" envvar:"PUSH_JOB" default:"${PUSH_JOB}" help:"job label of the pushed metrics (the instance label is the host name)"`
	ShutdownTimeout       time.Duration `name:"shutdown-timeout" envvar:"SHUTDOWN_TIMEOUT" default:"${SHUTDOWN_TIMEOUT}" help:"longest drain on SIGTERM"`
	ShutdownDelay         time.Duration `name:"shutdown-delay" envvar:"SHUTDOWN_DELAY" default:"0s" help:"on SIGTERM, how long /readyz answers 503 while the service still serves, before the drain"`
}

// none is a setting whose 0 means "none" as pipeline.Config spells it: a
// negative value, since a zero Config field means its default.
func none[T int | float64 | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// config is the pipeline.Config the settings mean. Defaults derived from
// other settings (project, poison and applied names, receive streams, the
// outbox path) stay zero, so that NewService derives them from the final
// values.
func (s settings) config() pipeline.Config {
	c := pipeline.Config{
		ProjectID: s.ProjectID, DatasetID: s.DatasetID, TopicID: s.TopicID, SubscriptionID: s.SubscriptionID,
		OrderedTopicID: s.OrderedTopicID, OrderedSubscriptionID: s.OrderedSubscriptionID,
		PoisonTopicID: s.PoisonTopicID, PoisonSubscriptionID: s.PoisonSubscriptionID, AppliedTopicID: s.AppliedTopicID,
		CredentialsFile: s.CredentialsFile, PubSubMode: pipeline.PubSubMode(s.PubSubMode), EmulatorHost: s.EmulatorHost,
		EmbeddedPubSubAddr: s.EmbeddedPubSubAddr, EmbeddedMaxBacklog: s.EmbeddedMaxBacklog,
		DoNotCreateResources:  !s.CreateResources,
		PublishTimeout:        s.PublishTimeout,
		PublishDelayThreshold: none(s.PublishDelayThreshold),
		ReceiveStreams:        s.ReceiveStreams, MaxOutstanding: s.MaxOutstanding,
		HTTPAddr: s.HTTPAddr, AdminAddr: s.AdminAddr, MaxBodyBytes: s.MaxBodyBytes,
		IdempotencyTTL: s.IdempotencyTTL, IdempotencyMaxKeys: s.IdempotencyMaxKeys,
		BackendsFile: s.BackendsFile, Auth: pipeline.AuthMode(s.Auth),
		MaxInFlightPublishes: s.MaxInFlightPublishes, MaxInFlightBytes: s.MaxInFlightBytes,
		ReadHeaderTimeout: s.ReadHeaderTimeout, ReadTimeout: s.ReadTimeout, WriteTimeout: s.WriteTimeout, IdleTimeout: s.IdleTimeout,
		Warehouse: s.Warehouse, BigQueryEmulatorHost: s.BigQueryEmulatorHost, BigQueryLocation: s.BigQueryLocation,
		BigQueryDMLBudget: s.BigQueryDMLBudget,
		ApplyTimeout:      s.ApplyTimeout,
		RetryMax:          none(s.RetryMax), RetryInitial: s.RetryInitial, RetryMaxInterval: s.RetryMaxInterval,
		RetryMultiplier: s.RetryMultiplier, RetryJitter: none(s.RetryJitter),
		GroupMaxSize: s.GroupMaxSize, GroupMaxWait: s.GroupMaxWait, GroupMaxInFlight: s.GroupMaxInFlight,
		Outbox: pipeline.OutboxMode(s.Outbox), OutboxPath: s.OutboxPath, OutboxRedeliverAfter: s.OutboxRedeliverAfter,
		OutboxAcceptLoss: s.OutboxAcceptLoss, SQLiteSync: s.SQLiteSync,
		UnhealthyAfter: s.UnhealthyAfter, LogRepeatInterval: s.LogRepeatInterval, ResourceCheckInterval: s.ResourceCheckInterval,
		DisableExactlyOnceDelivery: !s.ExactlyOnceDelivery,
		OrderingPoison:             pipeline.OrderingPoison(s.OrderingPoison),
		DeadLetterMaxAttempts:      s.DeadLetterMaxAttempts,
		PushgatewayHost:            s.PushgatewayHost, PushInterval: s.PushInterval, PushJob: s.PushJob,
		ShutdownTimeout: s.ShutdownTimeout, ShutdownDelay: s.ShutdownDelay,
	}
	for _, st := range strings.Split(s.Stages, ",") {
		if st = strings.TrimSpace(st); st != "" {
			c.Stages = append(c.Stages, pipeline.Stage(st))
		}
	}
	if c.HTTPAddr == "" {
		// Derived from BACKENDS_FILE; the commands that ask the service
		// (healthcheck, status) read it too.
		c.HTTPAddr = c.WithDefaults().HTTPAddr
	}
	return c
}

// defaults are the values of the ${NAME} defaults in settings' tags, read
// from pipeline.DefaultConfig by field name, so that no default is written
// twice. logLevel is the command's: tools print results on stdout, and
// their logs stay quiet unless asked.
func defaults(logLevel string) kong.Vars {
	def := reflect.ValueOf(pipeline.DefaultConfig())
	vars := kong.Vars{"LOG_LEVEL": logLevel}
	t := reflect.TypeFor[settings]()
	for i := range t.NumField() {
		f := t.Field(i)
		env := f.Tag.Get("envvar")
		if !strings.Contains(f.Tag.Get("default"), "${"+env+"}") || env == "LOG_LEVEL" {
			continue
		}
		v := def.FieldByName(f.Name)
		if v.Kind() == reflect.Slice { // Stages
			var parts []string
			for j := range v.Len() {
				parts = append(parts, fmt.Sprint(v.Index(j)))
			}
			vars[env] = strings.Join(parts, ",")
			continue
		}
		vars[env] = fmt.Sprint(v)
	}
	return vars
}

// parser binds settings and a command's own flags (structs with kong tags)
// for one parse. Values are parsed by its mappers, which note every bad
// one, naming the setting and what it expects, and carry on, so that one
// run reports them all.
type parser struct {
	lookup func(string) (string, bool)
	errs   []error
	// fromEnv holds the flags whose value came from their variable, so that
	// an error names what the user wrote.
	fromEnv map[string]string
}

// value is one kind of setting: how it is parsed and what it expects.
type value struct {
	want  string
	parse func(string) (any, error)
}

var values = map[reflect.Type]value{
	reflect.TypeFor[string](): {"", func(s string) (any, error) { return s, nil }},
	reflect.TypeFor[int](): {"a whole number, such as 100", func(s string) (any, error) {
		n, err := strconv.ParseInt(s, 0, 0)
		return int(n), err
	}},
	reflect.TypeFor[int64](): {"a whole number of bytes, such as 1048576 (1 MiB); no units", func(s string) (any, error) {
		return strconv.ParseInt(s, 0, 64)
	}},
	reflect.TypeFor[uint64]():  {"a whole number, 0 or more", func(s string) (any, error) { return strconv.ParseUint(s, 0, 64) }},
	reflect.TypeFor[float64](): {"a number, such as 0.5 or 2", func(s string) (any, error) { return strconv.ParseFloat(s, 64) }},
	reflect.TypeFor[bool]():    {"true or false", func(s string) (any, error) { return strconv.ParseBool(s) }},
	reflect.TypeFor[time.Duration](): {"a duration with its unit, such as 10s, 500ms or 1m30s", func(s string) (any, error) {
		return time.ParseDuration(s)
	}},
}

// mapper decodes one value of type t.
func (p *parser) mapper(t reflect.Type, v value) kong.Mapper {
	return mapperFunc{isBool: t.Kind() == reflect.Bool, decode: func(ctx *kong.DecodeContext, target reflect.Value) error {
		if v.isBoolFlag(ctx) {
			target.SetBool(true)
			return nil
		}
		tok, err := ctx.Scan.PopValue(ctx.Value.Name)
		if err != nil {
			return err
		}
		s := fmt.Sprint(tok.Value)
		got, err := v.parse(s)
		if err != nil {
			p.errs = append(p.errs, fmt.Errorf("%s: want %s", p.named(ctx.Value, s), v.want))
			return nil
		}
		target.Set(reflect.ValueOf(got).Convert(target.Type()))
		return nil
	}}
}

// isBoolFlag reports a boolean flag given without a value: --yes.
func (v value) isBoolFlag(ctx *kong.DecodeContext) bool {
	return ctx.Value.IsBool() && ctx.Scan.Peek().Type != kong.FlagValueToken
}

// named says where a bad value came from, as the user wrote it.
func (p *parser) named(v *kong.Value, s string) string {
	if env, ok := p.fromEnv[v.Name]; ok {
		return fmt.Sprintf("%s=%q", env, s)
	}
	return fmt.Sprintf("--%s %q", v.Name, s)
}

type mapperFunc struct {
	isBool bool
	decode func(*kong.DecodeContext, reflect.Value) error
}

func (m mapperFunc) Decode(ctx *kong.DecodeContext, target reflect.Value) error {
	return m.decode(ctx, target)
}
func (m mapperFunc) IsBool() bool { return m.isBool }

// resolve gives a flag not on the command line the value of its
// environment variable. An empty variable counts as unset.
func (p *parser) resolve(_ *kong.Context, _ *kong.Path, f *kong.Flag) (any, error) {
	env := f.Tag.Get("envvar")
	if env == "" {
		return nil, nil
	}
	v, ok := p.lookup(env)
	if !ok || v == "" {
		return nil, nil
	}
	p.fromEnv[f.Name] = env
	return v, nil
}

// options are kong's options for a parse by p.
func (p *parser) options() []kong.Option {
	opts := []kong.Option{kong.NoDefaultHelp(), kong.Resolvers(kong.ResolverFunc(p.resolve))}
	for t, v := range values {
		opts = append(opts, kong.TypeMapper(t, p.mapper(t, v)))
	}
	return opts
}

// errHelp is returned when --help was asked for.
var errHelp = errors.New("help requested")

// helpFlag is --help (-h): the help is printed from the model, on stdout.
type helpFlag bool

func (helpFlag) BeforeReset() error { return errHelp }

// errHelpAll is returned when --help-all was asked for.
var errHelpAll = errors.New("help with every setting requested")

// helpAllFlag is --help-all: the help with every setting, tuning included.
type helpAllFlag bool

func (helpAllFlag) BeforeReset() error { return errHelpAll }

// cli is the grammar of one command: the settings, the command's own
// flags (embedded), and the positional arguments, which may come before,
// between or after the flags.
type cli struct {
	Help     helpFlag    `name:"help" short:"h" help:"print this help"`
	HelpAll  helpAllFlag `name:"help-all" help:"print this help with every setting, the tuning ones too"`
	Settings settings    `embed:""`
	Args     []string    `arg:"" optional:"" hidden:""`
}

// numbers are the named numbers help text shows, each from its one home.
var numbers = strings.NewReplacer(
	"${RECEIVE_STREAMS_EMBEDDED}", strconv.Itoa(pipeline.ReceiveStreamsEmbedded),
	"${RECEIVE_STREAMS_EMULATOR}", strconv.Itoa(pipeline.ReceiveStreamsEmulator),
	"${RECEIVE_STREAMS_GOOGLE}", strconv.Itoa(pipeline.ReceiveStreamsGoogle),
)

// shownDefault is the default --help and the docs show for f.
func shownDefault(f *kong.Flag) string {
	if s := f.Tag.Get("shown"); s != "" {
		return numbers.Replace(s)
	}
	return f.Default
}

// printHelp prints synopsis, the command's own flags, then each setting
// with the environment variable it falls back to and its default: only
// the essential ones of a command that reads them all, unless all.
func printHelp(w io.Writer, app *kong.Application, synopsis string, all bool) {
	fmt.Fprintf(w, "%s\n", synopsis)
	var own, set []*kong.Flag
	tuning := 0
	// Only the grammar of a command that reads every setting (cli) has
	// --help-all.
	every := slices.ContainsFunc(app.Flags, func(f *kong.Flag) bool { return f.Name == "help-all" })
	for _, f := range app.Flags {
		switch {
		case f.Hidden || f.Name == "help" || f.Name == "help-all":
		case f.Tag.Get("envvar") != "" && every && !all && !f.Tag.Has("essential"):
			tuning++
		case f.Tag.Get("envvar") != "":
			set = append(set, f)
		default:
			own = append(own, f)
		}
	}
	if len(own) > 0 {
		fmt.Fprintf(w, "\nFlags of this command:\n")
		for _, f := range own {
			text := f.Help
			if !strings.Contains(text, "(default") && !slices.Contains([]string{"", "0", "0s", "false"}, f.Default) {
				text += " (default " + f.Default + ")"
			}
			name := "--" + f.Name + placeholder(f)
			if f.Short != 0 {
				name = "-" + string(f.Short) + ", " + name
			}
			fmt.Fprintf(w, "  %s\n        %s\n", name, text)
		}
	}
	if len(set) == 0 {
		return
	}
	title := "Settings"
	if tuning > 0 {
		title = "Essential settings"
	}
	fmt.Fprintf(w, "\n%s (each flag falls back to the environment variable in brackets; flags win):\n", title)
	for _, f := range set {
		text := f.Help
		if def := shownDefault(f); def != "" {
			text += " (default " + def + ")"
		}
		fmt.Fprintf(w, "  --%s%s [%s]\n        %s\n", f.Name, placeholder(f), f.Tag.Get("envvar"), text)
	}
	if tuning > 0 {
		fmt.Fprintf(w, "\n%d more settings tune it: --help-all lists every one, as docs/configuration.md does.\n", tuning)
	}
	fmt.Fprintln(w, "\nA .env file in the working directory is read first; the real environment wins over it.")
}

// placeholder is what --help shows after a flag for its value, " N" in
// "--rate N": the flag's placeholder tag, else one by the value's kind. A
// boolean flag takes none.
func placeholder(f *kong.Flag) string {
	switch {
	case f.IsBool():
		return ""
	case f.PlaceHolder != "":
		return " " + f.PlaceHolder
	}
	switch f.Target.Kind() {
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Float64:
		if f.Target.Type() == reflect.TypeFor[time.Duration]() {
			return " DURATION"
		}
		return " N"
	}
	words := strings.Split(f.Name, "-")
	return " " + strings.ToUpper(words[len(words)-1])
}

// settingFlags are the settings' flags, in --help's order, with the
// defaults of a command whose logs default to logLevel.
func settingFlags(logLevel string) []*kong.Flag {
	p := &parser{lookup: func(string) (string, bool) { return "", false }, fromEnv: map[string]string{}}
	k, err := kong.New(&cli{}, append(p.options(), defaults(logLevel))...)
	if err != nil {
		panic(err) // the tags are wrong: every test fails here
	}
	var fs []*kong.Flag
	for _, f := range k.Model.Flags {
		if f.Tag.Get("envvar") != "" {
			fs = append(fs, f)
		}
	}
	return fs
}
