package pipeline

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
	"github.com/gatekeeper/gatekeeper/pipeline/pause"
)

// Stage names one half of the pipeline.
type Stage string

const (
	// StageIngest serves POST /api/activities and publishes accepted payloads.
	StageIngest Stage = "ingest"
	// StageApply consumes accepted payloads and applies them to the warehouse.
	StageApply Stage = "apply"
)

// PubSubMode says which Pub/Sub the service talks to.
type PubSubMode string

const (
	// PubSubAuto picks emulator when PUBSUB_EMULATOR_HOST is set, Google when
	// credentials are configured, and embedded otherwise.
	PubSubAuto     PubSubMode = "auto"
	PubSubEmulator PubSubMode = "emulator"
	PubSubGoogle   PubSubMode = "google"
	PubSubEmbedded PubSubMode = "embedded"
)

// OutboxMode says whether accepted payloads are kept on local disk until
// applied (see package outbox).
type OutboxMode string

const (
	// OutboxAuto keeps the outbox when this process runs the ingest stage on
	// the embedded Pub/Sub or the emulator, the two that lose messages when
	// they stop (or, the emulator, when a consumer is killed).
	OutboxAuto OutboxMode = "auto"
	// OutboxOn keeps it on Google Pub/Sub too.
	OutboxOn  OutboxMode = "on"
	OutboxOff OutboxMode = "off"
)

// OrderingPoison says what a poisoned payload does to the later payloads of
// its ordering key.
type OrderingPoison string

const (
	// OrderingPoisonContinue applies the later payloads of the key; the
	// operator replays the poisoned one, which then applies after them.
	OrderingPoisonContinue OrderingPoison = "continue"
	// OrderingPoisonBlock holds the key until an operator replays or purges
	// the poisoned payload: its later payloads are nacked, not applied.
	OrderingPoisonBlock OrderingPoison = "block"
)

// AuthMode says whether the ingestion API asks for API keys.
type AuthMode string

const (
	// AuthAuto asks for keys when BACKENDS_FILE is set; without it, only
	// the embedded Pub/Sub runs unauthenticated, and any other mode
	// refuses to start.
	AuthAuto AuthMode = "auto"
	// AuthNone runs without authentication, on any Pub/Sub, when
	// BACKENDS_FILE is not set.
	AuthNone AuthMode = "none"
)

// Config is everything the service needs. Field comments name the
// environment variable; cmd/gatekeeper maps flags and environment onto it.
type Config struct {
	// ProjectID (PROJECT_ID) is the Google Cloud project of the topics and,
	// for WAREHOUSE=bigquery, of the dataset. Required in google mode;
	// defaults to "gatekeeper-local" for the emulator and embedded modes.
	ProjectID string
	// DatasetID (DATASET_ID) is the BigQuery dataset. Optional, default "gatekeeper".
	DatasetID string
	// TopicID (TOPIC_ID) carries accepted payloads. Optional, default "db-transaction-topic".
	TopicID string
	// SubscriptionID (SUBSCRIPTION_ID) is the apply stage's subscription on
	// TopicID. Optional, default "db-sub".
	SubscriptionID string
	// OrderedTopicID (ORDERED_TOPIC_ID) carries the accepted payloads that
	// have an ordering key; TopicID carries the others. They are apart
	// because an ordered subscription is slow for everything it delivers:
	// the emulator hands out about 100 messages per stream at a time and
	// slows as its backlog grows (53 payloads/s from a backlog of 100,000,
	// against 9,500/s unordered), and Pub/Sub has no filter the emulator
	// honours. Optional, default TopicID + "-ordered".
	OrderedTopicID string
	// OrderedSubscriptionID (ORDERED_SUBSCRIPTION_ID) is the apply stage's
	// ordered subscription on OrderedTopicID. Optional, default
	// SubscriptionID + "-ordered".
	OrderedSubscriptionID string
	// PoisonTopicID (POISON_TOPIC_ID): payloads that cannot be applied.
	// Optional, default TopicID + "-poison".
	PoisonTopicID string
	// PoisonSubscriptionID (POISON_SUBSCRIPTION_ID) keeps poisoned payloads
	// until an operator reads or replays them. Optional, default
	// SubscriptionID + "-poison".
	PoisonSubscriptionID string
	// AppliedTopicID (APPLIED_TOPIC_ID): one event per applied payload.
	// Optional, default TopicID + "-applied".
	AppliedTopicID string
	// CredentialsFile (GOOGLE_APPLICATION_CREDENTIALS) selects google mode
	// under PubSubAuto. Optional.
	CredentialsFile string
	// PubSubMode (PUBSUB_MODE). Optional, default auto.
	PubSubMode PubSubMode
	// EmulatorHost (PUBSUB_EMULATOR_HOST) is a Pub/Sub emulator's host:port.
	// Optional.
	EmulatorHost string
	// EmbeddedPubSubAddr (PUBSUB_EMBEDDED_ADDR) is where the embedded Pub/Sub
	// listens, so other processes can share it through PUBSUB_EMULATOR_HOST.
	// Optional, default "127.0.0.1:8086".
	EmbeddedPubSubAddr string
	// EmbeddedMaxBacklog (EMBEDDED_MAX_BACKLOG) is how many accepted payloads
	// may wait for the apply stage while both run on the embedded Pub/Sub;
	// past it the gate answers 503. The embedded server keeps its backlog in
	// memory and slows down as it grows, so this bounds both. Optional,
	// default 10,000.
	EmbeddedMaxBacklog int
	// DoNotCreateResources (CREATE_RESOURCES=false) only checks that the
	// topics, subscriptions and, for WAREHOUSE=bigquery, the dataset exist,
	// where they are managed as infrastructure: start fails (or, for an
	// ingest-only process, readiness waits) while any is missing. Optional;
	// by default gatekeeper creates what is missing.
	DoNotCreateResources bool
	// PublishTimeout (PUBLISH_TIMEOUT) bounds one publish; past it the HTTP
	// client gets 503. Optional, default 10s.
	PublishTimeout time.Duration
	// PublishDelayThreshold (PUBLISH_DELAY_THRESHOLD) is how long the Pub/Sub
	// client waits to batch publishes. Each HTTP request waits for its own
	// publish, so under light load this adds straight to latency, and it
	// caps a client that posts one payload at a time (and every ordering
	// key, whose batches go one after another); under load it fills the
	// publish RPCs, each of which costs the Pub/Sub server CPU. Optional,
	// default 1ms: 5ms took a one-connection client from 420 to 145
	// payloads/s, and a longer delay taken only under load bought nothing
	// clear of the noise (see bench/RESULTS.md). A negative value means no
	// delay (what PUBLISH_DELAY_THRESHOLD=0 sets, since the zero value means
	// the default).
	PublishDelayThreshold time.Duration
	// ReceiveStreams (RECEIVE_STREAMS) is the number of streaming pulls the
	// apply stage opens on each of its two subscriptions. The embedded
	// server hands each stream at most one message per 10 ms tick, so it
	// needs many. The emulator needs several: what it handed to a killed
	// process's streams it keeps for minutes, and more streams take the
	// outbox's republished copies sooner (the fault suite settled in
	// 3.3-4.2 minutes with 4 streams, 0.9-2.3 with 32). But it also keeps
	// about one thread per stream a client ever opened, for good (36 more
	// per start of the whole service at 32 streams on one subscription,
	// 67-74 with two; one test-suite run at 2 x 32 left it 4,400 threads and
	// the machine at load 700). 16 on each of the two subscriptions opens
	// as many as 32 did on one. Optional, default 32 for the embedded
	// Pub/Sub, 16 for the emulator, 4 for Google (derived, see
	// DefaultConfig).
	ReceiveStreams int
	// MaxOutstanding (MAX_OUTSTANDING) is how many messages the apply stage
	// holds unacknowledged at once, which bounds how large a group can get.
	// Optional, default 1000.
	MaxOutstanding int

	// Stages (STAGES) this process runs. Optional, default both.
	Stages []Stage
	// HTTPAddr (HTTP_ADDR) is where the ingestion API, /healthz, /readyz and
	// /metrics listen. Optional, default "127.0.0.1:8080" without
	// BACKENDS_FILE, ":8080" with it: an unauthenticated ingestion API
	// listens on every interface only when told so.
	HTTPAddr string
	// AdminAddr (ADMIN_ADDR) is where the operators' console listens: the
	// admin API (/api/poison…) and the page /ui/poison.
	// With BACKENDS_FILE it needs an admin key; it is kept off the
	// ingestion port and, by default, on loopback; "off" turns it off.
	// Optional, default "127.0.0.1:8081".
	AdminAddr string
	// MaxBodyBytes (MAX_BODY_BYTES) is the largest accepted request body.
	// Optional, default 1 MiB.
	MaxBodyBytes int64
	// IdempotencyTTL (IDEMPOTENCY_TTL) is how long an ingestion process
	// remembers an accepted Idempotency-Key, to answer its retries 200
	// (Idempotent-Replayed) or 422 without publishing. Past it, and after a
	// restart, the ledger still makes a retry a duplicate. Optional,
	// default 24h.
	IdempotencyTTL time.Duration
	// IdempotencyMaxKeys (IDEMPOTENCY_MAX_KEYS) bounds the keys remembered;
	// the oldest are forgotten first. Optional, default 100000.
	IdempotencyMaxKeys int
	// BackendsFile (BACKENDS_FILE) lists the backends, their API keys,
	// quotas and tables, and the admin keys (YAML or JSON; see package
	// frontdoor). Reloaded on SIGHUP. Optional; without it the ingestion
	// API is unauthenticated, which only the embedded Pub/Sub or AUTH=none
	// allows.
	BackendsFile string
	// Auth (AUTH) is auto or none. Optional, default auto.
	Auth AuthMode
	// MaxInFlightPublishes (MAX_IN_FLIGHT_PUBLISHES) bounds the payloads
	// the gate records and publishes at once; past it, 503 with
	// Retry-After. Optional, default 2,000.
	MaxInFlightPublishes int
	// MaxInFlightBytes (MAX_IN_FLIGHT_BYTES) bounds the request body bytes
	// the ingestion stage handles at once: a request reserves its
	// Content-Length (MAX_BODY_BYTES when it sends none) before its body is
	// read, and frees it when its answer is written; past the bound it is
	// shed with 503 and Retry-After. It is what bounds the process's memory
	// under a burst of large payloads. A request alone is always admitted,
	// however large. Optional, default 256 MiB.
	MaxInFlightBytes int64
	// ReadTimeout, WriteTimeout, IdleTimeout, ReadHeaderTimeout bound the
	// HTTP server. Optional, defaults 30s, 30s, 120s, 5s.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration

	// Warehouse (WAREHOUSE) is "sqlite:PATH" or "bigquery". Optional,
	// default "sqlite:gatekeeper.db".
	Warehouse string
	// BigQueryEmulatorHost (BIGQUERY_EMULATOR_HOST) points WAREHOUSE=bigquery
	// at an emulator's host:port. Optional.
	BigQueryEmulatorHost string
	// BigQueryLocation (BIGQUERY_LOCATION) is where a dataset gatekeeper
	// creates lives and its jobs run. Optional, BigQuery's default.
	BigQueryLocation string
	// BigQueryDMLBudget (BIGQUERY_DML_BUDGET) is how many DML statements
	// per table every 10 s this process runs (bigquery.Config.DMLBudget).
	// Optional, default 25, BigQuery's rate across every process.
	BigQueryDMLBudget int
	// ApplyTimeout (APPLY_TIMEOUT) bounds one apply attempt. Optional, default 60s.
	ApplyTimeout time.Duration
	// Retry of transient apply failures. Optional, defaults: 5 retries, 100ms
	// initial, 10s max interval, multiplier 2, randomization 0.5. A negative
	// RetryMax means no retries and a negative RetryJitter no randomization
	// (what RETRY_MAX=0 and RETRY_JITTER=0 set, since the zero value means
	// the default).
	RetryMax                       int
	RetryInitial, RetryMaxInterval time.Duration
	RetryMultiplier                float64
	RetryJitter                    float64
	// Group commit: MaxSize payloads or MaxWait, whichever first; at most
	// MaxInFlight groups apply at once. Optional, defaults 200, 2ms, 4.
	GroupMaxSize     int
	GroupMaxWait     time.Duration
	GroupMaxInFlight int

	// Outbox (OUTBOX) is auto, on or off. Optional, default auto. An ingest
	// stage running without the apply stage follows the applied and poison
	// topics, through subscriptions of its own, to learn what is settled.
	Outbox OutboxMode
	// OutboxPath (OUTBOX_PATH) is the outbox's SQLite file. Optional,
	// default beside a SQLite warehouse (gatekeeper.db → gatekeeper-outbox.db),
	// else gatekeeper-outbox.db in the working directory.
	OutboxPath string
	// OutboxRedeliverAfter (OUTBOX_REDELIVER_AFTER): a payload still in the
	// outbox after this long is published again while the process runs,
	// then after twice as long, and so on. Optional, default 2m.
	OutboxRedeliverAfter time.Duration
	// OutboxAcceptLoss (OUTBOX_ACCEPT_LOSS) lets the service start when the
	// outbox file it kept before is missing, empty or another one: the
	// payloads answered 200 that were waiting in it are lost. Without it
	// the service refuses to start and says how to restore the file. The
	// loss is logged and counted, and the new file's identity recorded.
	// Meant for one start: set, it accepts every later loss too. Optional,
	// default false.
	OutboxAcceptLoss bool
	// SQLiteSync (SQLITE_SYNC) is "full" or "normal", for the SQLite
	// warehouse and the outbox alike: full waits for the disk at every
	// commit; normal survives a crash of the process but not a power loss.
	// Optional, default full.
	SQLiteSync string
	// UnhealthyAfter (UNHEALTHY_AFTER): when publishing to Pub/Sub or its
	// resource checks have failed for this long without a success, or the
	// apply stage has held payloads this long without committing while the
	// warehouse answers, /healthz answers 503 so that an orchestrator
	// restarts the process. What a restart cannot mend (a corrupt or full
	// warehouse, a full disk) stays 200, named as degraded. Optional,
	// default 5m.
	UnhealthyAfter time.Duration
	// LogRepeatInterval (LOG_REPEAT_INTERVAL): a condition that repeats (the
	// outbox's writes failing, requests answered 503 for one cause, a
	// Pub/Sub resource missing) is logged once when it starts, then at most
	// once per this interval with the count since the last line, then once
	// when it ends. Optional, default 1m.
	LogRepeatInterval time.Duration
	// ResourceCheckInterval (RESOURCE_CHECK_INTERVAL) is how often the
	// service checks that its topics and subscriptions exist (recreating
	// them when CREATE_RESOURCES allows) and probes the warehouse.
	// Optional, default 5s.
	ResourceCheckInterval time.Duration
	// DisableExactlyOnceDelivery (EXACTLY_ONCE_DELIVERY=false) creates the
	// apply subscription without Pub/Sub's exactly-once delivery. Optional;
	// by default a subscription gatekeeper creates on Google Pub/Sub has it
	// (emulators ignore it).
	DisableExactlyOnceDelivery bool
	// DeadLetterMaxAttempts (DEAD_LETTER_MAX_ATTEMPTS), 5 to 100, gives the
	// apply subscription a dead-letter policy to the poison topic when
	// gatekeeper creates it: a payload whose handler crashes the process
	// again and again still lands in the poison topic, and the index,
	// after that many deliveries. On Google Pub/Sub the project's Pub/Sub
	// service agent needs publisher on the poison topic and subscriber on
	// the apply subscription. Optional, default 0 (off).
	DeadLetterMaxAttempts int
	// OrderingPoison (ORDERING_POISON) is what a poisoned payload does to
	// the later payloads of its ordering key: continue applies them; block
	// holds them until an operator replays or purges the poisoned payload.
	// Optional, default continue.
	OrderingPoison OrderingPoison

	// PushgatewayHost (PUSHGATEWAY_PROMETHEUS_HOST) receives metrics every
	// PushInterval when set. Optional.
	PushgatewayHost string
	// PushInterval (PUSH_INTERVAL). Optional, default 15s.
	PushInterval time.Duration
	// PushJob (PUSH_JOB) is the job label of the pushed group (its instance
	// label is the host name), so that deployments sharing a Pushgateway
	// keep apart. Optional, default "gatekeeper".
	PushJob string
	// ShutdownTimeout (SHUTDOWN_TIMEOUT) bounds draining on SIGTERM. Optional, default 30s.
	ShutdownTimeout time.Duration
	// ShutdownDelay (SHUTDOWN_DELAY): on SIGTERM, /readyz answers 503 for
	// this long while the service still serves, so that a load balancer
	// stops sending before the listener closes; the drain follows.
	// Optional, default 0 (no delay).
	ShutdownDelay time.Duration
}

// DefaultConfig returns the defaults that hold whatever else is set. The
// ones derived from other settings stay zero here, because they can only be
// derived from the final values: ProjectID (for the emulators), the poison
// and applied names, ReceiveStreams (by Pub/Sub mode) and OutboxPath (beside
// the warehouse). NewService derives them; WithDefaults shows the result.
// The zero Config means the same as DefaultConfig: this is what the command
// line starts from and what --help shows.
func DefaultConfig() Config {
	var c Config
	c.setStaticDefaults()
	return c
}

// WithDefaults returns c with every default applied, derived ones included:
// the configuration NewService runs.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

// The default HTTP_ADDR: every interface with BACKENDS_FILE, loopback
// without it (see Config.HTTPAddr).
const (
	DefaultHTTPAddr                = ":8080"
	DefaultHTTPAddrUnauthenticated = "127.0.0.1:8080"
)

// The default RECEIVE_STREAMS by Pub/Sub mode (see Config.ReceiveStreams).
const (
	ReceiveStreamsEmbedded = 32
	ReceiveStreamsEmulator = 16
	ReceiveStreamsGoogle   = 4
)

func (c *Config) setDefaults() {
	c.setStaticDefaults()
	setDefault(&c.PoisonTopicID, c.TopicID+"-poison")
	setDefault(&c.PoisonSubscriptionID, c.SubscriptionID+"-poison")
	setDefault(&c.AppliedTopicID, c.TopicID+"-applied")
	setDefault(&c.OrderedTopicID, c.TopicID+"-ordered")
	setDefault(&c.OrderedSubscriptionID, c.SubscriptionID+"-ordered")
	switch c.ResolvedPubSubMode() {
	case PubSubEmbedded:
		setDefault(&c.ReceiveStreams, ReceiveStreamsEmbedded)
	case PubSubEmulator:
		setDefault(&c.ReceiveStreams, ReceiveStreamsEmulator)
	}
	setDefault(&c.ReceiveStreams, ReceiveStreamsGoogle)
	// Without keys (AUTH=none, or the embedded mode without BACKENDS_FILE)
	// anyone who reaches the port writes to the warehouse: loopback,
	// unless HTTP_ADDR says otherwise.
	if c.BackendsFile == "" {
		setDefault(&c.HTTPAddr, DefaultHTTPAddrUnauthenticated)
	}
	setDefault(&c.HTTPAddr, DefaultHTTPAddr)
	setDefault(&c.OutboxPath, defaultOutboxPath(c.Warehouse))
	if c.ResolvedPubSubMode() != PubSubGoogle && !c.usesGoogleBigQuery() {
		setDefault(&c.ProjectID, "gatekeeper-local")
	}
}

func (c *Config) setStaticDefaults() {
	setDefault(&c.DatasetID, "gatekeeper")
	setDefault(&c.TopicID, "db-transaction-topic")
	setDefault(&c.SubscriptionID, "db-sub")
	setDefault(&c.PubSubMode, PubSubAuto)
	setDefault(&c.EmbeddedPubSubAddr, "127.0.0.1:8086")
	setDefault(&c.EmbeddedMaxBacklog, 10_000)
	setDefault(&c.PublishTimeout, 10*time.Second)
	setDefault(&c.PublishDelayThreshold, time.Millisecond)
	setDefault(&c.MaxOutstanding, 1000)
	if len(c.Stages) == 0 {
		c.Stages = []Stage{StageIngest, StageApply}
	}
	setDefault(&c.AdminAddr, "127.0.0.1:8081")
	setDefault(&c.MaxBodyBytes, 1<<20)
	setDefault(&c.IdempotencyTTL, 24*time.Hour)
	setDefault(&c.IdempotencyMaxKeys, 100_000)
	setDefault(&c.Auth, AuthAuto)
	setDefault(&c.MaxInFlightPublishes, 2000)
	setDefault(&c.MaxInFlightBytes, 256<<20)
	setDefault(&c.ReadHeaderTimeout, 5*time.Second)
	setDefault(&c.ReadTimeout, 30*time.Second)
	setDefault(&c.WriteTimeout, 30*time.Second)
	setDefault(&c.IdleTimeout, 120*time.Second)
	setDefault(&c.Warehouse, "sqlite:gatekeeper.db")
	setDefault(&c.ApplyTimeout, 60*time.Second)
	setDefault(&c.RetryMax, 5)
	setDefault(&c.RetryInitial, 100*time.Millisecond)
	setDefault(&c.RetryMaxInterval, 10*time.Second)
	setDefault(&c.RetryMultiplier, 2)
	setDefault(&c.RetryJitter, 0.5)
	setDefault(&c.GroupMaxSize, 200)
	setDefault(&c.GroupMaxWait, 2*time.Millisecond)
	setDefault(&c.GroupMaxInFlight, 4)
	setDefault(&c.Outbox, OutboxAuto)
	setDefault(&c.OutboxRedeliverAfter, 2*time.Minute)
	setDefault(&c.OrderingPoison, OrderingPoisonContinue)
	setDefault(&c.SQLiteSync, "full")
	setDefault(&c.UnhealthyAfter, 5*time.Minute)
	setDefault(&c.LogRepeatInterval, time.Minute)
	setDefault(&c.ResourceCheckInterval, 5*time.Second)
	setDefault(&c.PushInterval, 15*time.Second)
	setDefault(&c.PushJob, "gatekeeper")
	setDefault(&c.ShutdownTimeout, 30*time.Second)
}

func defaultOutboxPath(warehouse string) string {
	const name = "gatekeeper-outbox.db"
	spec, err := ParseWarehouse(warehouse)
	if err != nil || spec.Kind != WarehouseSQLite {
		return name
	}
	return strings.TrimSuffix(spec.Path, filepath.Ext(spec.Path)) + "-outbox.db"
}

// AdminOff is the ADMIN_ADDR that turns the operators' console off.
const AdminOff = "off"

// OutboxEnabled reports whether this process keeps accepted payloads in
// the outbox.
func (c Config) OutboxEnabled() bool {
	switch c.Outbox {
	case OutboxOff:
		return false
	case OutboxOn:
		return true
	}
	return c.Runs(StageIngest) && c.ResolvedPubSubMode() != PubSubGoogle
}

// outboxSubscription names this process's subscription on the applied or
// poison topic: one per outbox file, so that each ingest replica sees
// every event, not a share of them. The file is its host and absolute
// path (outbox.Place): replicas on several hosts often keep their outboxes at
// the same path, and the subscription's existence is also Pub/Sub's record
// that an outbox lived there (outbox.Keeper), which a new replica
// must not mistake for its own.
func (c Config) outboxSubscription(topic string) string {
	place := outbox.PlaceOf(c.OutboxPath)
	h := fnv.New32a()
	h.Write([]byte(place.Host + "\x00" + place.Path))
	return fmt.Sprintf("%s-outbox-%s-%08x", c.SubscriptionID, topic, h.Sum32())
}

// OutboxFollowsTopics reports whether this process learns which outboxed
// payloads were settled from the applied and poison topics, because its
// own apply stage is not the one settling them (the stages run apart).
func (c Config) OutboxFollowsTopics() bool {
	return c.OutboxEnabled() && !c.Runs(StageApply)
}

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

// usesGoogleBigQuery reports whether the apply stage talks to BigQuery
// itself rather than an emulator.
func (c Config) usesGoogleBigQuery() bool {
	spec, err := ParseWarehouse(c.Warehouse)
	return err == nil && spec.Kind == WarehouseBigQuery && c.BigQueryEmulatorHost == "" && c.Runs(StageApply)
}

// maxHandlingTime bounds how long the apply stage may hold one message:
// every attempt at its longest and every backoff between them, plus a
// margin for the group it waits in.
func (c Config) maxHandlingTime() time.Duration {
	return time.Duration(c.retries()+1)*c.ApplyTimeout + time.Duration(c.retries())*c.RetryMaxInterval + time.Minute
}

// maxLeaseTime bounds how long the apply stage may keep one message
// leased: held while the stage is paused (pause.DefaultHoldMax, then it is given
// back), then handled.
func (c Config) maxLeaseTime() time.Duration {
	return pause.DefaultHoldMax + c.maxHandlingTime()
}

// retries, jitter and publishDelay are RetryMax, RetryJitter and
// PublishDelayThreshold with "none" (negative) as zero.
func (c Config) retries() int                { return max(c.RetryMax, 0) }
func (c Config) jitter() float64             { return max(c.RetryJitter, 0) }
func (c Config) publishDelay() time.Duration { return max(c.PublishDelayThreshold, 0) }

// ResolvedPubSubMode turns PubSubAuto into the mode the environment asks for.
func (c Config) ResolvedPubSubMode() PubSubMode {
	switch {
	case c.PubSubMode != "" && c.PubSubMode != PubSubAuto:
		return c.PubSubMode
	case c.EmulatorHost != "":
		return PubSubEmulator
	case c.CredentialsFile != "":
		return PubSubGoogle
	default:
		return PubSubEmbedded
	}
}

// Runs reports whether this process runs stage s.
func (c Config) Runs(s Stage) bool {
	return slices.Contains(c.Stages, s)
}

// ValidatePubSub reports the problems that would send a Pub/Sub client
// made with ClientOptions somewhere other than the Pub/Sub c names: a tool
// that only reads or writes topics (gatekeeper loadgen --e2e) checks these
// and not the rest of Validate, which is about running the service.
func (c Config) ValidatePubSub() error {
	c.setDefaults()
	return errors.Join(c.pubSubProblems()...)
}

// pubSubProblems are the first problems Validate reports.
func (c Config) pubSubProblems() []error {
	var errs []error
	switch c.PubSubMode {
	case PubSubAuto, PubSubEmulator, PubSubGoogle, PubSubEmbedded:
	default:
		errs = append(errs, fmt.Errorf("PUBSUB_MODE %q: want auto, emulator, google or embedded", c.PubSubMode))
	}
	mode := c.ResolvedPubSubMode()
	if mode == PubSubEmulator && c.EmulatorHost == "" {
		errs = append(errs, errors.New("PUBSUB_MODE=emulator needs PUBSUB_EMULATOR_HOST"))
	}
	if (mode == PubSubGoogle || c.usesGoogleBigQuery()) && c.ProjectID == "" {
		errs = append(errs, errors.New("PROJECT_ID is required for Google Pub/Sub and BigQuery"))
	}
	return errs
}

// Validate reports every problem with c at once, in a fixed order (the
// order of docs/configuration.md's table, roughly), so that the same
// configuration always gives the same message.
func (c Config) Validate() error {
	// The zero value of a field means its default.
	c.setDefaults()
	errs := c.pubSubProblems()
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	mode := c.ResolvedPubSubMode()
	if mode == PubSubEmbedded {
		if _, _, err := net.SplitHostPort(c.EmbeddedPubSubAddr); err != nil {
			bad("PUBSUB_EMBEDDED_ADDR %q: want HOST:PORT, such as 127.0.0.1:8086 (%v)", c.EmbeddedPubSubAddr, err)
		}
		if c.DoNotCreateResources {
			bad("CREATE_RESOURCES=false cannot work with the embedded Pub/Sub: it starts empty every time")
		}
	}
	for _, n := range []struct{ env, id string }{
		{"TOPIC_ID", c.TopicID}, {"SUBSCRIPTION_ID", c.SubscriptionID},
		{"POISON_TOPIC_ID", c.PoisonTopicID}, {"POISON_SUBSCRIPTION_ID", c.PoisonSubscriptionID},
		{"APPLIED_TOPIC_ID", c.AppliedTopicID},
		{"ORDERED_TOPIC_ID", c.OrderedTopicID}, {"ORDERED_SUBSCRIPTION_ID", c.OrderedSubscriptionID},
	} {
		if !validPubSubName(n.id) {
			bad("%s %q: Pub/Sub names are 3-255 characters of letters, digits and -_.~+%%, starting with a letter", n.env, n.id)
		}
	}
	if topics := []string{c.TopicID, c.OrderedTopicID, c.PoisonTopicID, c.AppliedTopicID}; len(slices.Compact(slices.Sorted(slices.Values(topics)))) != len(topics) {
		bad("TOPIC_ID, ORDERED_TOPIC_ID, POISON_TOPIC_ID and APPLIED_TOPIC_ID must differ")
	}
	if subs := []string{c.SubscriptionID, c.OrderedSubscriptionID, c.PoisonSubscriptionID}; len(slices.Compact(slices.Sorted(slices.Values(subs)))) != len(subs) {
		bad("SUBSCRIPTION_ID, ORDERED_SUBSCRIPTION_ID and POISON_SUBSCRIPTION_ID must differ")
	}
	if !messages.ValidIdentifier(c.DatasetID, 1024) {
		bad("DATASET_ID %q: letters, digits and underscores only", c.DatasetID)
	}
	if len(c.Stages) == 0 {
		bad("STAGES: name at least one of ingest, apply")
	}
	for _, s := range c.Stages {
		if s != StageIngest && s != StageApply {
			bad("STAGES: unknown stage %q, want ingest or apply", s)
		}
	}
	if _, err := ParseWarehouse(c.Warehouse); err != nil {
		bad("WAREHOUSE: %v", err)
	}
	switch c.Outbox {
	case OutboxAuto, OutboxOff:
	case OutboxOn:
		if !c.Runs(StageIngest) {
			bad("OUTBOX=on needs the ingest stage in this process: it is the one that records payloads")
		}
	default:
		bad("OUTBOX %q: want auto, on or off", c.Outbox)
	}
	if c.OutboxEnabled() {
		if spec, err := ParseWarehouse(c.Warehouse); err == nil && spec.Kind == WarehouseSQLite &&
			filepath.Clean(spec.Path) == filepath.Clean(c.OutboxPath) {
			bad("OUTBOX_PATH must not be the SQLite warehouse's file")
		}
	}
	if c.OutboxEnabled() && c.OutboxRedeliverAfter <= c.PublishTimeout {
		bad("OUTBOX_REDELIVER_AFTER (%s) must exceed PUBLISH_TIMEOUT (%s), or a payload still being published could be published again behind its client", c.OutboxRedeliverAfter, c.PublishTimeout)
	}
	if c.SQLiteSync != "full" && c.SQLiteSync != "normal" {
		bad("SQLITE_SYNC %q: want full or normal", c.SQLiteSync)
	}
	if c.Runs(StageIngest) {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			bad("HTTP_ADDR %q: want HOST:PORT or :PORT, such as :8080 (%v)", c.HTTPAddr, err)
		}
	}
	switch c.Auth {
	case AuthAuto:
		if c.BackendsFile == "" && c.Runs(StageIngest) && mode != PubSubEmbedded {
			bad("no BACKENDS_FILE: on the %s Pub/Sub the ingestion API would accept anyone's payloads. "+
				"Make a key per backend with `gatekeeper keys new BACKEND >> backends.yaml` and set BACKENDS_FILE=backends.yaml, "+
				"or set AUTH=none to run without authentication", mode)
		}
	case AuthNone:
		if c.BackendsFile != "" {
			bad("AUTH=none and BACKENDS_FILE contradict each other: unset one")
		}
	default:
		bad("AUTH %q: want auto or none", c.Auth)
	}
	if c.AdminAddr != AdminOff {
		if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
			bad("ADMIN_ADDR %q: want HOST:PORT, such as 127.0.0.1:8081, or off (%v)", c.AdminAddr, err)
		}
	}
	if c.DeadLetterMaxAttempts != 0 && (c.DeadLetterMaxAttempts < 5 || c.DeadLetterMaxAttempts > 100) {
		bad("DEAD_LETTER_MAX_ATTEMPTS %d: want 5 to 100 (Pub/Sub's bounds), or 0 for off", c.DeadLetterMaxAttempts)
	}
	switch c.OrderingPoison {
	case OrderingPoisonContinue:
	case OrderingPoisonBlock:
		if c.DeadLetterMaxAttempts != 0 {
			// Every hold is a nack, so a held payload would reach the
			// poison topic after that many holds: poisoned for being held.
			bad("ORDERING_POISON=block and DEAD_LETTER_MAX_ATTEMPTS (%d) contradict each other: Pub/Sub would dead-letter the payloads a blocked key holds; unset one", c.DeadLetterMaxAttempts)
		}
	default:
		bad("ORDERING_POISON %q: want continue or block", c.OrderingPoison)
	}
	for _, p := range []struct {
		env   string
		value float64
	}{
		{"PUBLISH_TIMEOUT", float64(c.PublishTimeout)},
		{"RECEIVE_STREAMS", float64(c.ReceiveStreams)}, {"MAX_OUTSTANDING", float64(c.MaxOutstanding)},
		{"MAX_BODY_BYTES", float64(c.MaxBodyBytes)}, {"MAX_IN_FLIGHT_PUBLISHES", float64(c.MaxInFlightPublishes)},
		{"MAX_IN_FLIGHT_BYTES", float64(c.MaxInFlightBytes)},
		{"READ_HEADER_TIMEOUT", float64(c.ReadHeaderTimeout)},
		{"IDEMPOTENCY_TTL", float64(c.IdempotencyTTL)}, {"IDEMPOTENCY_MAX_KEYS", float64(c.IdempotencyMaxKeys)},
		{"READ_TIMEOUT", float64(c.ReadTimeout)}, {"WRITE_TIMEOUT", float64(c.WriteTimeout)},
		{"IDLE_TIMEOUT", float64(c.IdleTimeout)}, {"EMBEDDED_MAX_BACKLOG", float64(c.EmbeddedMaxBacklog)},
		{"APPLY_TIMEOUT", float64(c.ApplyTimeout)}, {"RETRY_INITIAL", float64(c.RetryInitial)},
		{"RETRY_MAX_INTERVAL", float64(c.RetryMaxInterval)}, {"GROUP_MAX_SIZE", float64(c.GroupMaxSize)},
		{"GROUP_MAX_WAIT", float64(c.GroupMaxWait)}, {"GROUP_MAX_IN_FLIGHT", float64(c.GroupMaxInFlight)},
		{"OUTBOX_REDELIVER_AFTER", float64(c.OutboxRedeliverAfter)}, {"UNHEALTHY_AFTER", float64(c.UnhealthyAfter)},
		{"RESOURCE_CHECK_INTERVAL", float64(c.ResourceCheckInterval)}, {"PUSH_INTERVAL", float64(c.PushInterval)},
		{"LOG_REPEAT_INTERVAL", float64(c.LogRepeatInterval)},
		{"SHUTDOWN_TIMEOUT", float64(c.ShutdownTimeout)},
	} {
		if p.value <= 0 {
			bad("%s must be positive", p.env)
		}
	}
	if c.ShutdownDelay < 0 {
		bad("SHUTDOWN_DELAY must not be negative")
	}

	if c.RetryMultiplier < 1 {
		bad("RETRY_MULTIPLIER must be at least 1")
	}
	if c.RetryJitter > 1 {
		bad("RETRY_JITTER must be within [0, 1]")
	}
	if c.WriteTimeout <= c.PublishTimeout {
		bad("WRITE_TIMEOUT (%s) must exceed PUBLISH_TIMEOUT (%s), or clients never see the 503", c.WriteTimeout, c.PublishTimeout)
	}
	return errors.Join(errs...)
}

func validPubSubName(s string) bool {
	if len(s) < 3 || len(s) > 255 || strings.HasPrefix(strings.ToLower(s), "goog") {
		return false
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if i == 0 && !letter {
			return false
		}
		if !letter && !(r >= '0' && r <= '9') && !strings.ContainsRune("-_.~+%", r) {
			return false
		}
	}
	return true
}

// WarehouseKind names a warehouse adapter.
type WarehouseKind string

const (
	WarehouseSQLite   WarehouseKind = "sqlite"
	WarehouseBigQuery WarehouseKind = "bigquery"
)

// WarehouseSpec is a parsed WAREHOUSE value.
type WarehouseSpec struct {
	Kind WarehouseKind
	// Path is the SQLite database file.
	Path string
}

// ParseWarehouse parses "sqlite:PATH" or "bigquery".
func ParseWarehouse(s string) (WarehouseSpec, error) {
	kind, rest, _ := strings.Cut(s, ":")
	switch WarehouseKind(kind) {
	case WarehouseSQLite:
		if rest == "" {
			return WarehouseSpec{}, fmt.Errorf("%q: want sqlite:PATH", s)
		}
		return WarehouseSpec{Kind: WarehouseSQLite, Path: rest}, nil
	case WarehouseBigQuery:
		if rest != "" {
			return WarehouseSpec{}, fmt.Errorf("%q: bigquery takes PROJECT_ID and DATASET_ID, not a path", s)
		}
		return WarehouseSpec{Kind: WarehouseBigQuery}, nil
	default:
		return WarehouseSpec{}, fmt.Errorf("%q: want sqlite:PATH or bigquery", s)
	}
}

// ValidateWarehouse checks only what opening the warehouse needs, for tools
// that read it without running a stage.
func (c Config) ValidateWarehouse() error {
	c.setDefaults()
	var errs []error
	if _, err := ParseWarehouse(c.Warehouse); err != nil {
		errs = append(errs, fmt.Errorf("WAREHOUSE: %w", err))
	}
	if !messages.ValidIdentifier(c.DatasetID, 1024) {
		errs = append(errs, fmt.Errorf("DATASET_ID %q: letters, digits and underscores only", c.DatasetID))
	}
	return errors.Join(errs...)
}

// LogValue logs every setting, so that the start log shows the effective
// configuration, derived defaults included. Config holds no secrets: the
// credentials are a file's path.
func (c Config) LogValue() slog.Value {
	v := reflect.ValueOf(c)
	attrs := make([]slog.Attr, 0, v.NumField())
	for i := range v.NumField() {
		f := v.Field(i)
		if d, ok := f.Interface().(time.Duration); ok {
			attrs = append(attrs, slog.String(v.Type().Field(i).Name, d.String()))
			continue
		}
		attrs = append(attrs, slog.Any(v.Type().Field(i).Name, f.Interface()))
	}
	return slog.GroupValue(attrs...)
}
