// Package metrics holds gatekeeper's own Prometheus series, serves them on
// /metrics and pushes them to a Pushgateway.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/gatekeeper/gatekeeper/messages"
)

// Metrics are gatekeeper's own series, beside Watermill's handler, publisher
// and subscriber metrics, all in one registry.
type Metrics struct {
	Registry *prometheus.Registry

	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	payloads      *prometheus.CounterVec
	groupSize     prometheus.Histogram
	groupDuration *prometheus.HistogramVec
	retries       *prometheus.CounterVec
	rejections    *prometheus.CounterVec
	endToEnd      prometheus.Histogram
	publish       *prometheus.HistogramVec
	whErrors      *prometheus.CounterVec
	whJobs        *prometheus.CounterVec
	indexed       prometheus.Counter
}

// Topics are the topic label of gatekeeper_publish_seconds: the topic's
// role, not its name.
const (
	TopicAccepted = "accepted"
	TopicApplied  = "applied"
	TopicPoison   = "poison"
)

// Payload outcomes counted by gatekeeper_payloads_total.
const (
	OutcomeAccepted  = "accepted"
	OutcomeRejected  = "rejected"
	OutcomeFailed    = "failed" // the gate could not publish (the client got 5xx)
	OutcomeApplied   = "applied"
	OutcomeDuplicate = "duplicate"
	OutcomePoisoned  = "poisoned"
	// The front door's refusals (BACKENDS_FILE, MAX_IN_FLIGHT_PUBLISHES):
	// 401, 403, 429, and 503 when too many publishes are under way.
	OutcomeUnauthenticated = "unauthenticated"
	OutcomeForbidden       = "forbidden"
	OutcomeThrottled       = "throttled"
	OutcomeShed            = "shed"
	// The client's own faults: its body did not arrive within READ_TIMEOUT
	// (408), or broke off before its end (400). Not failures of the service.
	OutcomeTimeout = "timeout"
	OutcomeAborted = "aborted"
)

// The backend label is a name from the backends file, or "" for a request
// that was not authenticated: bounded by the file, never by what clients
// send.

// New registers gatekeeper's series in a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_http_requests_total", Help: "HTTP requests by route, status code and authenticated backend (\"\" when none).",
		}, []string{"route", "code", "backend"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatekeeper_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		payloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_payloads_total",
			Help: "Payloads by outcome and backend: unauthenticated, forbidden, throttled, shed, accepted, rejected or failed at the gate; applied, duplicate or poisoned by the apply stage.",
		}, []string{"outcome", "backend"}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatekeeper_group_size", Help: "Payloads per warehouse transaction (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		groupDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatekeeper_group_apply_seconds", Help: "Time to apply one group, by result (ok or error).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_apply_retries_total", Help: "Apply attempts retried, by the error's class (only transient errors are retried).",
		}, []string{"class"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_payload_rejections_total",
			Help: "Payloads the gate rejected, by the rule that failed; a payload that breaks two rules counts under both.",
		}, []string{"rule"}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatekeeper_end_to_end_seconds", Help: "From a payload's receipt at the gate to its commit in the warehouse, per applied payload.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}),
		publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatekeeper_publish_seconds", Help: "Pub/Sub publish latency, by the topic's role (accepted, applied, poison).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"topic"}),
		whErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_warehouse_errors_total",
			Help: "Errors from the warehouse, for a whole group or one payload, by class and a reason from a fixed set.",
		}, []string{"class", "reason"}),
		indexed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatekeeper_poison_indexed_total",
			Help: "Poison messages written to the poison index (the warehouse's events log) and acked.",
		}),
		whJobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_warehouse_jobs_total",
			Help: "Warehouse Apply calls (a SQLite transaction, or the BigQuery jobs of one group), by result (ok or error).",
		}, []string{"result"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gatekeeper_build_info", Help: "Constant 1, labelled with the build's version and Go version.",
	}, []string{"version", "go_version"})
	build.WithLabelValues(buildVersion(), runtime.Version()).Set(1)
	reg.MustRegister(m.httpRequests, m.httpDuration, m.payloads, m.groupSize, m.groupDuration, m.retries,
		m.rejections, m.endToEnd, m.publish, m.whErrors, m.whJobs, m.indexed, build)
	for _, o := range []string{OutcomeAccepted, OutcomeRejected, OutcomeFailed, OutcomeApplied, OutcomeDuplicate, OutcomePoisoned,
		OutcomeUnauthenticated, OutcomeForbidden, OutcomeThrottled, OutcomeShed,
		OutcomeTimeout, OutcomeAborted} {
		m.payloads.WithLabelValues(o, "")
	}
	for _, r := range messages.Rules {
		m.rejections.WithLabelValues(string(r))
	}
	for _, t := range []string{TopicAccepted, TopicApplied, TopicPoison} {
		m.publish.WithLabelValues(t)
	}
	for _, r := range []string{"ok", "error"} {
		m.whJobs.WithLabelValues(r)
	}
	m.retries.WithLabelValues("transient")
	return m
}

// buildVersion is the main module's version, or its VCS revision for a
// build from a checkout ("devel" when neither is known).
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return "devel"
}

// Rejected counts one rejected payload under each distinct rule it broke.
func (m *Metrics) Rejected(rules ...messages.Rule) {
	for _, r := range rules {
		m.rejections.WithLabelValues(string(r)).Inc()
	}
}

// Applied records one applied payload's end-to-end lag.
func (m *Metrics) Applied(receivedAt time.Time) {
	if !receivedAt.IsZero() {
		m.endToEnd.Observe(time.Since(receivedAt).Seconds())
	}
}

// Published records one publish to a topic of the given role.
func (m *Metrics) Published(topic string, took time.Duration) {
	m.publish.WithLabelValues(topic).Observe(took.Seconds())
}

// WarehouseError counts one error from the warehouse.
func (m *Metrics) WarehouseError(class, reason string) {
	m.whErrors.WithLabelValues(class, reason).Inc()
}

// Payload counts one payload outcome of a backend ("" when not
// authenticated).
func (m *Metrics) Payload(outcome, backend string) {
	m.payloads.WithLabelValues(outcome, backend).Inc()
}

// Indexed counts poison messages written to the poison index.
func (m *Metrics) Indexed(n int) { m.indexed.Add(float64(n)) }

// Retry counts one retry of an apply failure of the given class.
func (m *Metrics) Retry(class string) { m.retries.WithLabelValues(class).Inc() }

// Group records one group commit.
func (m *Metrics) Group(size int, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.groupSize.Observe(float64(size))
	m.groupDuration.WithLabelValues(result).Observe(d.Seconds())
	m.whJobs.WithLabelValues(result).Inc()
}

// Handler serves the registry for Prometheus to scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// InstrumentHTTP counts requests and their latency. route names the series;
// it is a fixed label, never the raw path, so a scan of random URLs cannot
// blow up the number of series.
//
// The series of the route and of the statuses it answers most are looked
// up once, here, not per request.
func (m *Metrics) InstrumentHTTP(route string, next http.Handler) http.Handler {
	duration := m.httpDuration.WithLabelValues(route)
	common := map[int]prometheus.Counter{}
	for _, code := range []int{200, 304, 400, 401, 403, 404, 405, 408, 413, 415, 429, 500, 503} {
		common[code] = m.httpRequests.WithLabelValues(route, strconv.Itoa(code), "")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		if c, ok := common[sw.code]; ok && sw.backend == "" {
			c.Inc()
		} else {
			m.httpRequests.WithLabelValues(route, strconv.Itoa(sw.code), sw.backend).Inc()
		}
		duration.Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
	backend     string
}

// LabelBackend names the authenticated backend of the request w answers,
// for the backend label of gatekeeper_http_requests_total. w must be the
// writer InstrumentHTTP handed on (authentication runs right inside it);
// any other is left alone.
func LabelBackend(w http.ResponseWriter, backend string) {
	if sw, ok := w.(*statusWriter); ok {
		sw.backend = backend
	}
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wroteHeader {
		s.code, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (the edge
// extends the write deadline of a 408).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

// Push pushes the registry to a Prometheus Pushgateway, as job and the host
// name as instance, every interval
// and once more when ctx ends, so a short-lived or scaled-to-zero process
// still leaves its last numbers behind.
func (m *Metrics) Push(ctx context.Context, host, job string, interval time.Duration, logger *slog.Logger) {
	if !strings.Contains(host, "://") {
		host = "http://" + host
	}
	instance, _ := os.Hostname()
	pusher := push.New(host, job).Gatherer(m.Registry).Grouping("instance", instance)
	doPush := func() {
		if err := pusher.Push(); err != nil {
			logger.Warn("Pushgateway push failed", "host", host, "error", err)
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			doPush()
			return
		case <-t.C:
			doPush()
		}
	}
}

// ApplyPause is the apply stage's pause as the metrics read it.
type ApplyPause struct {
	// Paused is whether the stage holds payloads now because the warehouse
	// is unavailable.
	Paused bool
	// Pauses counts the pauses since the process started.
	Pauses int
	// PausedFor is the time spent paused since the process started,
	// the current pause included.
	PausedFor time.Duration
	// Held is the payloads held now.
	Held int
	// Reason is the outage's reason (warehouse.Reason) while paused: one
	// of PauseReasons.
	Reason string
}

// PauseReasons label gatekeeper_apply_pause_reason: the reasons an outage
// can have (warehouse's reason constants); any other is counted as other.
var PauseReasons = []string{"storage", "permission", "busy", "unavailable", "rate_limited", "other"}

// RegisterApplyPause adds the apply stage's pause series, read from state
// at each scrape: gatekeeper_apply_paused (the alert GatekeeperApplyPaused
// fires on it), gatekeeper_apply_pauses_total,
// gatekeeper_apply_paused_seconds_total and gatekeeper_apply_held_payloads.
func (m *Metrics) RegisterApplyPause(state func() ApplyPause) {
	m.gauge("gatekeeper_apply_paused",
		"1 while the apply stage is paused: the warehouse is unavailable (corrupt, full, read-only, locked, unreachable, or BigQuery failing or rate limited), and payloads are held, not retried or poisoned; else 0.",
		nil, func() float64 {
			if state().Paused {
				return 1
			}
			return 0
		})
	for _, reason := range PauseReasons {
		m.gauge("gatekeeper_apply_pause_reason",
			"1 for the reason of the outage the apply stage is paused for (storage: corrupt, full or I/O; permission: read-only or denied; busy: locked; unavailable: unreachable or 5xx; rate_limited: rate limits and quotas), else 0.",
			map[string]string{"reason": reason}, func() float64 {
				st := state()
				if !st.Paused {
					return 0
				}
				if st.Reason == reason || (reason == "other" && !slices.Contains(PauseReasons, st.Reason)) {
					return 1
				}
				return 0
			})
	}
	m.counterFunc("gatekeeper_apply_pauses_total", "Times the apply stage paused because the warehouse was unavailable.",
		nil, func() float64 { return float64(state().Pauses) })
	m.counterFunc("gatekeeper_apply_paused_seconds_total", "Seconds the apply stage has spent paused, the current pause included.",
		nil, func() float64 { return state().PausedFor.Seconds() })
	m.gauge("gatekeeper_apply_held_payloads", "Payloads the paused apply stage holds now (neither acked nor nacked); 0 while it runs.",
		nil, func() float64 { return float64(state().Held) })
}
