package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	wmetrics "github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/gatekeeper/gatekeeper/handlers"
	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/pipeline/frontdoor"
	"github.com/gatekeeper/gatekeeper/pipeline/health"
	"github.com/gatekeeper/gatekeeper/pipeline/metrics"
	"github.com/gatekeeper/gatekeeper/pipeline/operator"
	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/bigquery"
)

// Service runs the configured stages in one process: the HTTP server, the
// ingestion and apply routers, the group committer and the transports, and
// shuts them down in the order that loses nothing.
type Service struct {
	cfg     Config
	logger  *slog.Logger
	Metrics *metrics.Metrics
	PubSub  *transport.PubSub
	// Store is nil when this process does not run the apply stage.
	Store warehouse.Store

	committer *warehouse.GroupCommitter
	outbox    *outbox.Outbox // nil unless cfg.OutboxEnabled()
	monitor   *health.Monitor
	edge      *edge.Edge
	// door holds BACKENDS_FILE; nil without it (no authentication).
	door *frontdoor.Door
	// guard is the front door's HTTP middleware over door, and the body
	// budget.
	guard    *frontdoor.Guard
	ingest   *ingestStage
	apply    *applyStage
	server   *http.Server
	listener net.Listener
	// admin serves the operators' console on ADMIN_ADDR; nil when off.
	admin         *http.Server
	adminListener net.Listener

	// status answers GET /api/activities/{id}, remembering what this
	// process accepted and the final statuses it was asked about.
	status *operator.Status
	// beforePublish, when set, runs as each payload comes to the gate's
	// Admit, before its record and publish (WithBeforePublish).
	beforePublish func()
	// consoleMu guards the console, made on first use; readStore is the
	// warehouse an ingest-only process opens for it.
	consoleMu sync.Mutex
	consoleV  *operator.Console
	readStore warehouse.Store

	// handling holds the ids of the payloads the apply stage is handling.
	handling sync.Map
	// The outbox's workers (outbox_workers.go); nil without an outbox,
	// follower also without a separate apply stage to follow.
	keeper      *outbox.Keeper
	recorder    *outbox.Recorder
	redeliverer *outbox.Redeliverer
	follower    *outbox.Follower

	ready    atomic.Bool
	accepted atomic.Int64 // published by this process's gate
	settled  atomic.Int64 // acked by this process's apply stage

	closeOnce sync.Once
	closeErr  error
}

// Option adjusts a Service beyond its Config.
type Option func(*Service)

// WithWarehouse makes the apply stage write to store instead of the adapter
// cfg.Warehouse names; the service closes it. Tests use it to inject
// failures (warehousetest.Faulty).
func WithWarehouse(store warehouse.Store) Option {
	return func(s *Service) { s.Store = store }
}

// WithBeforePublish has the gate call hook for each payload it has
// validated and authorized, before it admits, records and publishes it.
// Tests hold a publish with it, to see what a request meets while another
// is being published.
func WithBeforePublish(hook func()) Option {
	return func(s *Service) { s.beforePublish = hook }
}

// NewService validates cfg, connects to Pub/Sub and the warehouse, creates
// missing resources, and binds the HTTP listener. Nothing runs until Run.
func NewService(ctx context.Context, cfg Config, logger *slog.Logger, opts ...Option) (_ *Service, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	logger.Info("Starting", "config", cfg)
	s := &Service{cfg: cfg, logger: logger, Metrics: metrics.New()}
	for _, opt := range opts {
		opt(s)
	}
	if s.status, err = s.newStatus(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.closeResources()
		}
	}()

	// Who may come in first: a bad backends file stops the start before
	// anything connects. Then what the stages stand on, what watches it,
	// the stages, and the listener that lets requests in.
	if s.door, err = openDoor(cfg); err != nil {
		return nil, err
	}
	if s.guard, err = frontdoor.NewGuard(frontdoor.GuardConfig{
		Door: s.door, RefuseAdmin: operator.WriteError, MaxBodyBytes: cfg.MaxBodyBytes, MaxInFlightBytes: cfg.MaxInFlightBytes,
	}, logger); err != nil {
		return nil, err
	}
	if s.PubSub, err = transport.New(ctx, transportConfig(cfg, logger, s.published), logger); err != nil {
		return nil, err
	}
	if cfg.Runs(StageApply) && s.Store == nil {
		if s.Store, err = OpenWarehouse(ctx, cfg, logger); err != nil {
			return nil, fmt.Errorf("warehouse: %w", err)
		}
	}
	// After the warehouse and Pub/Sub: they remember which outbox this
	// process kept (outbox.Keeper).
	if cfg.OutboxEnabled() {
		if err := s.openOutbox(ctx); err != nil {
			return nil, err
		}
		if err := s.buildOutboxWorkers(); err != nil {
			return nil, err
		}
	}
	if s.monitor, err = health.New(s.healthConfig(), logger); err != nil {
		return nil, err
	}

	wmMetrics := wmetrics.NewPrometheusMetricsBuilder(s.Metrics.Registry, "gatekeeper", "")
	if cfg.Runs(StageApply) {
		if err := s.buildApplyStage(); err != nil {
			return nil, err
		}
		wmMetrics.AddPrometheusRouterMetrics(s.apply.router)
	}
	if cfg.Runs(StageIngest) {
		if err := s.buildIngestStage(); err != nil {
			return nil, err
		}
		wmMetrics.AddPrometheusRouterMetrics(s.ingest.router)
	}
	s.registerGauges()

	s.server = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if s.listener, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("HTTP_ADDR: %w", err)
	}
	if cfg.AdminAddr != AdminOff {
		adminRoutes, err := s.adminRoutes()
		if err != nil {
			return nil, err
		}
		s.admin = &http.Server{
			Handler: adminRoutes, ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		if s.adminListener, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			return nil, fmt.Errorf("ADMIN_ADDR: %w", err)
		}
	}
	return s, nil
}

// published sees every publish (transport.Config.OnPublish): the monitor
// learns of a lost topic, and the publish is timed. None comes before
// NewService has made the monitor.
func (s *Service) published(topic string, took time.Duration, err error) {
	s.monitor.Published(topic, err)
	if role := s.topicRole(topic); role != "" && err == nil {
		s.Metrics.Published(role, took)
	}
}

// buildApplyStage builds the group committer over the warehouse and the
// apply stage over it.
func (s *Service) buildApplyStage() (err error) {
	s.committer, err = warehouse.NewGroupCommitter(s.Store, warehouse.GroupConfig{
		MaxSize: s.cfg.GroupMaxSize, MaxWait: s.cfg.GroupMaxWait, MaxInFlight: s.cfg.GroupMaxInFlight,
		OnGroup: func(g warehouse.GroupReport) {
			s.Metrics.Group(g.Size, g.Took, g.Err)
			if g.Err != nil {
				s.Metrics.WarehouseError(string(messages.ClassOf(g.Err)), warehouse.Reason(g.Err))
			}
			for _, err := range g.Rejected {
				reason := warehouse.Reason(err)
				if reason == warehouse.ReasonOther {
					reason = warehouse.ReasonRejected
				}
				s.Metrics.WarehouseError(string(messages.ClassOf(err)), reason)
			}
			s.monitor.Committed(g.Err, g.Rejected)
		},
	}, s.logger)
	if err != nil {
		return err
	}
	s.apply, err = newApplyStage(s.cfg, s.PubSub, s.Store, s.committer, s.Metrics, s.outbox, &s.handling, func() { s.settled.Add(1) }, s.logger)
	return err
}

// buildIngestStage builds the HTTP edge and the ingest stage behind it.
func (s *Service) buildIngestStage() (err error) {
	if s.edge, err = edge.New(edge.Config{
		MaxBodyBytes:       s.cfg.MaxBodyBytes,
		VerdictWait:        s.cfg.PublishTimeout + 5*time.Second,
		IdempotencyTTL:     s.cfg.IdempotencyTTL,
		IdempotencyMaxKeys: s.cfg.IdempotencyMaxKeys,
		Cause:              unavailableCause,
		LogEvery:           s.cfg.LogRepeatInterval,
		OnVerdict: func(msg *message.Message, err error) {
			backend := msg.Metadata.Get(messages.MetaBackend)
			if err == nil {
				s.accepted.Add(1)
				s.status.Accepted(msg.UUID, receivedAt(msg), backend)
				s.Metrics.Payload(metrics.OutcomeAccepted, backend)
				return
			}
			s.Metrics.Payload(outcomeOf(err), backend)
			s.Metrics.Rejected(edge.RulesOf(err)...)
		},
	}, s.logger); err != nil {
		return err
	}
	var box handlers.Outbox
	if s.recorder != nil {
		box = s.recorder
	}
	admit := s.admit
	if hook := s.beforePublish; hook != nil {
		admit = func() error {
			hook()
			return s.admit()
		}
	}
	s.ingest, err = newIngestStage(s.cfg, s.PubSub, s.edge, admit, s.guard.Authorize, box, s.logger)
	return err
}

// unavailableCause names what a 503 is for, so that the edge logs each
// cause once (a full disk refuses every request for the same reason).
func unavailableCause(err error) string {
	switch {
	case errors.Is(err, handlers.ErrRecord):
		return "outbox"
	case errors.Is(err, handlers.ErrPublish):
		return "publish"
	case errors.Is(err, handlers.ErrOverloaded):
		return "shed"
	case errors.Is(err, ErrBacklogFull):
		return "backlog"
	case errors.Is(err, health.ErrPathDown):
		return "pubsub resource missing"
	}
	return ""
}

// topicRole names a topic by its part, for the publish latency's label.
func (s *Service) topicRole(topic string) string {
	switch topic {
	case s.cfg.TopicID, s.cfg.OrderedTopicID:
		return metrics.TopicAccepted
	case s.cfg.AppliedTopicID:
		return metrics.TopicApplied
	case s.cfg.PoisonTopicID:
		return metrics.TopicPoison
	}
	return ""
}

// registerGauges adds the series read at each scrape: the age of the
// oldest payload the apply stage holds, and the payloads in the poison
// index (or, in an ingest-only process, those its outbox saw poisoned).
func (s *Service) registerGauges() {
	if s.outbox != nil {
		s.Metrics.RegisterOutboxLossAccepted(func() float64 { return float64(s.keeper.LossAccepted()) })
	}
	if s.ingest != nil {
		s.Metrics.RegisterIngestBodyBytes(func() float64 { return float64(s.guard.BodyBytes()) })
	}
	if s.apply != nil {
		if bq, ok := s.Store.(*bigquery.Warehouse); ok {
			s.Metrics.RegisterBigQuery(func() metrics.BigQueryStats {
				st := bq.Stats()
				return metrics.BigQueryStats{ThrottledJobs: st.ThrottledJobs, ThrottledSeconds: st.ThrottledWait.Seconds(), BilledBytes: st.BilledBytes}
			})
		}
		s.Metrics.RegisterApplyPause(s.apply.pause.Metrics)
		s.Metrics.RegisterOldestUnapplied(func() float64 {
			var oldest time.Time
			s.handling.Range(func(_, v any) bool {
				if at, _ := v.(time.Time); !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
					oldest = at
				}
				return true
			})
			if oldest.IsZero() {
				return 0
			}
			return time.Since(oldest).Seconds()
		})
	}
	switch {
	case s.Store != nil:
		// The poison index is the count every operator sees. A scrape
		// reads it at most once a second on SQLite, and every 30 s on
		// BigQuery, where each read is a query job.
		every := time.Second
		if spec, err := ParseWarehouse(s.cfg.Warehouse); err == nil && spec.Kind == WarehouseBigQuery {
			every = 30 * time.Second
		}
		states := make([]string, len(warehouse.EventKinds))
		for i, k := range warehouse.EventKinds {
			states[i] = string(k)
		}
		s.Metrics.RegisterPoisonIndex(states, string(warehouse.EventPoisoned), every, func(ctx context.Context) (map[string]metrics.PoisonState, error) {
			counts, err := s.Store.CountEntries(ctx)
			byState := make(map[string]metrics.PoisonState, len(counts))
			for k, c := range counts {
				byState[string(k)] = metrics.PoisonState{Payloads: c.Entries, Since: c.Oldest}
			}
			return byState, err
		})
	case s.outbox != nil:
		s.Metrics.RegisterOutboxPoisoned(func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			counts, err := s.outbox.Count(ctx)
			if err != nil {
				return math.NaN()
			}
			return float64(counts[outbox.Poisoned])
		})
	}
}

// ErrBacklogFull refuses a payload while the embedded Pub/Sub holds
// EMBEDDED_MAX_BACKLOG payloads the apply stage has not settled yet.
var ErrBacklogFull = errors.New("the apply stage is behind; the embedded Pub/Sub's backlog is full, retry")

// admit is the gate's Admit: it refuses a payload while the accepted topic
// or its subscription is missing (health.Monitor.Admit: Pub/Sub would drop
// it), and bounds the embedded Pub/Sub's backlog when this process runs
// both stages on it, the only case where it can count the backlog:
// everything published to it comes from this gate and is settled by this
// apply stage.
func (s *Service) admit() error {
	if err := s.monitor.Admit(); err != nil {
		return messages.Transient(err)
	}
	if err := s.backlogFull(); err != nil {
		return messages.Transient(err)
	}
	return nil
}

// backlogFull is ErrBacklogFull while the embedded backlog is full (admit),
// for the gate and for /readyz.
func (s *Service) backlogFull() error {
	if s.PubSub.Mode != transport.ModeEmbedded || s.apply == nil || s.ingest == nil {
		return nil
	}
	if s.accepted.Load()-s.settled.Load() >= int64(s.cfg.EmbeddedMaxBacklog) {
		return ErrBacklogFull
	}
	return nil
}

// Addr is the address the HTTP server listens on.
func (s *Service) Addr() net.Addr { return s.listener.Addr() }

// AdminAddr is the address the operators' console listens on; nil when
// ADMIN_ADDR is off.
func (s *Service) AdminAddr() net.Addr {
	if s.adminListener == nil {
		return nil
	}
	return s.adminListener.Addr()
}

func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	if s.ingest != nil {
		// POST only: any other method gets 405 with Allow: POST here, where
		// the edge would hold back the subscriber's status and answer 503.
		mux.Handle("POST "+IngestPath, s.Metrics.InstrumentHTTP(IngestPath, s.guard.Ingest(s.edge, s.ingest.routes)))
		mux.Handle("GET "+edge.SchemaPath, s.Metrics.InstrumentHTTP(edge.SchemaPath, edge.SchemaHandler()))
		mux.Handle("GET "+edge.OpenAPIPath, s.Metrics.InstrumentHTTP(edge.OpenAPIPath, edge.OpenAPIHandler()))
		mux.Handle("GET "+operator.StatusPath, s.Metrics.InstrumentHTTP(operator.StatusPath, edge.ErrorShape(s.guard.Status(s.status))))
	}
	mux.HandleFunc("GET /healthz", s.monitor.Healthz)
	mux.Handle("GET /readyz", s.Metrics.InstrumentHTTP("/readyz", http.HandlerFunc(s.monitor.Readyz)))
	mux.Handle("GET /metrics", s.Metrics.Handler())
	return edge.RouteErrors(mux)
}

// Run serves until ctx ends, then shuts down gracefully: it stops taking
// requests, lets every request in flight finish (each waits for its
// publish), drains the apply stage, and closes the transports last.
func (s *Service) Run(ctx context.Context) error {
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	failed := make(chan error, 3)

	for _, r := range s.routers() {
		go func() {
			if err := r.Run(runCtx); err != nil {
				failed <- fmt.Errorf("router: %w", err)
			}
		}()
		select {
		case <-r.Running():
		case err := <-failed:
			_ = s.closeResources()
			return err
		}
	}
	// The background workers start here, once the routers run, and stop
	// below, before the shutdown drains the stages.
	workers := startGroup(s.workers()...)
	defer workers.stop()
	if s.outbox != nil {
		// Before serving, so that what was accepted before the restart
		// queues ahead of what is accepted now.
		if err := s.republishAtStart(ctx); err != nil {
			workers.stop()
			return errors.Join(err, s.shutdown())
		}
	}
	go func() {
		if err := s.server.Serve(s.listener); !errors.Is(err, http.ErrServerClosed) {
			failed <- fmt.Errorf("http server: %w", err)
		}
	}()
	if s.admin != nil {
		go func() {
			if err := s.admin.Serve(s.adminListener); !errors.Is(err, http.ErrServerClosed) {
				failed <- fmt.Errorf("admin server: %w", err)
			}
		}()
	}
	// The Pushgateway's loop pushes until the shutdown has ended, so that
	// the last push has the final counts.
	var push *group
	if s.cfg.PushgatewayHost != "" {
		push = startGroup(func(ctx context.Context) {
			s.Metrics.Push(ctx, s.cfg.PushgatewayHost, s.cfg.PushJob, s.cfg.PushInterval, s.logger)
		})
	}
	s.ready.Store(true)
	adminAddr := AdminOff
	if a := s.AdminAddr(); a != nil {
		adminAddr = a.String()
	}
	s.logger.Info("Serving", "addr", s.Addr().String(), "admin_addr", adminAddr, "stages", s.cfg.Stages,
		"pubsub", s.PubSub.Mode, "warehouse", s.cfg.Warehouse)
	s.logExposure()

	var runErr error
	select {
	case <-ctx.Done():
		s.logger.Info("Shutting down: draining")
	case runErr = <-failed:
		s.logger.Error("Shutting down after failure", "error", runErr)
	}
	workers.stop()
	err := s.shutdown()
	if push != nil {
		push.stop()
	}
	return errors.Join(runErr, err)
}

// workers are the service's background loops, each running until its
// context ends: the outbox's redelivery, identity record and follower, the
// poison index, the apply stage's idle watch and blocked keys, and the
// monitor of Pub/Sub's resources.
func (s *Service) workers() []func(context.Context) {
	var ws []func(context.Context)
	if s.outbox != nil {
		ws = append(ws, s.redeliverer.Run, s.keeper.Run)
	}
	if s.follower != nil {
		ws = append(ws, s.follower.Run)
	}
	if s.apply != nil {
		ws = append(ws, s.indexPoison, s.monitor.WatchApplyIdle)
		if s.apply.blocks != nil {
			ws = append(ws, s.apply.blocks.Run)
		}
	}
	return append(ws, s.monitor.Run)
}

// group runs loops, each in its own goroutine, until stop.
type group struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startGroup(loops ...func(context.Context)) *group {
	ctx, cancel := context.WithCancel(context.Background())
	g := &group{cancel: cancel}
	for _, loop := range loops {
		g.wg.Go(func() { loop(ctx) })
	}
	return g
}

// stop ends the loops and waits for every one to return. Calling it again
// returns at once.
func (g *group) stop() {
	g.cancel()
	g.wg.Wait()
}

func (s *Service) routers() []*message.Router {
	var rs []*message.Router
	// The apply stage starts first so that, in one process, nothing is
	// accepted before something is ready to apply it.
	if s.apply != nil {
		rs = append(rs, s.apply.router)
	}
	if s.ingest != nil {
		rs = append(rs, s.ingest.router)
	}
	return rs
}

func (s *Service) shutdown() error {
	s.ready.Store(false)
	if s.cfg.ShutdownDelay > 0 {
		s.logger.Info("Not ready; still serving until the shutdown delay ends", "shutdown_delay", s.cfg.ShutdownDelay.String())
		time.Sleep(s.cfg.ShutdownDelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	// Requests in flight wait for their publish; Shutdown waits for them.
	if err := s.server.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if s.admin != nil {
		// A replay in flight runs to its end (it is bounded by its own
		// deadline), so that the index records what it published.
		if err := s.admin.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("admin shutdown: %w", err))
		}
	}
	if s.ingest != nil {
		errs = append(errs, s.ingest.router.Close())
	}
	if s.apply != nil {
		errs = append(errs, s.drain(ctx))
		errs = append(errs, s.apply.router.Close())
		s.apply.pause.Stop()
		errs = append(errs, s.committer.Close(ctx))
	}
	if s.outbox != nil {
		// With the apply stage's last forgets written: the count the next
		// start names if it finds the file gone.
		s.keeper.RecordStop()
	}
	errs = append(errs, s.closeResources())
	return errors.Join(errs...)
}

// drain waits, in embedded mode, until the apply stage has settled every
// payload this process accepted: the embedded Pub/Sub lives in memory. What
// is left when SHUTDOWN_TIMEOUT ends stays in the outbox for the next start,
// and the exit is an error, so that whoever stopped the process knows. With
// an emulator or Google Pub/Sub the subscription keeps the backlog.
func (s *Service) drain(ctx context.Context) error {
	if s.PubSub.Mode != transport.ModeEmbedded || s.ingest == nil {
		return nil
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		left := s.accepted.Load() - s.settled.Load()
		if left <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if s.outbox != nil {
				s.logger.Error("Shutdown timeout: accepted payloads not yet applied wait in the outbox for the next start",
					"payloads", left, "outbox", s.cfg.OutboxPath)
				return fmt.Errorf("shutdown timeout: %d accepted payloads not yet applied wait in the outbox %s for the next start", left, s.cfg.OutboxPath)
			}
			s.logger.Error("Shutdown timeout: accepted payloads not yet applied are lost with the embedded Pub/Sub",
				"payloads", left)
			return fmt.Errorf("shutdown timeout: %d accepted payloads not yet applied are lost with the embedded Pub/Sub (OUTBOX=off)", left)
		case <-t.C:
		}
	}
}

func (s *Service) closeResources() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.listener != nil {
			_ = s.listener.Close() // already closed by Shutdown when serving
		}
		if s.adminListener != nil {
			_ = s.adminListener.Close()
		}
		if s.outbox != nil {
			// After the apply stage: its last forgets are written first.
			errs = append(errs, s.outbox.Close())
		}
		if s.PubSub != nil {
			errs = append(errs, s.PubSub.Close())
		}
		if s.Store != nil {
			errs = append(errs, s.Store.Close())
		}
		if s.readStore != nil {
			errs = append(errs, s.readStore.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
