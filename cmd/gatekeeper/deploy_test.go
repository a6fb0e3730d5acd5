package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"gopkg.in/yaml.v3"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
)

// k8sContainer is what the tests read of a container, in a Cloud Run
// service (Knative) or a Kubernetes Deployment alike.
type k8sContainer struct {
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"` // a number or a port's name
	} `yaml:"httpGet"`
}

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name        string            `yaml:"name"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec struct {
		Template struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
				Labels      map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int            `yaml:"terminationGracePeriodSeconds"`
				Containers                    []k8sContainer `yaml:"containers"`
				Volumes                       []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
						Items      []struct {
							Path string `yaml:"path"`
						} `yaml:"items"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		// PodMonitoring
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Endpoints []struct {
			Port any    `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

// readManifests reads every document of a YAML file in deploy/.
func readManifests(t *testing.T, path string) []k8sObject {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("../..", path))
	if err != nil {
		t.Fatal(err)
	}
	var objs []k8sObject
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var o k8sObject
		if err := dec.Decode(&o); err != nil {
			if err.Error() == "EOF" {
				return objs
			}
			t.Fatalf("%s: %v", path, err)
		}
		objs = append(objs, o)
	}
}

// The manifests in deploy/ run the service as docs/deploy.md says: every
// variable is one the service reads, the configuration is valid, each
// stage is the one its name says, the resources are checked rather than
// created, the probes ask /readyz and /healthz on the port the service
// listens on, and the drain ends before the platform kills the process.
func TestDeployManifestsMatchTheConfig(t *testing.T) {
	t.Parallel()
	known := gatekeeperVars()
	for _, m := range []struct {
		path, stage string
		cloudRun    bool
	}{
		{"deploy/cloudrun/ingest.yaml", "ingest", true},
		{"deploy/cloudrun/apply.yaml", "apply", true},
		{"deploy/kubernetes/apply.yaml", "apply", false},
	} {
		objs := readManifests(t, m.path)
		var svc *k8sObject
		var monitors []k8sObject
		for i, o := range objs {
			switch o.Kind {
			case "Service", "Deployment":
				svc = &objs[i]
			case "PodMonitoring":
				monitors = append(monitors, o)
			}
		}
		if svc == nil || len(svc.Spec.Template.Spec.Containers) != 1 {
			t.Errorf("%s: no Service or Deployment with one container", m.path)
			continue
		}
		c := svc.Spec.Template.Spec.Containers[0]
		env := map[string]string{}
		for _, e := range c.Env {
			if !known[e.Name] {
				t.Errorf("%s sets %s, which the service does not read", m.path, e.Name)
			}
			env[e.Name] = e.Value
		}
		s, err := parseEnv(env, c.Args[1:]...)
		if err != nil || len(c.Args) == 0 || c.Args[0] != "serve" {
			t.Errorf("%s: args %v, environment does not parse: %v", m.path, c.Args, err)
			continue
		}
		cfg := s.config()
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: invalid configuration: %v", m.path, err)
		}
		cfg = cfg.WithDefaults()
		if got := fmt.Sprint(cfg.Stages); got != "["+m.stage+"]" || !cfg.DoNotCreateResources || cfg.ResolvedPubSubMode() != pipeline.PubSubGoogle {
			t.Errorf("%s: stages %s, CREATE_RESOURCES=%t, Pub/Sub %s; want [%s], false, google", m.path, got, !cfg.DoNotCreateResources, cfg.ResolvedPubSubMode(), m.stage)
		}
		if m.stage == "ingest" && cfg.OutboxEnabled() || m.stage == "apply" && cfg.Warehouse != "bigquery" {
			t.Errorf("%s: outbox %t, warehouse %s: the ingest stage is stateless on Google, the apply stage writes BigQuery", m.path, cfg.OutboxEnabled(), cfg.Warehouse)
		}

		// The probes and the port.
		_, port, _ := strings.Cut(cfg.HTTPAddr, ":")
		if len(c.Ports) != 1 || strconv.Itoa(c.Ports[0].ContainerPort) != port {
			t.Errorf("%s: container ports %+v, want %s (HTTP_ADDR %s)", m.path, c.Ports, port, cfg.HTTPAddr)
		}
		probes := map[string]*k8sProbe{"startup": c.StartupProbe, "liveness": c.LivenessProbe}
		want := map[string]string{"startup": "/readyz", "liveness": "/healthz"}
		if !m.cloudRun {
			probes["readiness"], want["readiness"] = c.ReadinessProbe, "/readyz"
		}
		for name, p := range probes {
			if p == nil || p.HTTPGet.Path != want[name] || fmt.Sprint(p.HTTPGet.Port) != port && fmt.Sprint(p.HTTPGet.Port) != c.Ports[0].Name {
				t.Errorf("%s: %s probe %+v, want GET %s on port %s", m.path, name, p, want[name], port)
			}
		}

		// The drain against the platform's kill.
		drain := cfg.ShutdownDelay + cfg.ShutdownTimeout
		if m.cloudRun && drain >= 10*time.Second {
			t.Errorf("%s: SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT = %s; Cloud Run kills 10 s after SIGTERM", m.path, drain)
		}
		if grace := time.Duration(svc.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second; !m.cloudRun && grace <= drain {
			t.Errorf("%s: terminationGracePeriodSeconds %s, not more than the drain %s", m.path, grace, drain)
		}

		// The apply stage on Cloud Run: CPU always, never zero instances.
		ann := svc.Spec.Template.Metadata.Annotations
		if m.cloudRun && m.stage == "apply" {
			minScale, _ := strconv.Atoi(ann["autoscaling.knative.dev/minScale"])
			if ann["run.googleapis.com/cpu-throttling"] != "false" || minScale < 1 {
				t.Errorf("%s: cpu-throttling %q, minScale %d; a pull subscriber needs CPU always allocated and at least one instance",
					m.path, ann["run.googleapis.com/cpu-throttling"], minScale)
			}
		}

		// BACKENDS_FILE is the mounted secret.
		if m.stage == "ingest" {
			mounted := false
			for _, vm := range c.VolumeMounts {
				for _, v := range svc.Spec.Template.Spec.Volumes {
					if v.Name == vm.Name && v.Secret != nil && len(v.Secret.Items) == 1 &&
						filepath.Join(vm.MountPath, v.Secret.Items[0].Path) == cfg.BackendsFile {
						mounted = true
					}
				}
			}
			if !mounted {
				t.Errorf("%s: BACKENDS_FILE %s is not the file of a mounted secret", m.path, cfg.BackendsFile)
			}
		}

		// A PodMonitoring scrapes /metrics as the job alerts.yml selects.
		for _, pm := range monitors {
			labels := svc.Spec.Template.Metadata.Labels
			if pm.Metadata.Name != "gatekeeper-scrape" || len(pm.Spec.Endpoints) != 1 || pm.Spec.Endpoints[0].Path != "/metrics" ||
				fmt.Sprint(pm.Spec.Endpoints[0].Port) != c.Ports[0].Name || len(pm.Spec.Selector.MatchLabels) == 0 {
				t.Errorf("%s: PodMonitoring %+v; want gatekeeper-scrape on /metrics, port %s", m.path, pm, c.Ports[0].Name)
			}
			for k, v := range pm.Spec.Selector.MatchLabels {
				if labels[k] != v {
					t.Errorf("%s: PodMonitoring selects %s=%s, which the pods do not carry", m.path, k, v)
				}
			}
		}
	}
}

// docCommands are the shell commands of docs/deploy.md's sh blocks, each a
// line, with continuation lines joined.
func docCommands(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	in, cont := false, ""
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "```sh":
			in = true
		case l == "```":
			in = false
		case in:
			if s, ok := strings.CutSuffix(l, `\`); ok {
				cont += strings.TrimSpace(s) + " "
				continue
			}
			cmds = append(cmds, cont+strings.TrimSpace(l))
			cont = ""
		}
	}
	return cmds
}

// docCommand is the one command of docs/deploy.md that starts with prefix
// and contains each of also.
func docCommand(t *testing.T, cmds []string, prefix string, also ...string) string {
	t.Helper()
	var found []string
	for _, c := range cmds {
		if strings.HasPrefix(c, prefix) && !slices.ContainsFunc(also, func(a string) bool { return !strings.Contains(c, a) }) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("docs/deploy.md: %d commands start with %q and contain %q, want 1: %q", len(found), prefix, also, found)
	}
	return found[0]
}

// The gcloud commands docs/deploy.md gives for the topics and
// subscriptions are those of what the stages need on Google, with the
// options the service would create them with; and the Rules resource the
// page builds from alerts.yml holds its rules unchanged.
func TestDeployDocResourcesAndRules(t *testing.T) {
	t.Parallel()
	cmds := docCommands(t)
	var documented []string
	for _, c := range cmds {
		if strings.HasPrefix(c, "gcloud pubsub topics create ") || strings.HasPrefix(c, "gcloud pubsub subscriptions create ") {
			documented = append(documented, c)
		}
	}
	var want []string
	for _, r := range transport.Needs(transport.Config{Mode: transport.ModeGoogle, ProjectID: "p", Apply: true}) {
		want = append(want, r.GcloudCreate("$PROJECT_ID"))
	}
	if !slices.Equal(documented, want) {
		t.Errorf("docs/deploy.md creates\n%s\nwant\n%s", strings.Join(documented, "\n"), strings.Join(want, "\n"))
	}

	rules := docCommand(t, cmds, "{ printf ", "Rules")
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(mustAbs(t, "../.."), "deploy"), filepath.Join(dir, "deploy")); err != nil {
		t.Fatal(err)
	}
	sh := exec.Command("sh", "-c", rules)
	sh.Dir = dir
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", rules, err, out)
	}
	var got struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       any    `yaml:"spec"`
	}
	readYAML(t, filepath.Join(dir, "rules.yaml"), &got)
	var alerts any
	readYAML(t, "../../deploy/prometheus/alerts.yml", &alerts)
	if got.APIVersion != "monitoring.googleapis.com/v1" || got.Kind != "Rules" || fmt.Sprint(got.Spec) != fmt.Sprint(alerts) || !strings.Contains(fmt.Sprint(alerts), "GatekeeperApplyLagHigh") {
		t.Errorf("rules.yaml is %s %s, spec equal to alerts.yml: %t", got.APIVersion, got.Kind, fmt.Sprint(got.Spec) == fmt.Sprint(alerts))
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// googleToEmulators swaps, in a documented command, Google for the
// emulators: the Pub/Sub mode for the emulator's host, and BigQuery's
// credentials for the BigQuery emulator's host. Nothing else changes.
func googleToEmulators(cmd, pubsubHost, bigqueryHost string) string {
	cmd = strings.Replace(cmd, "PUBSUB_MODE=google", "PUBSUB_MODE=emulator PUBSUB_EMULATOR_HOST="+pubsubHost, 1)
	return strings.Replace(cmd, "WAREHOUSE=bigquery", "WAREHOUSE=bigquery BIGQUERY_EMULATOR_HOST="+bigqueryHost, 1)
}

// docServe splits a documented `VAR=value … gatekeeper serve` into its
// settings and arguments.
func docServe(t *testing.T, cmd string) (map[string]string, []string) {
	t.Helper()
	env := map[string]string{}
	fields := strings.Fields(cmd)
	for i, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok && !strings.HasPrefix(f, "-") && regexp.MustCompile(`^[A-Z_]+$`).MatchString(k) {
			env[k] = v
			continue
		}
		if f != "gatekeeper" || i+1 >= len(fields) || fields[i+1] != "serve" {
			t.Fatalf("%q: want VAR=value … gatekeeper serve", cmd)
		}
		return env, fields[i+2:]
	}
	t.Fatalf("%q: no gatekeeper serve", cmd)
	return nil, nil
}

// docs/deploy.md's production commands work as written, against the
// emulators, with only the credentials (Google's for the emulators'), the
// project and the listening ports swapped: the gcloud commands create the
// topics and subscriptions, `gatekeeper keys new` makes the backends file,
// both `gatekeeper check` commands pass, and both stages, started as the
// page starts them, take a payload with the key to the warehouse.
func TestDeployDocCommandsOnTheEmulators(t *testing.T) {
	pubsubHost, bigqueryHost := os.Getenv("PUBSUB_EMULATOR_HOST"), os.Getenv("BIGQUERY_EMULATOR_HOST")
	if pubsubHost == "" || bigqueryHost == "" {
		t.Skip("needs PUBSUB_EMULATOR_HOST and BIGQUERY_EMULATOR_HOST (its dataset gatekeeper)")
	}
	if _, err := exec.LookPath("gcloud"); err != nil {
		t.Skip("needs gcloud, to run the page's gcloud pubsub commands")
	}
	project := os.Getenv("BIGQUERY_EMULATOR_PROJECT")
	if project == "" {
		project = "test"
	}
	cmds := docCommands(t)
	dir := t.TempDir()
	ctx := context.Background()

	// A clean slate: the resources the page creates, gone.
	client, err := pubsub.NewClient(ctx, project, pipeline.ClientOptions(pipeline.Config{EmulatorHost: pubsubHost})...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	needs := transport.Needs(transport.Config{Mode: transport.ModeGoogle, ProjectID: project, Apply: true})
	for _, r := range needs {
		if r.Subscription != "" {
			_ = client.SubscriptionAdminClient.DeleteSubscription(ctx, &pubsubpb.DeleteSubscriptionRequest{Subscription: transport.SubscriptionPath(project, r.Subscription)})
		}
	}
	for _, r := range needs {
		if r.Subscription == "" {
			_ = client.TopicAdminClient.DeleteTopic(ctx, &pubsubpb.DeleteTopicRequest{Topic: transport.TopicPath(project, r.Topic)})
		}
	}

	// The shell of the page: gatekeeper on PATH, the project exported,
	// gcloud pointed at the emulator with a dummy token (its credentials).
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("emulator\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shellEnv := append(childEnv(map[string]string{"PROJECT_ID": project}),
		"PATH="+filepath.Dir(binary(t))+string(os.PathListSeparator)+os.Getenv("PATH"),
		"CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB=http://"+pubsubHost+"/",
		"CLOUDSDK_AUTH_ACCESS_TOKEN_FILE="+token,
		"CLOUDSDK_CONFIG="+filepath.Join(dir, "gcloud"),
		"CLOUDSDK_CORE_DISABLE_PROMPTS=1")
	shell := func(cmd string) string {
		t.Helper()
		c := exec.Command("sh", "-c", cmd)
		c.Dir, c.Env = dir, shellEnv
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return string(out)
	}
	for _, c := range cmds {
		if strings.HasPrefix(c, "gcloud pubsub topics create ") || strings.HasPrefix(c, "gcloud pubsub subscriptions create ") {
			shell(c)
		}
	}
	shell(docCommand(t, cmds, "gatekeeper keys new "))
	for _, stage := range []string{"STAGES=ingest", "STAGES=apply"} {
		out := shell(googleToEmulators(docCommand(t, cmds, "PUBSUB_MODE=google", stage, "gatekeeper check"), pubsubHost, bigqueryHost))
		if !strings.Contains(out, "checks passed") || !regexp.MustCompile(`(?m)^iam +skipped +emulator`).MatchString(out) {
			t.Errorf("%s gatekeeper check:\n%s", stage, out)
		}
	}

	// Both stages, as the page runs them. On Google OUTBOX=auto is off;
	// on the emulator it would be on: said, so that the stages run as on
	// Google.
	var ingest *service
	for _, stage := range []string{"STAGES=apply", "STAGES=ingest"} {
		env, args := docServe(t, googleToEmulators(docCommand(t, cmds, "PUBSUB_MODE=google", stage, "gatekeeper serve"), pubsubHost, bigqueryHost))
		env["HTTP_ADDR"], env["PROJECT_ID"], env["OUTBOX"] = "127.0.0.1:0", project, "off"
		s := startService(t, dir, env, args...)
		if stage == "STAGES=ingest" {
			ingest = s
		}
	}
	keyLines := lines(shell("cat shop.key"))
	key := keyLines[len(keyLines)-1]
	table := fmt.Sprintf("deploy_%d", time.Now().UnixNano())
	req, _ := http.NewRequest(http.MethodPost, "http://"+ingest.addr+"/api/activities", strings.NewReader(
		`{"activities":[{"operation":"insert","table":"`+table+`","col_names":["a"],"col_types":["INTEGER"],"col_values":[1]}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST with the key of shop.key: %d", resp.StatusCode)
	}
	warehouse := map[string]string{"WAREHOUSE": "bigquery", "BIGQUERY_EMULATOR_HOST": bigqueryHost, "PROJECT_ID": project, "DATASET_ID": "gatekeeper"}
	if !eventually(60*time.Second, 500*time.Millisecond, func() bool {
		// --direct: the processes run with ADMIN_ADDR=off, so rows reads the
		// dataset itself.
		return strings.Contains(gk(t, dir, warehouse, "rows", table, "--direct").stdout, `"a":1`)
	}) {
		r := gk(t, dir, warehouse, "rows", table, "--direct")
		t.Errorf("the payload never reached %s in the BigQuery emulator; rows --direct: exit %d\n%s%s", table, r.code, r.stdout, r.stderr)
	}
}
