package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/operator"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// The operator tools' wiring: package operator holds the console, the
// admin API, the status API and the poison index; this file gives them
// this process's warehouse, Pub/Sub, doors and metrics.

// NewConsole opens the warehouse and Pub/Sub that cfg names, from a process
// other than the service (the CLI): in embedded mode it reaches the running
// service's embedded Pub/Sub. The console's Close closes both.
func NewConsole(ctx context.Context, cfg Config, logger *slog.Logger) (_ *operator.Console, err error) {
	cfg.setDefaults()
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for _, f := range slices.Backward(closers) {
			errs = append(errs, f())
		}
		closers = nil
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			_ = closeAll()
		}
	}()
	store, err := OpenWarehouse(ctx, cfg, logger)
	if err != nil {
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	closers = append(closers, store.Close)
	client, err := pubsub.NewClient(ctx, cfg.ProjectID, ClientOptions(cfg)...)
	if err != nil {
		return nil, fmt.Errorf("pub/sub: %w", err)
	}
	closers = append(closers, client.Close)
	return operator.NewConsole(consoleConfig(cfg, store, client, closeAll), logger)
}

// consoleConfig is the console over store, publishing replays with client
// to the topics cfg names.
func consoleConfig(cfg Config, store warehouse.Store, client *pubsub.Client, closeFn func() error) operator.ConsoleConfig {
	return operator.ConsoleConfig{
		Store: store, Publishers: client, TopicID: cfg.TopicID, OrderedTopicID: cfg.OrderedTopicID, Close: closeFn,
	}
}

// console is the operators' console over this process's warehouse and
// Pub/Sub. A process without the apply stage opens the warehouse on first
// use, so that an ingest-only process starts, and keeps accepting, while
// the warehouse is down.
func (s *Service) console(ctx context.Context) (*operator.Console, error) {
	s.consoleMu.Lock()
	defer s.consoleMu.Unlock()
	if s.consoleV != nil {
		return s.consoleV, nil
	}
	store := s.Store
	if store == nil {
		if s.readStore == nil {
			octx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var err error
			if s.readStore, err = OpenWarehouse(octx, s.cfg, s.logger); err != nil {
				return nil, messages.Transient(fmt.Errorf("warehouse: %w", err))
			}
		}
		store = s.readStore
	}
	c, err := operator.NewConsole(consoleConfig(s.cfg, store, s.PubSub.Client(), nil), s.logger)
	if err != nil {
		return nil, err
	}
	s.consoleV = c
	return s.consoleV, nil
}

// newStatus is GET /api/activities/{id} over this process's console.
func (s *Service) newStatus() (*operator.Status, error) {
	return operator.NewStatus(operator.StatusConfig{Console: s.console}, s.logger)
}

// adminRoutes serves the console for the service's own warehouse and
// Pub/Sub, behind the admin key.
func (s *Service) adminRoutes() (http.Handler, error) {
	return operator.NewAdmin(operator.AdminConfig{
		Console: s.console, Status: s.status, Door: s.guard.Admin, Instrument: s.Metrics.InstrumentHTTP,
	}, s.logger)
}

// indexPoison feeds the poison index from the poison subscription until
// ctx ends (operator.Indexer).
func (s *Service) indexPoison(ctx context.Context) {
	indexer, err := operator.NewIndexer(operator.IndexerConfig{
		Subscriptions: s.PubSub.Client().SubscriptionAdminClient,
		Subscription:  transport.SubscriptionPath(s.cfg.ProjectID, s.cfg.PoisonSubscriptionID),
		Events:        s.Store,
		OnIndexed: func(events []warehouse.Event) {
			s.Metrics.Indexed(len(events))
			if s.outbox != nil {
				// Indexed: the outbox need not bring them back any more.
				for _, e := range events {
					s.outbox.Forget(e.PayloadID)
				}
			}
		},
	}, s.logger)
	if err != nil {
		s.logger.Error("Cannot index poisoned payloads", "error", err)
		return
	}
	indexer.Run(ctx)
}
