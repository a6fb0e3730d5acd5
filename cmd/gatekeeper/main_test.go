package main

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

func parse(t *testing.T, env map[string]string, args ...string) (pipeline.Config, error) {
	t.Helper()
	cfg := pipeline.DefaultConfig()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	ss := bindConfig(fs, &cfg)
	if err := applyEnv(fs, ss, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		return cfg, err
	}
	return cfg, fs.Parse(args)
}

func TestFlagsWinOverEnvironment(t *testing.T) {
	cfg, err := parse(t,
		map[string]string{"TOPIC_ID": "from-env", "HTTP_ADDR": ":9999", "PUBLISH_TIMEOUT": "3s", "STAGES": "apply"},
		"--topic-id", "from-flag")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TopicID != "from-flag" {
		t.Errorf("TopicID = %q, want the flag's value", cfg.TopicID)
	}
	if cfg.HTTPAddr != ":9999" || cfg.PublishTimeout != 3*time.Second {
		t.Errorf("environment not applied: %q %s", cfg.HTTPAddr, cfg.PublishTimeout)
	}
	if len(cfg.Stages) != 1 || cfg.Stages[0] != pipeline.StageApply {
		t.Errorf("STAGES=apply gave %v", cfg.Stages)
	}
}

func TestBadEnvironmentIsReported(t *testing.T) {
	_, err := parse(t, map[string]string{"PUBLISH_TIMEOUT": "soon", "GROUP_MAX_SIZE": "many"})
	if err == nil || !strings.Contains(err.Error(), "PUBLISH_TIMEOUT") || !strings.Contains(err.Error(), "GROUP_MAX_SIZE") {
		t.Fatalf("want both bad variables named, got %v", err)
	}
}

func TestServeHelpDocumentsEveryVariable(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("serve --help exit %d: %s", code, stderr.String())
	}
	help := stderr.String()
	for _, env := range []string{"PROJECT_ID", "DATASET_ID", "TOPIC_ID", "SUBSCRIPTION_ID",
		"GOOGLE_APPLICATION_CREDENTIALS", "PUSHGATEWAY_PROMETHEUS_HOST", "HTTP_ADDR", "WAREHOUSE",
		"PUBSUB_EMULATOR_HOST", "STAGES", "MAX_BODY_BYTES"} {
		if !strings.Contains(help, "["+env+"]") {
			t.Errorf("serve --help does not mention %s", env)
		}
	}
}

func TestInvalidConfigurationNamesEveryProblem(t *testing.T) {
	cfg := pipeline.DefaultConfig()
	cfg.TopicID = "x"
	cfg.Warehouse = "postgres:db"
	cfg.Stages = []pipeline.Stage{"transform"}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"TOPIC_ID", "WAREHOUSE", "STAGES"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

// docs/configuration.md's table and .env.example are how users learn the settings:
// neither may miss one, and both must give the default --help shows and
// the code applies.
func TestEverySettingIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ flag, def string }
	table := map[string]row{}
	for _, line := range strings.Split(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		unquote := func(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "`", "") }
		table[unquote(cells[1])] = row{flag: unquote(cells[2]), def: unquote(cells[3])}
	}
	examples := map[string]string{}
	for _, line := range strings.Split(string(example), "\n") {
		if env, rest, ok := strings.Cut(strings.TrimPrefix(line, "# "), "="); ok && env == strings.ToUpper(env) && !strings.Contains(env, " ") {
			examples[env] = rest
		}
	}

	cfg := pipeline.DefaultConfig()
	level, format := "info", "text" // serve's
	fs := flag.NewFlagSet("doc", flag.ContinueOnError)
	ss := bindSettings(fs, &cfg, &level, &format)
	for _, s := range ss {
		want := defaultText(fs, s)
		r, ok := table[s.env]
		switch {
		case !ok:
			t.Errorf("docs/configuration.md's table lacks %s", s.env)
		case r.flag != "--"+s.flag:
			t.Errorf("docs/configuration.md: %s has flag %q, want --%s", s.env, r.flag, s.flag)
		case r.def != want:
			t.Errorf("docs/configuration.md: %s defaults to %q, but --help and the code say %q", s.env, r.def, want)
		}
		line, ok := examples[s.env]
		if !ok {
			t.Errorf(".env.example lacks %s", s.env)
			continue
		}
		value, comment, _ := strings.Cut(line, "#")
		value = strings.TrimSpace(value)
		f := fs.Lookup(s.flag)
		switch {
		case s.shownDefault != "" && value != s.shownDefault && !strings.Contains(comment, "default"):
			t.Errorf(".env.example: %s=%s neither is the default (%s) nor says what it is", s.env, value, s.shownDefault)
		case s.shownDefault == "" && f.DefValue != "":
			// The example shows the default, in any spelling the flag takes.
			probe := flag.NewFlagSet("probe", flag.ContinueOnError)
			shadow, level, format := pipeline.DefaultConfig(), "info", "text"
			bindSettings(probe, &shadow, &level, &format)
			if err := probe.Set(s.flag, value); err != nil {
				t.Errorf(".env.example: %s=%s: %v", s.env, value, err)
			} else if got := probe.Lookup(s.flag).Value.String(); got != f.DefValue {
				t.Errorf(".env.example: %s=%s, but the default is %s", s.env, value, f.DefValue)
			}
		}
	}
}

// Defaults that depend on the Pub/Sub mode are derived after the
// environment is read: RECEIVE_STREAMS used to be 32 in every mode, Google
// included, because the embedded default was baked into the flag's
// default.
func TestModeDependentDefaultsFollowTheMode(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want int
	}{
		{map[string]string{}, 32},
		{map[string]string{"PUBSUB_EMULATOR_HOST": "127.0.0.1:8085"}, 16},
		{map[string]string{"PUBSUB_MODE": "google", "PROJECT_ID": "p"}, 4},
		{map[string]string{"PUBSUB_EMULATOR_HOST": "127.0.0.1:8085", "RECEIVE_STREAMS": "7"}, 7},
	} {
		for _, v := range []string{"PUBSUB_EMULATOR_HOST", "PUBSUB_MODE", "PROJECT_ID", "RECEIVE_STREAMS", "GOOGLE_APPLICATION_CREDENTIALS"} {
			t.Setenv(v, c.env[v])
		}
		cfg, _, _, err := loadConfig("serve", "", nil, &bytes.Buffer{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.WithDefaults().ReceiveStreams; got != c.want {
			t.Errorf("%v: RECEIVE_STREAMS = %d, want %d", c.env, got, c.want)
		}
	}
}

// Where 0 is a meaningful setting (no retries, no jitter, no batching
// delay), it is kept apart from "unset", which the zero Config field means.
func TestZeroMeansNoneNotTheDefault(t *testing.T) {
	cfg, err := parse(t, map[string]string{"RETRY_MAX": "0", "RETRY_JITTER": "0", "PUBLISH_DELAY_THRESHOLD": "0s",
		"PUBLISH_BUSY_DELAY_THRESHOLD": "0"})
	if err != nil {
		t.Fatal(err)
	}
	eff := cfg.WithDefaults()
	if eff.RetryMax >= 0 || eff.RetryJitter >= 0 || eff.PublishDelayThreshold >= 0 || eff.PublishBusyDelayThreshold >= 0 {
		t.Errorf("RETRY_MAX=0, RETRY_JITTER=0, PUBLISH_DELAY_THRESHOLD=0s, PUBLISH_BUSY_DELAY_THRESHOLD=0 became %d, %v, %v, %v: the defaults, not none",
			eff.RetryMax, eff.RetryJitter, eff.PublishDelayThreshold, eff.PublishBusyDelayThreshold)
	}
	if err := eff.Validate(); err != nil {
		t.Errorf("none is valid: %v", err)
	}
	cfg, err = parse(t, map[string]string{"RETRY_MAX": "3"}, "--retry-jitter", "0.25")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RetryMax != 3 || cfg.RetryJitter != 0.25 {
		t.Errorf("RETRY_MAX=3 --retry-jitter 0.25 gave %d, %v", cfg.RetryMax, cfg.RetryJitter)
	}
	if _, err := parse(t, map[string]string{"RETRY_MAX": "many"}); err == nil {
		t.Error("RETRY_MAX=many was accepted")
	}
}
