package operator_test

import (
	"strings"
	"testing"

	"github.com/gatekeeper/gatekeeper/pipeline/operator"
)

// Each constructor refuses a Config that lacks what it stands on, naming
// every missing part at once, in a stable order.
func TestConfigsReportEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	_, consoleErr := operator.NewConsole(operator.ConsoleConfig{}, nil)
	_, adminErr := operator.NewAdmin(operator.AdminConfig{}, nil)
	_, statusErr := operator.NewStatus(operator.StatusConfig{}, nil)
	_, indexerErr := operator.NewIndexer(operator.IndexerConfig{}, nil)
	for _, c := range []struct {
		name string
		err  error
		want []string
	}{
		{"console", consoleErr, []string{"Store", "Publishers", "TopicID", "OrderedTopicID"}},
		{"admin", adminErr, []string{"Console", "Status"}},
		{"status", statusErr, []string{"Console"}},
		{"indexer", indexerErr, []string{"Subscriptions", "Subscription", "Events"}},
	} {
		if c.err == nil {
			t.Errorf("%s: the zero Config was accepted", c.name)
			continue
		}
		lines := strings.Split(c.err.Error(), "\n")
		if len(lines) != len(c.want) {
			t.Errorf("%s: %q, want %d problems", c.name, c.err, len(c.want))
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(lines[i], w+" is required") {
				t.Errorf("%s: problem %d is %q, want %s", c.name, i, lines[i], w)
			}
		}
	}
}
