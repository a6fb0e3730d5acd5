package pipeline

import (
	"errors"
	"fmt"

	"github.com/gatekeeper/gatekeeper/handlers"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
	"github.com/gatekeeper/gatekeeper/pipeline/frontdoor"
	"github.com/gatekeeper/gatekeeper/pipeline/metrics"
)

// outcomeOf names a refused or failed ingestion for gatekeeper_payloads_total.
func outcomeOf(err error) string {
	var unauthorized *frontdoor.UnauthorizedError
	var forbidden *frontdoor.ForbiddenError
	var quota *frontdoor.QuotaError
	var slow *edge.BodyTimeoutError
	var aborted *edge.BodyAbortedError
	switch {
	case errors.As(err, &slow):
		return metrics.OutcomeTimeout
	case errors.As(err, &aborted):
		return metrics.OutcomeAborted
	case errors.As(err, &unauthorized):
		return metrics.OutcomeUnauthenticated
	case errors.As(err, &forbidden):
		return metrics.OutcomeForbidden
	case errors.As(err, &quota):
		return metrics.OutcomeThrottled
	case errors.Is(err, handlers.ErrOverloaded), errors.Is(err, edge.ErrBodyBudget), errors.Is(err, ErrBacklogFull):
		return metrics.OutcomeShed
	case len(edge.RulesOf(err)) > 0:
		return metrics.OutcomeRejected
	}
	return metrics.OutcomeFailed
}

// openDoor loads BACKENDS_FILE, when set.
func openDoor(cfg Config) (*frontdoor.Door, error) {
	if cfg.BackendsFile == "" {
		return nil, nil
	}
	d, err := frontdoor.Open(cfg.BackendsFile)
	if err != nil {
		return nil, fmt.Errorf("BACKENDS_FILE: %w", err)
	}
	return d, nil
}

// ReloadBackends reads BACKENDS_FILE again (SIGHUP). Requests in flight
// keep the file they started with; a file that does not load changes
// nothing and is logged.
func (s *Service) ReloadBackends() error { return s.guard.Reload() }
