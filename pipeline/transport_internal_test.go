package pipeline

import (
	"testing"
	"time"
)

// PUBLISH_DELAY_THRESHOLD and PUBLISH_BUSY_DELAY_THRESHOLD, with their
// defaults and their "none" (negative), reach the transport as the delays
// it takes: a busy publisher only when its delay is the longer.
func TestTheBusyPublisherIsMadeOnlyWhenItsDelayIsLonger(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		short, busy time.Duration
		want        bool
	}{
		{0, 0, true}, // the defaults: 1ms and 5ms
		{time.Millisecond, 5 * time.Millisecond, true},
		{-1, 0, false}, // PUBLISH_DELAY_THRESHOLD=0: no delay, under load either
		{-1, 5 * time.Millisecond, true},
		{time.Millisecond, -1, false},
		{time.Millisecond, time.Millisecond, false},
		{time.Millisecond, 500 * time.Microsecond, false},
	} {
		cfg := DefaultConfig()
		cfg.PubSubMode = PubSubEmbedded
		cfg.Stages = []Stage{StageIngest}
		cfg.PublishDelayThreshold, cfg.PublishBusyDelayThreshold = c.short, c.busy
		tc := transportConfig(cfg.WithDefaults(), nil, nil)
		if tc.PublishDelay < 0 || tc.PublishBusyDelay < 0 {
			t.Errorf("PUBLISH_DELAY_THRESHOLD %s, PUBLISH_BUSY_DELAY_THRESHOLD %s: negative delays %s, %s reach the transport", c.short, c.busy, tc.PublishDelay, tc.PublishBusyDelay)
		}
		if got := tc.PublishBusyDelay > tc.PublishDelay; got != c.want {
			t.Errorf("PUBLISH_DELAY_THRESHOLD %s, PUBLISH_BUSY_DELAY_THRESHOLD %s: busy publisher made %v, want %v", c.short, c.busy, got, c.want)
		}
	}
}
