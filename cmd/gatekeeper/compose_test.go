package main

import (
	"flag"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// The compose file cannot run here (no Docker engine), so this test keeps it
// honest: every variable it sets is one the service reads, the service's
// dependencies are the emulators it points at, and the ports line up.
func TestComposeFileMatchesConfig(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       string            `yaml:"build"`
			Command     string            `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			DependsOn   map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	gk, ok := compose.Services["gatekeeper"]
	if !ok || gk.Build == "" {
		t.Fatal("no gatekeeper service built from the Dockerfile")
	}
	if _, err := os.Stat("../../" + gk.Build + "/Dockerfile"); err != nil {
		t.Errorf("build context has no Dockerfile: %v", err)
	}

	cfg := pipeline.DefaultConfig()
	fs := flag.NewFlagSet("compose", flag.ContinueOnError)
	known := map[string]bool{"LOG_LEVEL": true, "LOG_FORMAT": true}
	for _, s := range bindConfig(fs, &cfg) {
		known[s.env] = true
	}
	for k := range gk.Environment {
		if !known[k] {
			t.Errorf("gatekeeper sets %s, which the service does not read", k)
		}
	}
	if err := applyEnv(fs, bindConfig(flag.NewFlagSet("c", flag.ContinueOnError), &cfg), func(k string) (string, bool) {
		v, ok := gk.Environment[k]
		return v, ok
	}); err != nil {
		t.Errorf("compose environment does not parse: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("compose configuration is invalid: %v", err)
	}

	emu, ok := compose.Services["pubsub-emulator"]
	if !ok {
		t.Fatal("no pubsub-emulator service")
	}
	host := gk.Environment["PUBSUB_EMULATOR_HOST"]
	if host != "pubsub-emulator:8085" || !strings.Contains(emu.Command, "--host-port=0.0.0.0:8085") {
		t.Errorf("gatekeeper points at %q but the emulator command is %q", host, emu.Command)
	}
	if !strings.Contains(emu.Command, "--project="+gk.Environment["PROJECT_ID"]) {
		t.Errorf("emulator project differs from PROJECT_ID %q: %q", gk.Environment["PROJECT_ID"], emu.Command)
	}
	bq, ok := compose.Services["bigquery-emulator"]
	if !ok {
		t.Fatal("no bigquery-emulator service")
	}
	if gk.Environment["WAREHOUSE"] != "bigquery" || gk.Environment["BIGQUERY_EMULATOR_HOST"] != "bigquery-emulator:9050" ||
		!strings.Contains(bq.Command, "--port=9050") {
		t.Errorf("gatekeeper's warehouse (%q at %q) is not the emulator (%q)",
			gk.Environment["WAREHOUSE"], gk.Environment["BIGQUERY_EMULATOR_HOST"], bq.Command)
	}
	for _, want := range []string{"--project=" + gk.Environment["PROJECT_ID"], "--dataset=" + gk.Environment["DATASET_ID"]} {
		if !strings.Contains(bq.Command, want) {
			t.Errorf("bigquery emulator command %q lacks %s", bq.Command, want)
		}
	}
	for dep, d := range gk.DependsOn {
		if _, ok := compose.Services[dep]; !ok || d.Condition != "service_healthy" {
			t.Errorf("depends_on %s: service missing or not waited for health (%q)", dep, d.Condition)
		}
		if len(compose.Services[dep].Healthcheck.Test) == 0 {
			t.Errorf("%s has no healthcheck to wait for", dep)
		}
	}
	if len(gk.Healthcheck.Test) < 3 || gk.Healthcheck.Test[1] != "/gatekeeper" || gk.Healthcheck.Test[2] != "healthcheck" {
		t.Errorf("gatekeeper healthcheck %v should run the binary's healthcheck command", gk.Healthcheck.Test)
	}
	_, port, _ := strings.Cut(gk.Environment["HTTP_ADDR"], ":")
	if len(gk.Ports) == 0 || !strings.HasSuffix(gk.Ports[0], ":"+port) {
		t.Errorf("published ports %v do not reach HTTP_ADDR %s", gk.Ports, gk.Environment["HTTP_ADDR"])
	}
}
