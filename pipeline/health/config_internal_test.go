package health

import (
	"strings"
	"testing"
	"time"
)

// A Config needs only the transport; Validate names every problem at once.
func TestConfigDefaultsAndValidate(t *testing.T) {
	c := Config{PubSub: fakePubSub{}}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Interval != 5*time.Second || c.LogEvery != time.Minute || c.UnhealthyAfter != 5*time.Minute {
		t.Errorf("defaults: %+v", c)
	}
	c = Config{Interval: -time.Second, MaxHandlingTime: -1}
	c.setDefaults()
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	got, at := err.Error(), 0
	for _, w := range []string{"Pub/Sub transport to watch is required", "interval -1s", "max handling time"} {
		i := strings.Index(got[at:], w)
		if i < 0 {
			t.Fatalf("Validate: %q, want %q after position %d", got, w, at)
		}
		at += i + len(w)
	}
}
