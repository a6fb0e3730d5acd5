package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
)

// checkRow finds the row of item in check's table and returns its result
// and detail, and the fix on the line after it ("" when none).
func checkRow(t *testing.T, out, item string) (result, detail, fix string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(item) + `\s{2,}(ok|FAIL|skipped)\s+(.*)$`)
	for i, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if i+1 < len(lines) {
			if _, f, ok := strings.Cut(lines[i+1], "fix: "); ok && strings.TrimSpace(lines[i+1])[:4] == "fix:" {
				fix = f
			}
		}
		return m[1], m[2], fix
	}
	t.Fatalf("no row %q in:\n%s", item, out)
	return
}

// On the embedded mode with nothing set, every item passes and the
// warehouse file the service would create is not created by the check.
func TestCheckEmbeddedPassesAndCreatesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "warehouse.db")
	r := runIn("check", "--pubsub-mode", "embedded", "--warehouse", "sqlite:"+db, "--outbox-path", filepath.Join(dir, "outbox.db"))
	if r.code != 0 || !strings.Contains(r.stdout, "checks passed") {
		t.Fatalf("check = %d, want 0:\n%s%s", r.code, r.stdout, r.stderr)
	}
	// What was skipped is not counted as passed.
	if !strings.Contains(r.stdout, "All 3 checks passed; 3 more skipped") {
		t.Errorf("the last line counts skipped items as passed:\n%s", r.stdout)
	}
	if res, detail, _ := checkRow(t, r.stdout, "warehouse"); res != "ok" || !strings.Contains(detail, "does not exist yet") {
		t.Errorf("warehouse row = %s %s", res, detail)
	}
	if res, _, _ := checkRow(t, r.stdout, "pubsub"); res != "skipped" {
		t.Errorf("pubsub row on the embedded mode = %s, want skipped", res)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("check left %v behind; it must create nothing", entries)
	}

	// Once the warehouse exists, the ledger is tested for writing.
	ctx := context.Background()
	store, err := pipeline.OpenWarehouse(ctx, pipeline.Config{Warehouse: "sqlite:" + db}, nil)
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	r = runIn("check", "--pubsub-mode", "embedded", "--warehouse", "sqlite:"+db)
	if r.code != 0 {
		t.Fatalf("check on an existing warehouse = %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if res, detail, _ := checkRow(t, r.stdout, "ledger"); res != "ok" || !strings.Contains(detail, "writable") {
		t.Errorf("ledger row = %s %s", res, detail)
	}
}

// Each kind of broken configuration fails its own row, with a fix, and
// check exits 1; the other rows are still checked.
func TestCheckNamesEachBrokenItemWithItsFix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "backends.yaml")
	if err := os.WriteFile(badYAML, []byte("not: [valid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notADB := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(notADB, []byte(strings.Repeat("this is not a database\n", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		item string
		want string // in the detail
	}{
		{"a bad setting", []string{"--group-max-size=-1"}, "settings", "GROUP_MAX_SIZE"},
		{"a backends file that does not parse", []string{"--backends-file", badYAML}, "backends file", "yaml"},
		{"a missing backends file", []string{"--backends-file", filepath.Join(dir, "nope.yaml")}, "backends file", "no such file"},
		{"a warehouse in a missing directory", []string{"--warehouse", "sqlite:" + filepath.Join(dir, "no", "such", "w.db")}, "warehouse", "could not create it"},
		{"a warehouse that is not a database", []string{"--warehouse", "sqlite:" + notADB}, "warehouse", "not a database"},
		{"google without a backends file", []string{"--pubsub-mode", "google", "--project-id", "p", "--warehouse", "sqlite:" + filepath.Join(dir, "w.db")}, "backends file", "refuses to start"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"check", "--pubsub-mode", "embedded", "--warehouse", "sqlite:" + filepath.Join(dir, "w.db")}, c.args...)
			if c.item == "backends file" && c.args[0] == "--pubsub-mode" {
				// Google Pub/Sub is not reached from here; only the row
				// about the missing file matters.
				args = append(args, "--credentials", filepath.Join(dir, "no-key.json"))
			}
			r := runIn(args...)
			if r.code != 1 {
				t.Fatalf("check = %d, want 1:\n%s%s", r.code, r.stdout, r.stderr)
			}
			res, detail, fix := checkRow(t, r.stdout, c.item)
			if res != "FAIL" || !strings.Contains(detail, c.want) || fix == "" {
				t.Errorf("%s row = %s %q fix %q; want FAIL naming %q, with a fix", c.item, res, detail, fix, c.want)
			}
			if !strings.Contains(r.stdout, "checks failed") {
				t.Errorf("no summary line:\n%s", r.stdout)
			}
		})
	}
}

// On the Pub/Sub emulator: missing resources fail with CREATE_RESOURCES
// false, each with the gcloud command that creates it; once the service has
// created them, every row passes; IAM is skipped, saying why; and an
// emulator that does not answer fails the pubsub row.
func TestCheckOnTheEmulator(t *testing.T) {
	host := os.Getenv("PUBSUB_EMULATOR_HOST")
	if host == "" {
		t.Skip("PUBSUB_EMULATOR_HOST is not set")
	}
	t.Parallel()
	dir := t.TempDir()
	topic := fmt.Sprintf("check-%d", time.Now().UnixNano())
	args := []string{"check", "--pubsub-emulator-host", host, "--project-id", "test", "--auth", "none",
		"--topic-id", topic, "--subscription-id", topic + "-sub", "--warehouse", "sqlite:" + filepath.Join(dir, "w.db")}

	r := runIn(append(args, "--create-resources=false")...)
	if r.code != 1 {
		t.Fatalf("check with nothing created = %d, want 1:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if res, _, _ := checkRow(t, r.stdout, "pubsub"); res != "ok" {
		t.Errorf("pubsub row = %s, want ok", res)
	}
	res, _, fix := checkRow(t, r.stdout, "subscription "+topic+"-sub-ordered")
	if want := "gcloud pubsub subscriptions create " + topic + "-sub-ordered --project=test --topic=" + topic + "-ordered"; res != "FAIL" || !strings.HasPrefix(fix, want) || !strings.Contains(fix, "--enable-message-ordering") {
		t.Errorf("ordered subscription row = %s, fix %q; want FAIL with %q … --enable-message-ordering", res, fix, want)
	}
	if res, detail, _ := checkRow(t, r.stdout, "iam"); res != "skipped" || !strings.Contains(detail, "emulator") {
		t.Errorf("iam row = %s %q, want skipped on the emulator", res, detail)
	}

	r = runIn(args...)
	if r.code != 0 {
		t.Fatalf("check with CREATE_RESOURCES=true = %d, want 0:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, detail, _ := checkRow(t, r.stdout, "topic "+topic); !strings.Contains(detail, "serve creates it") {
		t.Errorf("topic row = %q, want that serve creates it", detail)
	}

	// Create them as the service does, and check again without creating.
	cfg, _ := parse(t, map[string]string{"PUBSUB_EMULATOR_HOST": host, "PROJECT_ID": "test", "TOPIC_ID": topic, "SUBSCRIPTION_ID": topic + "-sub", "AUTH": "none"})
	ps, err := pipeline.NewPubSub(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	r = runIn(append(args, "--create-resources=false")...)
	if r.code != 0 {
		t.Fatalf("check after the resources exist = %d, want 0:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if res, detail, _ := checkRow(t, r.stdout, "subscription "+topic+"-sub"); res != "ok" || !strings.Contains(detail, "exists on "+topic) {
		t.Errorf("subscription row = %s %q", res, detail)
	}

	// A subscription attached to another topic than the one it should
	// read fails, naming both.
	other := topic + "-other"
	if _, err := ps.Client().TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: transport.TopicPath("test", other)}); err != nil {
		t.Fatal(err)
	}
	stray := topic + "-stray"
	if _, err := ps.Client().SubscriptionAdminClient.CreateSubscription(context.Background(), &pubsubpb.Subscription{
		Name: transport.SubscriptionPath("test", stray), Topic: transport.TopicPath("test", other)}); err != nil {
		t.Fatal(err)
	}
	r = runIn(append(args, "--create-resources=false", "--ordered-subscription-id", stray)...)
	if res, detail, fix := checkRow(t, r.stdout, "subscription "+stray); r.code != 1 || res != "FAIL" ||
		!strings.Contains(detail, "attached to projects/test/topics/"+other+", want projects/test/topics/"+topic+"-ordered") || fix == "" {
		t.Errorf("a subscription on the wrong topic: exit %d, row %s %q fix %q", r.code, res, detail, fix)
	}

	r = runIn("check", "--pubsub-emulator-host", "127.0.0.1:1", "--project-id", "test", "--auth", "none", "--warehouse", "sqlite:"+filepath.Join(dir, "w.db"))
	if res, detail, fix := checkRow(t, r.stdout, "pubsub"); r.code != 1 || res != "FAIL" || !strings.Contains(detail, "does not answer") || fix == "" {
		t.Errorf("unreachable emulator: code %d, pubsub row %s %q fix %q", r.code, res, detail, fix)
	}
}

// On the BigQuery emulator: the dataset found, or missing and named with
// the command that creates it when CREATE_RESOURCES=false forbids serve
// to; IAM skipped there, saying why.
func TestCheckOnTheBigQueryEmulator(t *testing.T) {
	host := os.Getenv("BIGQUERY_EMULATOR_HOST")
	if host == "" {
		t.Skip("BIGQUERY_EMULATOR_HOST is not set")
	}
	t.Parallel()
	project := os.Getenv("BIGQUERY_EMULATOR_PROJECT")
	if project == "" {
		project = "test"
	}
	args := []string{"check", "--pubsub-mode", "embedded", "--stages", "apply", "--warehouse", "bigquery",
		"--bigquery-emulator-host", host, "--project-id", project}
	r := runIn(append(args, "--dataset-id", "gatekeeper")...)
	if res, detail, _ := checkRow(t, r.stdout, "warehouse"); r.code != 0 || res != "ok" || !strings.Contains(detail, "exists") {
		t.Errorf("check on the emulator's dataset: exit %d, warehouse row %s %q\n%s", r.code, res, detail, r.stdout)
	}
	if res, detail, _ := checkRow(t, r.stdout, "iam dataset gatekeeper"); res != "skipped" || !strings.Contains(detail, "emulator") {
		t.Errorf("iam dataset row = %s %q, want skipped on the emulator", res, detail)
	}
	r = runIn(append(args, "--dataset-id", "nosuchdataset", "--create-resources=false")...)
	res, _, fix := checkRow(t, r.stdout, "warehouse")
	if r.code != 1 || res != "FAIL" || fix != "bq --location=US mk --dataset "+project+":nosuchdataset" {
		t.Errorf("check on a missing dataset: exit %d, warehouse row %s, fix %q\n%s", r.code, res, fix, r.stdout)
	}
}
