// Package transport is gatekeeper's Pub/Sub transport between the stages:
// the clients, the shared publisher and its ordered-topic routing, the
// subscribers, the topics and subscriptions each stage needs, and the
// embedded server (package embedded).
package transport

import (
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Mode says which Pub/Sub the transport talks to.
type Mode string

// The Pub/Subs the transport talks to.
const (
	// ModeEmbedded is an in-process server (package embedded), started by
	// New and closed by Close. The zero Mode means it.
	ModeEmbedded Mode = "embedded"
	// ModeEmulator is the gcloud Pub/Sub emulator at EmulatorHost.
	ModeEmulator Mode = "emulator"
	// ModeGoogle is Google Cloud Pub/Sub, with CredentialsFile or the
	// application default credentials.
	ModeGoogle Mode = "google"
)

// Config is what New needs. The zero value is an embedded Pub/Sub on
// 127.0.0.1:8086 with gatekeeper's default topic and subscription names,
// for a process that runs only the ingest stage.
type Config struct {
	// Mode is the Pub/Sub to talk to; zero is ModeEmbedded.
	Mode Mode
	// ProjectID is the Google Cloud project. Required with ModeGoogle;
	// elsewhere it defaults to gatekeeper-local.
	ProjectID string
	// EmulatorHost is the emulator's host:port; required with ModeEmulator.
	EmulatorHost string
	// EmbeddedAddr is where the embedded server listens (ModeEmbedded);
	// default 127.0.0.1:8086.
	EmbeddedAddr string
	// CredentialsFile is a service account's key file (ModeGoogle);
	// empty means the application default credentials.
	CredentialsFile string

	// Topic carries accepted payloads without an ordering key; those with
	// one go to OrderedTopic (see PubSub.Publisher). They are apart
	// because an ordered subscription is slow for everything it delivers:
	// the emulator hands out about 100 messages per stream at a time and
	// slows as its backlog grows (53 payloads/s from a backlog of 100,000,
	// against 9,500/s unordered), and Pub/Sub has no filter the emulator
	// honours. Subscription and
	// OrderedSubscription are the apply stage's on them. AppliedTopic and
	// PoisonTopic carry what the apply stage settled; PoisonSubscription
	// keeps the poisoned until an operator reads them. The defaults are
	// db-transaction-topic and db-sub, and the others are derived from
	// those two: Topic+"-ordered", "-applied", "-poison", and
	// Subscription+"-ordered", "-poison".
	Topic, OrderedTopic, AppliedTopic, PoisonTopic        string
	Subscription, OrderedSubscription, PoisonSubscription string
	// FollowAppliedSubscription and FollowPoisonSubscription, when set,
	// are this process's own subscriptions on the applied and poison
	// topics (an ingest-only process's outbox follows them). They expire
	// after a day unused.
	FollowAppliedSubscription, FollowPoisonSubscription string

	// Apply says this process runs the apply stage: it needs the applied
	// and poison topics and the poison subscription too, and cannot start
	// without its subscriptions.
	Apply bool
	// DoNotCreateResources checks the topics and subscriptions and never
	// creates one (CREATE_RESOURCES=false).
	DoNotCreateResources bool
	// DisableExactlyOnceDelivery creates the apply subscriptions without
	// exactly-once delivery on Google Pub/Sub (elsewhere it is never on).
	DisableExactlyOnceDelivery bool
	// DeadLetterMaxAttempts, when positive (5 to 100), moves a message
	// delivered that many times without an ack to PoisonTopic.
	DeadLetterMaxAttempts int

	// PublishTimeout bounds each publish; default 10 s.
	PublishTimeout time.Duration
	// PublishDelay is how long the publisher waits to fill a batch; zero
	// waits for nothing.
	PublishDelay time.Duration

	// ReceiveStreams is each subscriber's number of streaming pulls;
	// default 4.
	ReceiveStreams int
	// MaxOutstanding is how many messages a subscriber holds at once,
	// shared among its streams; default 1000.
	MaxOutstanding int
	// MaxLease bounds how long a subscriber keeps one message leased; zero
	// is the client's default (an hour).
	MaxLease time.Duration

	// WatermillLogger is what the publishers and subscribers log through;
	// nil is watermill.NewSlogLogger of New's logger.
	WatermillLogger watermill.LoggerAdapter

	// OnPublish, when set, sees the result of every publish through
	// Publisher and how long it took: the health monitor notices a lost
	// topic at the first publish that finds it gone.
	OnPublish func(topic string, took time.Duration, err error)
}

func (c *Config) setDefaults() {
	setDefault(&c.Mode, ModeEmbedded)
	if c.Mode != ModeGoogle {
		setDefault(&c.ProjectID, "gatekeeper-local")
	}
	setDefault(&c.EmbeddedAddr, "127.0.0.1:8086")
	setDefault(&c.Topic, "db-transaction-topic")
	setDefault(&c.Subscription, "db-sub")
	setDefault(&c.OrderedTopic, c.Topic+"-ordered")
	setDefault(&c.AppliedTopic, c.Topic+"-applied")
	setDefault(&c.PoisonTopic, c.Topic+"-poison")
	setDefault(&c.OrderedSubscription, c.Subscription+"-ordered")
	setDefault(&c.PoisonSubscription, c.Subscription+"-poison")
	setDefault(&c.PublishTimeout, 10*time.Second)
	setDefault(&c.ReceiveStreams, 4)
	setDefault(&c.MaxOutstanding, 1000)
}

// Validate reports every problem with c (after defaults) at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Mode {
	case ModeEmbedded, ModeEmulator, ModeGoogle:
	default:
		bad("mode %q: want embedded, emulator or google", c.Mode)
	}
	if c.ProjectID == "" {
		bad("a project ID is required")
	}
	if c.Mode == ModeEmulator && c.EmulatorHost == "" {
		bad("the emulator mode needs the emulator's host:port")
	}
	if c.Mode == ModeEmbedded && c.DoNotCreateResources {
		bad("the embedded Pub/Sub starts empty: it cannot work without creating its resources")
	}
	if c.DeadLetterMaxAttempts != 0 && (c.DeadLetterMaxAttempts < 5 || c.DeadLetterMaxAttempts > 100) {
		bad("dead-letter max attempts %d: want 5 to 100, or 0 for none", c.DeadLetterMaxAttempts)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"publish timeout", c.PublishTimeout}, {"publish delay", c.PublishDelay}, {"max lease", c.MaxLease}} {
		if d.d < 0 {
			bad("%s %s: must not be negative", d.name, d.d)
		}
	}
	if c.ReceiveStreams < 0 {
		bad("receive streams %d: must not be negative", c.ReceiveStreams)
	}
	if c.MaxOutstanding < 0 {
		bad("max outstanding %d: must not be negative", c.MaxOutstanding)
	}
	return errors.Join(errs...)
}

// ClientOptions reach the Pub/Sub cfg selects from a process other than the
// service: in embedded mode, the running service's embedded server.
func ClientOptions(cfg Config) []option.ClientOption {
	cfg.setDefaults()
	switch cfg.Mode {
	case ModeEmbedded:
		return emulatorOptions(cfg.EmbeddedAddr)
	case ModeEmulator:
		return emulatorOptions(cfg.EmulatorHost)
	default:
		if cfg.CredentialsFile != "" {
			return []option.ClientOption{option.WithAuthCredentialsFile(option.ServiceAccount, cfg.CredentialsFile)}
		}
		return nil
	}
}

func emulatorOptions(addr string) []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(addr),
		// The client opens one connection for an emulator; one connection
		// serialises the many concurrent publishes of the ingestion stage.
		option.WithGRPCConnectionPool(4),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}
