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

// The README's table and .env.example are how users learn the settings:
// neither may miss one.
func TestEverySettingIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg := pipeline.DefaultConfig()
	for _, s := range bindConfig(flag.NewFlagSet("doc", flag.ContinueOnError), &cfg) {
		if !strings.Contains(string(readme), "| `"+s.env+"` | `--"+s.flag+"`") {
			t.Errorf("README's configuration table lacks %s (--%s)", s.env, s.flag)
		}
		if !strings.Contains(string(example), s.env+"=") {
			t.Errorf(".env.example lacks %s", s.env)
		}
	}
}
