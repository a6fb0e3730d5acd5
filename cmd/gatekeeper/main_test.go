package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
)

func parse(t *testing.T, env map[string]string, args ...string) (pipeline.Config, error) {
	t.Helper()
	s, err := parseEnv(env, args...)
	return s.config(), err
}

// parseEnv parses args over env, as serve does.
func parseEnv(env map[string]string, args ...string) (settings, error) {
	s, _, err := parseSettings("serve", "", args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "info", io.Discard)
	return s, err
}

func TestFlagsWinOverEnvironment(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
	_, err := parse(t, map[string]string{"PUBLISH_TIMEOUT": "soon", "GROUP_MAX_SIZE": "many"})
	if err == nil || !strings.Contains(err.Error(), "PUBLISH_TIMEOUT") || !strings.Contains(err.Error(), "GROUP_MAX_SIZE") {
		t.Fatalf("want both bad variables named, got %v", err)
	}
}

func TestServeHelpDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help-all"}, &stdout, &stderr); code != 0 {
		t.Fatalf("serve --help-all exit %d: %s", code, stderr.String())
	}
	help := stdout.String()
	for _, f := range settingFlags("info") {
		if env := f.Tag.Get("envvar"); !strings.Contains(help, "  --"+f.Name+placeholder(f)+" ["+env+"]\n") {
			t.Errorf("serve --help-all does not list --%s [%s]", f.Name, env)
		}
	}
}

// serve --help shows the essential settings only, and says how to see
// the others; every one it shows is in docs/configuration.md's essentials.
func TestServeHelpShowsTheEssentials(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("serve --help exit %d: %s", code, stderr.String())
	}
	help := stdout.String()
	shown := regexp.MustCompile(`(?m)^  --[a-z-]+.* \[([A-Z_]+)\]$`).FindAllStringSubmatch(help, -1)
	var essential []string
	for _, f := range settingFlags("info") {
		if f.Tag.Has("essential") {
			essential = append(essential, f.Tag.Get("envvar"))
		}
	}
	if len(shown) != len(essential) || len(essential) < 8 || len(essential) > 12 {
		t.Errorf("serve --help shows %d settings, want the %d essential ones (8 to 12):\n%s", len(shown), len(essential), help)
	}
	tuning := len(settingFlags("info")) - len(essential)
	if !strings.Contains(help, fmt.Sprintf("\n%d more settings tune it: --help-all lists every one", tuning)) {
		t.Errorf("serve --help does not point at --help-all for the %d others:\n%s", tuning, help)
	}
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(doc), "\n## Essentials\n")
	section, _, _ := strings.Cut(rest, "\n## ")
	for _, env := range essential {
		if !strings.Contains(section, "`"+env+"`") {
			t.Errorf("docs/configuration.md's Essentials section does not name %s", env)
		}
	}
}

func TestInvalidConfigurationNamesEveryProblem(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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

	defaults, err := parseEnv(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range settingFlags("info") { // serve's
		env, shown := f.Tag.Get("envvar"), numbers.Replace(f.Tag.Get("shown"))
		want := shownDefault(f)
		r, ok := table[env]
		switch {
		case !ok:
			t.Errorf("docs/configuration.md's table lacks %s", env)
		case r.flag != "--"+f.Name:
			t.Errorf("docs/configuration.md: %s has flag %q, want --%s", env, r.flag, f.Name)
		case r.def != want:
			t.Errorf("docs/configuration.md: %s defaults to %q, but --help and the code say %q", env, r.def, want)
		}
		line, ok := examples[env]
		if !ok {
			t.Errorf(".env.example lacks %s", env)
			continue
		}
		value, comment, _ := strings.Cut(line, "#")
		value = strings.TrimSpace(value)
		switch {
		case shown != "" && value != shown && !strings.Contains(comment, "default"):
			t.Errorf(".env.example: %s=%s neither is the default (%s) nor says what it is", env, value, shown)
		case shown == "" && f.Default != "":
			// The example shows the default, in any spelling the setting takes.
			if got, err := parseEnv(map[string]string{env: value}); err != nil {
				t.Errorf(".env.example: %s=%s: %v", env, value, err)
			} else if !reflect.DeepEqual(got, defaults) {
				t.Errorf(".env.example: %s=%s, but the default is %s", env, value, f.Default)
			}
		}
	}
}

// The settings' defaults are pipeline.DefaultConfig's: binding them adds
// none of its own, and 0-means-none settings keep their defaults.
func TestSettingsDefaultsAreTheConfigs(t *testing.T) {
	t.Parallel()
	s, err := parseEnv(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.config().WithDefaults(), pipeline.DefaultConfig().WithDefaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("settings' defaults give\n%+v\nwant pipeline's\n%+v", got, want)
	}
	if s.RetryMax != 5 || s.LogLevel != "info" || !s.CreateResources || !s.ExactlyOnceDelivery {
		t.Errorf("defaults as the user sees them: RETRY_MAX %d, LOG_LEVEL %s, CREATE_RESOURCES %v, EXACTLY_ONCE_DELIVERY %v",
			s.RetryMax, s.LogLevel, s.CreateResources, s.ExactlyOnceDelivery)
	}
	off, err := parseEnv(map[string]string{"CREATE_RESOURCES": "false"}, "--exactly-once-delivery=false")
	if err != nil {
		t.Fatal(err)
	}
	if c := off.config(); !c.DoNotCreateResources || !c.DisableExactlyOnceDelivery {
		t.Errorf("CREATE_RESOURCES=false --exactly-once-delivery=false gave %v, %v", c.DoNotCreateResources, c.DisableExactlyOnceDelivery)
	}
}

// A bad value names its setting, as the user wrote it, and what it
// expects; every bad one is reported at once, and an empty variable counts
// as unset.
func TestBadSettingsAreNamedWithWhatTheyExpect(t *testing.T) {
	t.Parallel()
	_, err := parseEnv(map[string]string{"PUBLISH_TIMEOUT": "10", "MAX_BODY_BYTES": "1MB", "RETRY_JITTER": "some",
		"CREATE_RESOURCES": "perhaps", "RETRY_MAX": "", "TOPIC_ID": ""}, "--group-max-size", "many")
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		`PUBLISH_TIMEOUT="10": want a duration with its unit, such as 10s`,
		`MAX_BODY_BYTES="1MB": want a whole number of bytes, such as 1048576 (1 MiB); no units`,
		`RETRY_JITTER="some": want a number`,
		`CREATE_RESOURCES="perhaps": want true or false`,
		`--group-max-size "many": want a whole number`,
		"see gatekeeper serve --help",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	for _, not := range []string{"strconv", "parse error", "RETRY_MAX", "TOPIC_ID"} {
		if strings.Contains(err.Error(), not) {
			t.Errorf("error says %q:\n%v", not, err)
		}
	}
	s, err := parseEnv(map[string]string{"RETRY_MAX": "", "TOPIC_ID": ""})
	if err != nil || s.RetryMax != 5 || s.TopicID != "db-transaction-topic" {
		t.Errorf("empty variables: %v, RETRY_MAX %d, TOPIC_ID %q; want the defaults", err, s.RetryMax, s.TopicID)
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
		cfg, _, _, err := loadConfig("serve", "", nil, &bytes.Buffer{}, &bytes.Buffer{})
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
	t.Parallel()
	cfg, err := parse(t, map[string]string{"RETRY_MAX": "0", "RETRY_JITTER": "0", "PUBLISH_DELAY_THRESHOLD": "0s"})
	if err != nil {
		t.Fatal(err)
	}
	eff := cfg.WithDefaults()
	if eff.RetryMax >= 0 || eff.RetryJitter >= 0 || eff.PublishDelayThreshold >= 0 {
		t.Errorf("RETRY_MAX=0, RETRY_JITTER=0, PUBLISH_DELAY_THRESHOLD=0s became %d, %v, %v: the defaults, not none",
			eff.RetryMax, eff.RetryJitter, eff.PublishDelayThreshold)
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

// --version says what the build set with -ldflags -X; without it, the
// module version and the commit Go recorded, "+dirty" when it had
// uncommitted changes.
func TestVersion(t *testing.T) {
	t.Parallel()
	info := &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}
	for _, c := range []struct {
		set  string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"v2.0.0", info, true, "v2.0.0"},
		{"", info, true, "v1.2.0 0123456789ab+dirty"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "(devel)"},
		{"", nil, false, "devel"},
	} {
		if got := versionString(c.set, c.info, c.ok); got != c.want {
			t.Errorf("versionString(%q, …) = %q, want %q", c.set, got, c.want)
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		r := runIn(args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "gatekeeper ") || r.stderr != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", args[0], r.code, r.stdout, r.stderr)
		}
	}
}

// The Dockerfile's build sets the version, so that an image does not say
// devel; the binary prints what -X set.
func TestVersionFromLdflags(t *testing.T) {
	t.Parallel()
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "-X main.version=") {
		t.Error("the Dockerfile's go build does not set main.version")
	}
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := filepath.Join(t.TempDir(), "gatekeeper")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || string(out) != "gatekeeper v9.9.9-test\n" {
		t.Errorf("--version: %q, %v; want gatekeeper v9.9.9-test", out, err)
	}
}

// The log level and format, checked after the parse, are named with every
// other bad setting of the same run.
func TestBadLogLevelIsNamedWithTheOtherBadSettings(t *testing.T) {
	t.Setenv("LOG_LEVEL", "loud")
	t.Setenv("RETRY_MAX", "abc")
	t.Setenv("PUBLISH_TIMEOUT", "10")
	_, _, _, err := loadConfig("serve", "", nil, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{`LOG_LEVEL="loud": want debug, info, warn or error`, `RETRY_MAX="abc"`, `PUBLISH_TIMEOUT="10"`, "see gatekeeper serve --help"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// serve reports every problem of one run at once, one per line: the values
// that do not parse (flags, then variables), each with what it wants, then what pipeline.Config's
// Validate finds in the rest, then a pointer to --help; nothing starts.
func TestServeReportsEveryProblemOnePerLine(t *testing.T) {
	t.Setenv("PUBLISH_TIMEOUT", "10")
	t.Setenv("MAX_BODY_BYTES", "1MB")
	t.Setenv("LOG_FORMAT", "xml")
	t.Setenv("TOPIC_ID", "x")
	t.Setenv("STAGES", "transform")
	var stdout, stderr bytes.Buffer
	code := run([]string{"serve", "--retry-max", "abc"}, &stdout, &stderr)
	want := []string{
		`gatekeeper: --retry-max "abc": want a whole number, such as 100`,
		`PUBLISH_TIMEOUT="10": want a duration with its unit, such as 10s, 500ms or 1m30s`,
		`MAX_BODY_BYTES="1MB": want a whole number of bytes, such as 1048576 (1 MiB); no units`,
		`LOG_FORMAT="xml": want text or json`,
		`TOPIC_ID "x": Pub/Sub names are 3-255 characters`,
		`STAGES: unknown stage "transform", want ingest or apply`,
		`see gatekeeper serve --help`,
	}
	got := lines(stderr.String())
	if code != 2 || stdout.Len() != 0 || len(got) != len(want) {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and %d lines", code, stdout.String(), stderr.String(), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d: %q, want %q…", i+1, got[i], want[i])
		}
	}
	if strings.Contains(stderr.String(), `\n`) {
		t.Errorf("stderr holds a literal \\n:\n%s", stderr.String())
	}
}
