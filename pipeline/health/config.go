// Package health keeps the service's Pub/Sub resources in place (the
// monitor recreates what Pub/Sub lost) and answers /readyz ("send me
// traffic") and /healthz ("restart me"), each reason named with its
// component, error, since when and effect.
package health

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/transport"
)

// PubSub is what the monitor needs of the transport (transport.PubSub).
type PubSub interface {
	// Resources lists the topics and subscriptions the stages need,
	// topics first.
	Resources() []transport.Resource
	// Ensure checks r, and creates it when allowed; a missing resource it
	// may not create is an error with status code NotFound.
	Ensure(ctx context.Context, r transport.Resource) (created bool, err error)
	// AcceptedPath names the topics and subscriptions an accepted payload
	// may travel through.
	AcceptedPath() []string
	// AcceptedSubscription is the apply subscription on the accepted
	// topic topic, or "".
	AcceptedSubscription(topic string) string
	// Ping reports whether Pub/Sub answers.
	Ping(ctx context.Context) error
}

// Pinger is the warehouse's write path as /readyz and the monitor probe it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Config is what New needs: what to watch, the settings, and the
// collaborators that tell the probes about the rest of the process. Every
// func may be nil: nothing of that kind to report.
type Config struct {
	// PubSub is the transport whose resources are kept in place; required.
	PubSub PubSub
	// Store is the warehouse; nil when this process does not run the apply
	// stage.
	Store Pinger
	// Missing is what the transport found missing at start.
	Missing []transport.MissingResource

	// Ingest and Apply say which stages this process runs.
	Ingest, Apply bool

	// Interval is how often the resources are checked
	// (RESOURCE_CHECK_INTERVAL); default 5 s.
	Interval time.Duration
	// LogEvery is how often a condition that lasts is logged again, as a
	// count (LOG_REPEAT_INTERVAL); default a minute.
	LogEvery time.Duration
	// UnhealthyAfter is how long a fault a restart could mend must last
	// before /healthz asks for one (UNHEALTHY_AFTER); default 5 minutes.
	UnhealthyAfter time.Duration
	// MaxHandlingTime is the longest the apply stage may take over one
	// payload with every retry: an apply stage is wedged only past both
	// it and UnhealthyAfter.
	MaxHandlingTime time.Duration
	// OutboxPath and Warehouse name the outbox file and the warehouse in
	// the reasons.
	OutboxPath, Warehouse string

	// OnCreated runs when the monitor had to recreate a resource:
	// whatever it held is gone.
	OnCreated func(ctx context.Context, r transport.Resource)
	// Serving reports whether the process serves (not starting, not
	// shutting down); nil always serves.
	Serving func() bool
	// OutboxFailing reports since when the outbox's writes fail, and why;
	// a zero time while they succeed.
	OutboxFailing func() (since time.Time, err error)
	// BacklogFull is an error while the embedded backlog is full.
	BacklogFull func() error
	// ApplyPaused reports since when the apply stage is paused, and why; a
	// zero time while it is not.
	ApplyPaused func() (since time.Time, err error)
	// ApplyHeld is how many payloads the apply stage holds now.
	ApplyHeld func() int
}

func (c *Config) setDefaults() {
	setDefault(&c.Interval, 5*time.Second)
	setDefault(&c.LogEvery, time.Minute)
	setDefault(&c.UnhealthyAfter, 5*time.Minute)
}

// Validate reports every problem with c (after defaults) at once.
func (c Config) Validate() error {
	var errs []error
	if c.PubSub == nil {
		errs = append(errs, errors.New("the Pub/Sub transport to watch is required"))
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"interval", c.Interval}, {"log interval", c.LogEvery}, {"unhealthy after", c.UnhealthyAfter}} {
		if d.d <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: must be positive", d.name, d.d))
		}
	}
	if c.MaxHandlingTime < 0 {
		errs = append(errs, fmt.Errorf("max handling time %s: must not be negative", c.MaxHandlingTime))
	}
	return errors.Join(errs...)
}

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}
