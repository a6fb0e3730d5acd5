package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

// composeFile is what the tests read of docker-compose.yml.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Platform    string            `yaml:"platform"`
	Build       string            `yaml:"build"`
	Command     string            `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose composeFile
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return compose
}

// The compose file cannot run here (no Docker engine), so this test keeps it
// honest: every variable it sets is one the service reads, the service's
// dependencies are the emulators it points at, and the ports line up.
func TestComposeFileMatchesConfig(t *testing.T) {
	t.Parallel()
	compose := readCompose(t)
	gk, ok := compose.Services["gatekeeper"]
	if !ok || gk.Build == "" {
		t.Fatal("no gatekeeper service built from the Dockerfile")
	}
	if _, err := os.Stat("../../" + gk.Build + "/Dockerfile"); err != nil {
		t.Errorf("build context has no Dockerfile: %v", err)
	}

	known := gatekeeperVars()
	for k := range gk.Environment {
		if !known[k] {
			t.Errorf("gatekeeper sets %s, which the service does not read", k)
		}
	}
	s, err := parseEnv(gk.Environment)
	if err != nil {
		t.Errorf("compose environment does not parse: %v", err)
	}
	if err := s.config().Validate(); err != nil {
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

// Every image is pinned to a version, so that every clone pulls what was
// tested; and the BigQuery emulator, published for amd64 only, names its
// platform, so that an arm64 host pulls it too (and runs it emulated).
func TestComposeImagesArePinnedAndPullOnArm64(t *testing.T) {
	t.Parallel()
	compose := readCompose(t)
	version := regexp.MustCompile(`^v?\d+(\.\d+)+(-[a-z]+)?$`)
	for name, svc := range compose.Services {
		if svc.Image == "" {
			continue // built here
		}
		_, tag, ok := strings.Cut(svc.Image[strings.LastIndex(svc.Image, "/")+1:], ":")
		if !ok || !version.MatchString(tag) {
			t.Errorf("%s: image %q is not pinned to a version (want a tag such as 1.2.3 or 573.0.0-emulators)", name, svc.Image)
		}
	}
	if bq := compose.Services["bigquery-emulator"]; bq.Platform != "linux/amd64" {
		t.Errorf("bigquery-emulator: platform %q, want linux/amd64 (its image has no arm64 manifest)", bq.Platform)
	}
	if emu := compose.Services["pubsub-emulator"]; !strings.HasSuffix(emu.Image, "-emulators") {
		t.Errorf("pubsub-emulator: image %q, want a VERSION-emulators tag", emu.Image)
	}
}

// Every service can be waited for, and is: each has a healthcheck, and each
// depends_on waits for a service's health, not merely for its start.
func TestComposeStartOrder(t *testing.T) {
	t.Parallel()
	compose := readCompose(t)
	for _, want := range []string{"gatekeeper", "pubsub-emulator", "bigquery-emulator", "prometheus", "pushgateway", "grafana"} {
		if _, ok := compose.Services[want]; !ok {
			t.Errorf("no %s service", want)
		}
	}
	for name, svc := range compose.Services {
		if test := svc.Healthcheck.Test; len(test) < 2 || test[0] == "NONE" {
			t.Errorf("%s has no healthcheck (%v)", name, test)
		}
		for dep, d := range svc.DependsOn {
			target, ok := compose.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on %s, which is no service", name, dep)
			case d.Condition != "service_healthy":
				t.Errorf("%s depends on %s with condition %q, not service_healthy", name, dep, d.Condition)
			case len(target.Healthcheck.Test) < 2:
				t.Errorf("%s waits for the health of %s, which has no healthcheck", name, dep)
			}
		}
	}
	// prom/* images are busybox: wget, no curl and no bash.
	for _, name := range []string{"prometheus", "pushgateway", "grafana"} {
		if test := compose.Services[name].Healthcheck.Test; len(test) < 2 || test[1] != "wget" {
			t.Errorf("%s healthcheck %v should use the image's wget", name, test)
		}
	}
	// goccy/bigquery-emulator's image is debian with the binary added:
	// nothing there asks for bash; perl-base is Essential.
	if test := compose.Services["bigquery-emulator"].Healthcheck.Test; len(test) < 2 || test[1] != "perl" {
		t.Errorf("bigquery-emulator healthcheck %v should not need bash", test)
	}
}

// bind is one volume of a service: a path in the repo (relative to its
// root), or a named volume, mounted at target.
type bind struct {
	source, target string
	named          bool
}

func binds(t *testing.T, compose composeFile, service string) []bind {
	t.Helper()
	var out []bind
	for _, v := range compose.Services[service].Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Errorf("%s: volume %q has no target", service, v)
			continue
		}
		b := bind{source: parts[0], target: parts[1]}
		if !strings.HasPrefix(b.source, ".") && !strings.HasPrefix(b.source, "/") {
			b.named = true
			if _, ok := compose.Volumes[b.source]; !ok {
				t.Errorf("%s mounts volume %q, which the top-level volumes do not declare", service, b.source)
			}
		}
		out = append(out, b)
	}
	return out
}

// repoPath is the file of the repository that service sees at
// containerPath, through its bind mounts ("" when none covers it).
func repoPath(t *testing.T, compose composeFile, service, containerPath string) string {
	t.Helper()
	for _, b := range binds(t, compose, service) {
		if b.named {
			continue
		}
		if rel, err := filepath.Rel(b.target, containerPath); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.Join("../..", b.source, rel)
		}
	}
	return ""
}

// The files the compose file mounts from the repository exist, and they
// agree with the services: Prometheus scrapes gatekeeper where it listens
// and the Pushgateway gatekeeper pushes to; Grafana's datasource is that
// Prometheus and the dashboard names it by its uid.
func TestComposeObservabilityFiles(t *testing.T) {
	t.Parallel()
	compose := readCompose(t)
	for name := range compose.Services {
		for _, b := range binds(t, compose, name) {
			if b.named {
				continue
			}
			if _, err := os.Stat(filepath.Join("../..", b.source)); err != nil {
				t.Errorf("%s mounts %s from the repository: %v", name, b.source, err)
			}
		}
	}

	gk := compose.Services["gatekeeper"]
	pushHost := gk.Environment["PUSHGATEWAY_PROMETHEUS_HOST"]
	pgName, pgPort, err := net.SplitHostPort(pushHost)
	if err != nil {
		t.Fatalf("gatekeeper's PUSHGATEWAY_PROMETHEUS_HOST %q: %v", pushHost, err)
	}
	pg, ok := compose.Services[pgName]
	if !ok || !strings.HasPrefix(pg.Image, "prom/pushgateway") {
		t.Errorf("PUSHGATEWAY_PROMETHEUS_HOST %q names no prom/pushgateway service", pushHost)
	}
	if pgPort != "9091" || strings.Contains(pg.Command, "listen-address") {
		t.Errorf("the Pushgateway listens on its default :9091, not on %q (command %q)", pgPort, pg.Command)
	}

	// Prometheus: its config file, as the container sees it.
	prom := compose.Services["prometheus"]
	configIn := ""
	for _, arg := range strings.Fields(prom.Command) {
		if v, ok := strings.CutPrefix(arg, "--config.file="); ok {
			configIn = v
		}
	}
	if configIn == "" {
		t.Fatalf("prometheus command %q has no --config.file", prom.Command)
	}
	configPath := repoPath(t, compose, "prometheus", configIn)
	if configPath != "../../deploy/prometheus/prometheus.yml" {
		t.Fatalf("prometheus reads %s, which is %q in the repository, not deploy/prometheus/prometheus.yml", configIn, configPath)
	}
	cfg := readPrometheusConfig(t, configPath)
	for _, rf := range cfg.RuleFiles {
		if _, err := os.Stat(filepath.Join(filepath.Dir(configPath), rf)); err != nil {
			t.Errorf("prometheus.yml loads rule file %s: %v", rf, err)
		}
	}
	if len(cfg.RuleFiles) == 0 {
		t.Error("prometheus.yml loads no rule files (alerts.yml)")
	}
	_, httpPort, _ := net.SplitHostPort(gk.Environment["HTTP_ADDR"])
	gkJob := cfg.jobFor("gatekeeper:" + httpPort)
	if gkJob == nil {
		t.Errorf("prometheus.yml scrapes no gatekeeper:%s (gatekeeper's HTTP_ADDR %s)", httpPort, gk.Environment["HTTP_ADDR"])
	} else {
		if gkJob.MetricsPath != "" && gkJob.MetricsPath != "/metrics" {
			t.Errorf("gatekeeper is scraped at %s, it serves /metrics", gkJob.MetricsPath)
		}
		// The dashboard and the alerts select the scraped copy by its job,
		// which the pushed copy must not be mistaken for.
		if gkJob.JobName != gatekeeperScrapeJob {
			t.Errorf("gatekeeper's scrape job is %q; the dashboard and alerts select job=%q", gkJob.JobName, gatekeeperScrapeJob)
		}
		pushJob := gk.Environment["PUSH_JOB"]
		if pushJob == "" {
			pushJob = pipeline.DefaultConfig().PushJob
		}
		if pushJob == gkJob.JobName {
			t.Errorf("PUSH_JOB %q is the scrape job's name: the pushed series would be counted with the scraped ones", pushJob)
		}
	}
	if pgJob := cfg.jobFor(pushHost); pgJob == nil {
		t.Errorf("prometheus.yml does not scrape the Pushgateway at %s", pushHost)
	} else if !pgJob.HonorLabels {
		t.Errorf("the Pushgateway's scrape job %q lacks honor_labels: true, so pushed series lose their job and instance", pgJob.JobName)
	}

	// Grafana: provisioning and dashboards as the container sees them.
	graf := compose.Services["grafana"]
	dsDir := repoPath(t, compose, "grafana", "/etc/grafana/provisioning/datasources")
	dbDir := repoPath(t, compose, "grafana", "/etc/grafana/provisioning/dashboards")
	if dsDir == "" || dbDir == "" {
		t.Fatalf("grafana mounts no provisioning directory at /etc/grafana/provisioning (volumes %v)", graf.Volumes)
	}
	var uids []string
	for _, f := range yamlFiles(t, dsDir) {
		var ds struct {
			Datasources []struct {
				UID  string `yaml:"uid"`
				Type string `yaml:"type"`
				URL  string `yaml:"url"`
			} `yaml:"datasources"`
		}
		readYAML(t, f, &ds)
		for _, d := range ds.Datasources {
			if d.Type == "prometheus" {
				if d.URL != "http://prometheus:9090" {
					t.Errorf("%s: datasource %s points at %s, not the prometheus service", f, d.UID, d.URL)
				}
				uids = append(uids, d.UID)
			}
		}
	}
	if len(uids) != 1 {
		t.Fatalf("want one provisioned Prometheus datasource, found uids %v", uids)
	}
	var dashboardDirs []string
	for _, f := range yamlFiles(t, dbDir) {
		var prov struct {
			Providers []struct {
				Options struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		readYAML(t, f, &prov)
		for _, p := range prov.Providers {
			dir := repoPath(t, compose, "grafana", p.Options.Path)
			if dir == "" {
				t.Errorf("%s: dashboards path %s is mounted from nowhere", f, p.Options.Path)
				continue
			}
			dashboardDirs = append(dashboardDirs, dir)
		}
	}
	dashboard := "../../deploy/grafana/dashboards/gatekeeper.json"
	found := false
	for _, d := range dashboardDirs {
		found = found || filepath.Clean(d) == filepath.Dir(dashboard)
	}
	if !found {
		t.Errorf("no dashboard provider loads %s (providers load %v)", filepath.Dir(dashboard), dashboardDirs)
	}
	if home := graf.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		if p := repoPath(t, compose, "grafana", home); filepath.Clean(p) != dashboard {
			t.Errorf("the home dashboard %s is %q in the repository, not %s", home, p, dashboard)
		}
	}
	if graf.Environment["GF_AUTH_ANONYMOUS_ENABLED"] != "true" {
		t.Error("grafana: anonymous access is off; the local stack should need no login")
	}
	d := readDashboard(t, dashboard)
	if len(d.targets) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for _, tg := range d.targets {
		if tg.datasourceUID != uids[0] {
			t.Errorf("panel %q query %s uses datasource %q, not the provisioned %q", tg.panel, tg.refID, tg.datasourceUID, uids[0])
		}
	}
}

// gatekeeperScrapeJob is the job of the scraped series, which every
// dashboard and alert expression selects (prometheus.yml says why).
const gatekeeperScrapeJob = "gatekeeper-scrape"

// promConfig is what the tests read of a prometheus.yml.
type promConfig struct {
	Global        map[string]any     `yaml:"global"`
	RuleFiles     []string           `yaml:"rule_files"`
	ScrapeConfigs []promScrapeConfig `yaml:"scrape_configs"`
}

type promScrapeConfig struct {
	JobName       string `yaml:"job_name"`
	MetricsPath   string `yaml:"metrics_path"`
	HonorLabels   bool   `yaml:"honor_labels"`
	StaticConfigs []struct {
		Targets []string `yaml:"targets"`
	} `yaml:"static_configs"`
}

// jobFor is the scrape job with target, or nil.
func (c *promConfig) jobFor(target string) *promScrapeConfig {
	for i := range c.ScrapeConfigs {
		for _, sc := range c.ScrapeConfigs[i].StaticConfigs {
			for _, tg := range sc.Targets {
				if tg == target {
					return &c.ScrapeConfigs[i]
				}
			}
		}
	}
	return nil
}

func readPrometheusConfig(t *testing.T, path string) promConfig {
	t.Helper()
	var c promConfig
	readYAML(t, path, &c)
	return c
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, ext := range []string{"*.yml", "*.yaml"} {
		m, err := filepath.Glob(filepath.Join(dir, ext))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	if len(out) == 0 {
		t.Errorf("no provisioning file in %s", dir)
	}
	return out
}

// dashboardTarget is one query of a dashboard panel.
type dashboardTarget struct {
	panel, refID, expr, datasourceUID string
}

type dashboard struct {
	uid     string
	targets []dashboardTarget
}

// readDashboard reads every panel's queries, rows' nested panels included.
func readDashboard(t *testing.T, path string) dashboard {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title      string `json:"title"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID      string `json:"refId"`
			Expr       string `json:"expr"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var top struct {
		UID    string            `json:"uid"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	d := dashboard{uid: top.UID}
	var walk func(raws []json.RawMessage)
	walk = func(raws []json.RawMessage) {
		for _, r := range raws {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("%s: panel: %v", path, err)
			}
			for _, tg := range p.Targets {
				uid := ""
				if tg.Datasource != nil {
					uid = tg.Datasource.UID
				} else if p.Datasource != nil {
					uid = p.Datasource.UID
				}
				d.targets = append(d.targets, dashboardTarget{panel: p.Title, refID: tg.RefID, expr: tg.Expr, datasourceUID: uid})
			}
			walk(p.Panels)
		}
	}
	walk(top.Panels)
	return d
}

// Nothing in the stack asks who is calling (gatekeeper runs with AUTH:
// none, the emulators, Prometheus, the Pushgateway and Grafana take
// anyone), so every published port is bound to loopback: published on
// every interface, anyone on the network could write into the warehouse.
// A gatekeeper with BACKENDS_FILE (and not AUTH: none) is the one
// service that may publish more widely.
func TestComposePublishesOnLoopback(t *testing.T) {
	t.Parallel()
	compose := readCompose(t)
	checked := 0
	for name, svc := range compose.Services {
		authenticated := name == "gatekeeper" && svc.Environment["BACKENDS_FILE"] != "" && svc.Environment["AUTH"] != "none"
		for _, p := range svc.Ports {
			checked++
			if !authenticated && !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %q on every interface, unauthenticated; bind it to loopback: \"127.0.0.1:%s\"", name, p, p)
			}
		}
	}
	if checked < 6 {
		t.Errorf("checked %d published ports, want the stack's 6 or more", checked)
	}
}
