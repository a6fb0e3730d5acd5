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
	m.RegisterPoisonIndex([]string{"poisoned", "replayed"}, time.Hour, func(context.Context) (map[string]int, error) {
		reads++
		return map[string]int{"poisoned": 3, "replayed": 1}, fail
	})
	values := func() map[string]float64 {
		families, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, f := range families {
			if f.GetName() != "gatekeeper_poison_payloads" {
				continue
			}
			for _, s := range f.GetMetric() {
				got[label(s, "state")] = s.GetGauge().GetValue()
			}
		}
		return got
	}
	for range 3 {
		if got := values(); got["poisoned"] != 3 || got["replayed"] != 1 {
			t.Fatalf("gauges %v, want poisoned 3, replayed 1", got)
		}
	}
	if reads != 1 {
		t.Errorf("%d reads for 3 scrapes within the interval, want 1", reads)
	}

	m = metrics.New()
	fail = errors.New("warehouse down")
	m.RegisterPoisonIndex([]string{"poisoned"}, 0, func(context.Context) (map[string]int, error) { return nil, fail })
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "gatekeeper_poison_payloads" && !math.IsNaN(f.GetMetric()[0].GetGauge().GetValue()) {
			t.Errorf("a failed read shows %v, want NaN", f.GetMetric()[0].GetGauge().GetValue())
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
