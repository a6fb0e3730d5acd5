package metrics_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gatekeeper/gatekeeper/pipeline/metrics"
)

// The poison index is read once per interval for all the states of a
// scrape (on BigQuery each read is a query job), and a failed read shows
// as NaN, not as 0.
func TestPoisonIndexIsReadOncePerInterval(t *testing.T) {
	m := metrics.New()
	reads := 0
	var fail error
	since := time.Now().Add(-2 * time.Hour)
	m.RegisterPoisonIndex([]string{"poisoned", "replayed"}, "poisoned", time.Hour, func(context.Context) (map[string]metrics.PoisonState, error) {
		reads++
		return map[string]metrics.PoisonState{"poisoned": {Payloads: 3, Since: since}, "replayed": {Payloads: 1, Since: since}}, fail
	})
	values := func() map[string]float64 {
		families, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, f := range families {
			switch f.GetName() {
			case "gatekeeper_poison_payloads":
				for _, s := range f.GetMetric() {
					got[label(s, "state")] = s.GetGauge().GetValue()
				}
			case "gatekeeper_poison_oldest_seconds":
				got["age"] = f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return got
	}
	// The age is taken at each scrape from the one read: it grows between
	// reads, as an unattended backlog's does.
	var ages []float64
	for range 3 {
		got := values()
		if got["poisoned"] != 3 || got["replayed"] != 1 {
			t.Fatalf("gauges %v, want poisoned 3, replayed 1", got)
		}
		ages = append(ages, got["age"])
	}
	if ages[0] < 7200 || ages[2] < ages[0] {
		t.Errorf("oldest poisoned ages %v over 3 scrapes, want from 7200 s on, growing", ages)
	}
	if reads != 1 {
		t.Errorf("%d reads for 3 scrapes within the interval, want 1", reads)
	}

	m = metrics.New()
	fail = errors.New("warehouse down")
	m.RegisterPoisonIndex([]string{"poisoned"}, "poisoned", 0, func(context.Context) (map[string]metrics.PoisonState, error) { return nil, fail })
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if v := f.GetMetric()[0].GetGauge().GetValue(); (f.GetName() == "gatekeeper_poison_payloads" || f.GetName() == "gatekeeper_poison_oldest_seconds") && !math.IsNaN(v) {
			t.Errorf("%s: a failed read shows %v, want NaN", f.GetName(), v)
		}
	}

	// None waiting: age 0, whatever Since says.
	m = metrics.New()
	m.RegisterPoisonIndex([]string{"poisoned"}, "poisoned", 0, func(context.Context) (map[string]metrics.PoisonState, error) {
		return map[string]metrics.PoisonState{"poisoned": {Payloads: 0, Since: since}}, nil
	})
	if families, err = m.Registry.Gather(); err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if v := f.GetMetric()[0].GetGauge().GetValue(); f.GetName() == "gatekeeper_poison_oldest_seconds" && v != 0 {
			t.Errorf("oldest poisoned age with none poisoned = %v, want 0", v)
		}
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
