package pipeline

import (
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/health"
)

// healthConfig is the health monitor's part of the service: what it
// watches, the settings, and what it asks the rest of the process. Made
// after the transport, the warehouse and the outbox; the stages come
// later, so what it asks of them is read at each probe.
func (s *Service) healthConfig() health.Config {
	cfg := s.cfg
	hc := health.Config{
		PubSub:  s.PubSub,
		Store:   s.Store,
		Missing: s.PubSub.Missing(),
		Ingest:  cfg.Runs(StageIngest), Apply: cfg.Runs(StageApply),

		Interval: cfg.ResourceCheckInterval, LogEvery: cfg.LogRepeatInterval,
		UnhealthyAfter: cfg.UnhealthyAfter, MaxHandlingTime: cfg.maxHandlingTime(),
		OutboxPath: cfg.OutboxPath, Warehouse: cfg.Warehouse,

		OnCreated:   s.resourceCreated,
		Serving:     s.ready.Load,
		BacklogFull: s.backlogFull,
		ApplyPaused: func() (time.Time, error) {
			if s.apply == nil {
				return time.Time{}, nil
			}
			return s.apply.paused()
		},
		ApplyHeld: func() int {
			held := 0
			s.handling.Range(func(any, any) bool { held++; return true })
			return held
		},
	}
	if s.outbox != nil {
		hc.OutboxFailing = s.outbox.Failing
	}
	return hc
}
