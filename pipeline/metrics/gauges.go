package metrics

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The series read at each scrape. Their values come from the parts that
// know them; their names, help and labels are defined here, with the rest.

// gauge registers a gauge whose value is read at every scrape.
func (m *Metrics) gauge(name, help string, labels prometheus.Labels, value func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, value))
}

// counterFunc registers a counter whose value is read at every scrape.
func (m *Metrics) counterFunc(name, help string, labels prometheus.Labels, value func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, value))
}

// RegisterOutboxLossAccepted adds gatekeeper_outbox_loss_accepted_total:
// starts that accepted losing the outbox kept before.
func (m *Metrics) RegisterOutboxLossAccepted(value func() float64) {
	m.counterFunc("gatekeeper_outbox_loss_accepted_total",
		"Starts that accepted losing the outbox this process kept before (OUTBOX_ACCEPT_LOSS), with what waited in it.", nil, value)
}

// RegisterIngestBodyBytes adds gatekeeper_ingest_body_bytes.
func (m *Metrics) RegisterIngestBodyBytes(value func() float64) {
	m.gauge("gatekeeper_ingest_body_bytes",
		"Request body bytes the ingestion stage is handling now, as reserved under MAX_IN_FLIGHT_BYTES.", nil, value)
}

// RegisterOldestUnapplied adds gatekeeper_oldest_unapplied_seconds.
func (m *Metrics) RegisterOldestUnapplied(value func() float64) {
	m.gauge("gatekeeper_oldest_unapplied_seconds",
		"Age of the oldest accepted payload this apply stage holds and has not settled (0 when it holds none).", nil, value)
}

// PoisonState is one state of the poison index: how many payloads are in
// it, and since when the longest-waiting one is.
type PoisonState struct {
	Payloads int
	Since    time.Time
}

// RegisterPoisonIndex adds gatekeeper_poison_payloads by state, as the
// poison index counts them, and gatekeeper_poison_oldest_seconds: how long
// the oldest payload in the waiting state has waited. The age, not the
// count, tells an unattended backlog: a count that stays flat for a day
// looks like no news. read is called at most once per every, for all the
// series of one scrape (each read may be a query job), and the age is
// taken at the scrape from what it read; a failed read shows as NaN.
func (m *Metrics) RegisterPoisonIndex(states []string, waiting string, every time.Duration, read func(context.Context) (map[string]PoisonState, error)) {
	var (
		mu   sync.Mutex
		at   time.Time
		last map[string]PoisonState
		err  error
	)
	get := func(state string) (PoisonState, bool) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) >= every {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			last, err = read(ctx)
			cancel()
			at = time.Now()
		}
		return last[state], err == nil
	}
	for _, state := range states {
		m.gauge("gatekeeper_poison_payloads",
			"Payloads in the poison index by state: poisoned (waiting for an operator), replayed, purged.",
			prometheus.Labels{"state": state}, func() float64 {
				s, ok := get(state)
				if !ok {
					return math.NaN()
				}
				return float64(s.Payloads)
			})
	}
	m.gauge("gatekeeper_poison_oldest_seconds",
		"How long the oldest payload waiting in the poison index for an operator (state poisoned) has waited; 0 when none waits.",
		nil, func() float64 {
			s, ok := get(waiting)
			switch {
			case !ok:
				return math.NaN()
			case s.Payloads == 0 || s.Since.IsZero():
				return 0
			}
			return max(time.Since(s.Since).Seconds(), 0)
		})
}

// RegisterOutboxPoisoned adds gatekeeper_poison_payloads{state="poisoned"}
// in an ingest-only process, as its outbox knows them.
func (m *Metrics) RegisterOutboxPoisoned(value func() float64) {
	m.gauge("gatekeeper_poison_payloads",
		"Poisoned payloads waiting for an operator, as this ingest process's outbox knows them.",
		prometheus.Labels{"state": "poisoned"}, value)
}

// BigQueryStats is what the BigQuery adapter counts, for the metrics.
type BigQueryStats struct {
	// ThrottledJobs were held back by the DML budget (BIGQUERY_DML_BUDGET).
	ThrottledJobs uint64
	// ThrottledSeconds is how long they waited in all.
	ThrottledSeconds float64
	// BilledBytes is what the jobs billed, as BigQuery reports it.
	BilledBytes int64
}

// RegisterBigQuery adds gatekeeper_bigquery_throttled_jobs_total,
// gatekeeper_bigquery_throttled_seconds_total and
// gatekeeper_bigquery_billed_bytes_total.
func (m *Metrics) RegisterBigQuery(stats func() BigQueryStats) {
	m.counterFunc("gatekeeper_bigquery_throttled_jobs_total",
		"BigQuery jobs held back until their tables had room in the DML budget (BIGQUERY_DML_BUDGET statements per table every 10 s).", nil,
		func() float64 { return float64(stats().ThrottledJobs) })
	m.counterFunc("gatekeeper_bigquery_throttled_seconds_total",
		"Time BigQuery jobs waited for the DML budget, in all.", nil,
		func() float64 { return stats().ThrottledSeconds })
	m.counterFunc("gatekeeper_bigquery_billed_bytes_total",
		"Bytes billed by the apply stage's BigQuery jobs, as BigQuery reports them (on-demand pricing).", nil,
		func() float64 { return float64(stats().BilledBytes) })
}
