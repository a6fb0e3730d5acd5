// Package metrics holds gatekeeper's own Prometheus series, serves them on
// /metrics and pushes them to a Pushgateway.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/push"
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
	retries       prometheus.Counter
}

// Payload outcomes counted by gatekeeper_payloads_total.
const (
	OutcomeAccepted  = "accepted"
	OutcomeRejected  = "rejected"
	OutcomeFailed    = "failed" // the gate could not publish (the client got 5xx)
	OutcomeApplied   = "applied"
	OutcomeDuplicate = "duplicate"
	OutcomePoisoned  = "poisoned"
)

// New registers gatekeeper's series in a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatekeeper_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		payloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatekeeper_payloads_total",
			Help: "Payloads by outcome: accepted, rejected or failed at the gate; applied, duplicate or poisoned by the apply stage.",
		}, []string{"outcome"}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatekeeper_group_size", Help: "Payloads per warehouse transaction (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		groupDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatekeeper_group_apply_seconds", Help: "Time to apply one group, by result (ok or error).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatekeeper_apply_retries_total", Help: "Apply attempts retried after a transient error.",
		}),
	}
	reg.MustRegister(m.httpRequests, m.httpDuration, m.payloads, m.groupSize, m.groupDuration, m.retries)
	for _, o := range []string{OutcomeAccepted, OutcomeRejected, OutcomeFailed, OutcomeApplied, OutcomeDuplicate, OutcomePoisoned} {
		m.payloads.WithLabelValues(o)
	}
	return m
}

// Payload counts one payload outcome.
func (m *Metrics) Payload(outcome string) { m.payloads.WithLabelValues(outcome).Inc() }

// Retry counts one retry of a transient apply failure.
func (m *Metrics) Retry() { m.retries.Inc() }

// Group records one group commit.
func (m *Metrics) Group(size int, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.groupSize.Observe(float64(size))
	m.groupDuration.WithLabelValues(result).Observe(d.Seconds())
}

// Handler serves the registry for Prometheus to scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// InstrumentHTTP counts requests and their latency. route names the series;
// it is a fixed label, never the raw path, so a scan of random URLs cannot
// blow up the number of series.
func (m *Metrics) InstrumentHTTP(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		m.httpRequests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		m.httpDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wroteHeader {
		s.code, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

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
