package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bq "cloud.google.com/go/bigquery"
	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatekeeper/gatekeeper/pipeline/frontdoor"
	"github.com/gatekeeper/gatekeeper/pipeline/transport"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/bigquery"
)

// CheckResult is one item `gatekeeper check` looked at before a deploy.
type CheckResult struct {
	// Item names what was checked: "settings", "topic NAME", "ledger".
	Item string
	// Status is CheckOK, CheckFailed or CheckSkipped.
	Status CheckStatus
	// Detail says what was found.
	Detail string
	// Fix says what to do about a failure.
	Fix string
}

// CheckStatus is the verdict on one item.
type CheckStatus string

const (
	CheckOK      CheckStatus = "ok"
	CheckFailed  CheckStatus = "FAIL"
	CheckSkipped CheckStatus = "skipped"
)

// CheckTimeout bounds each call Check makes to Pub/Sub or the warehouse:
// an unreachable endpoint fails its item instead of hanging the command.
const CheckTimeout = 5 * time.Second

// Check looks, without changing anything, at what a process with cfg needs
// before it takes traffic: the settings, the backends file, Pub/Sub and
// the topics and subscriptions of the stages cfg runs, on Google the IAM
// permissions on them and on the warehouse, and the warehouse with its
// ledger. It never creates a resource, nor a SQLite file that was not
// there; what serve would create is reported as such. Every item is
// checked even after one fails, so that one run shows every problem.
func Check(ctx context.Context, cfg Config, logger *slog.Logger) []CheckResult {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var out []CheckResult
	add := func(r CheckResult) { out = append(out, r) }

	if err := cfg.Validate(); err != nil {
		add(CheckResult{Item: "settings", Status: CheckFailed, Detail: oneLine(err),
			Fix: "set what the message names; gatekeeper check --help lists every setting"})
	} else {
		add(CheckResult{Item: "settings", Status: CheckOK, Detail: settingsSummary(cfg.WithDefaults())})
	}
	add(checkBackends(cfg))
	out = append(out, checkPubSub(ctx, cfg)...)
	out = append(out, checkWarehouse(ctx, cfg, logger)...)
	return out
}

// CheckPassed reports whether every item is ok or skipped.
func CheckPassed(rs []CheckResult) bool {
	return !slices.ContainsFunc(rs, func(r CheckResult) bool { return r.Status == CheckFailed })
}

func settingsSummary(c Config) string {
	stages := make([]string, len(c.Stages))
	for i, s := range c.Stages {
		stages[i] = string(s)
	}
	return fmt.Sprintf("stages %s, Pub/Sub %s, project %s, warehouse %s", strings.Join(stages, ","), c.ResolvedPubSubMode(), c.ProjectID, c.Warehouse)
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func checkBackends(cfg Config) CheckResult {
	r := CheckResult{Item: "backends file"}
	ingests := cfg.WithDefaults().Runs(StageIngest)
	if cfg.BackendsFile == "" && !ingests {
		r.Status, r.Detail = CheckOK, "none set; this process runs no ingest stage"
		return r
	}
	if cfg.BackendsFile == "" {
		r.Status, r.Detail = CheckOK, "none set: the ingestion API accepts payloads without a key"
		if cfg.ResolvedPubSubMode() != PubSubEmbedded && cfg.Auth != AuthNone {
			r.Status, r.Detail = CheckFailed, "none set, and on this Pub/Sub the service refuses to start without one"
			r.Fix = "gatekeeper keys new BACKEND >> backends.yaml, then BACKENDS_FILE=backends.yaml (on Google: from a secret, see docs/deploy.md)"
		}
		return r
	}
	set, err := frontdoor.Load(cfg.BackendsFile)
	if err != nil {
		r.Status, r.Detail = CheckFailed, oneLine(err)
		r.Fix = "correct the file; docs/api.md describes its entries"
		return r
	}
	backends, admins := set.Counts()
	r.Status, r.Detail = CheckOK, fmt.Sprintf("%s: %s, %s", cfg.BackendsFile, count(backends, "backend"), count(admins, "admin key"))
	return r
}

// The permissions each stage needs on Pub/Sub, tested on Google with
// testIamPermissions.
var (
	watchedTopicPermissions   = []string{"pubsub.topics.get"}
	publishedTopicPermissions = []string{"pubsub.topics.get", "pubsub.topics.publish"}
	watchedSubPermissions     = []string{"pubsub.subscriptions.get"}
	consumedSubPermissions    = []string{"pubsub.subscriptions.get", "pubsub.subscriptions.consume"}
)

func checkPubSub(ctx context.Context, cfg Config) []CheckResult {
	if err := cfg.ValidatePubSub(); err != nil {
		return []CheckResult{{Item: "pubsub", Status: CheckSkipped, Detail: "the settings above are wrong"}}
	}
	cfg = cfg.WithDefaults()
	mode := cfg.ResolvedPubSubMode()
	if mode == PubSubEmbedded {
		return []CheckResult{
			{Item: "pubsub", Status: CheckSkipped, Detail: "embedded: the service starts it in its own process, with every topic and subscription"},
			{Item: "iam", Status: CheckSkipped, Detail: "embedded: no IAM"},
		}
	}
	tc := transportConfig(cfg, nil, nil)
	where := "Google Pub/Sub"
	if mode == PubSubEmulator {
		where = "the emulator at " + cfg.EmulatorHost
	}
	client, err := pubsub.NewClient(ctx, cfg.ProjectID, transport.ClientOptions(tc)...)
	if err != nil {
		return []CheckResult{{Item: "pubsub", Status: CheckFailed, Detail: oneLine(err), Fix: credentialsFix(mode)}}
	}
	defer client.Close()

	needs := transport.Needs(tc)
	var out []CheckResult
	reached := false
	for i, r := range needs {
		item, detail, err := lookup(ctx, client, cfg.ProjectID, r)
		if i == 0 {
			// The first call tells whether Pub/Sub answers at all.
			if status.Code(err) == codes.Unauthenticated {
				return []CheckResult{{Item: "pubsub", Status: CheckFailed,
					Detail: fmt.Sprintf("%s refused the credentials: %s", where, oneLine(err)), Fix: credentialsFix(mode)}}
			}
			if unreachable(err) {
				return []CheckResult{{Item: "pubsub", Status: CheckFailed,
					Detail: fmt.Sprintf("%s does not answer: %s", where, oneLine(err)), Fix: reachFix(mode)}}
			}
			reached = true
			out = append(out, CheckResult{Item: "pubsub", Status: CheckOK, Detail: fmt.Sprintf("%s answers (project %s)", where, cfg.ProjectID)})
		}
		res := CheckResult{Item: item, Status: CheckOK, Detail: detail}
		switch {
		case err == nil:
		case status.Code(err) == codes.NotFound && !cfg.DoNotCreateResources:
			res.Detail = "missing: serve creates it at start (CREATE_RESOURCES=true)"
		case status.Code(err) == codes.NotFound:
			res.Status, res.Detail = CheckFailed, "missing, and CREATE_RESOURCES=false forbids creating it"
			res.Fix = r.GcloudCreate(cfg.ProjectID)
		case status.Code(err) == codes.PermissionDenied:
			res.Status, res.Detail = CheckFailed, "permission denied: "+oneLine(err)
			res.Fix = "grant the service account roles/pubsub.viewer on the project (see docs/deploy.md)"
		default:
			res.Status, res.Detail = CheckFailed, oneLine(err)
			res.Fix = "the message says why; delete and recreate the resource if it is wrong"
		}
		out = append(out, res)
	}
	if !reached {
		return out
	}
	if mode == PubSubEmulator {
		return append(out, CheckResult{Item: "iam", Status: CheckSkipped, Detail: "emulator: it has no IAM, so nothing to test"})
	}
	return append(out, checkPubSubIAM(ctx, client, cfg, needs)...)
}

// lookup reads r: whether it exists, and for a subscription whether it is
// attached to its topic.
func lookup(ctx context.Context, client *pubsub.Client, project string, r transport.Resource) (item, detail string, err error) {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	if r.Subscription == "" {
		_, err := client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: transport.TopicPath(project, r.Topic)})
		return "topic " + r.Topic, "exists", err
	}
	item = "subscription " + r.Subscription
	sub, err := client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: transport.SubscriptionPath(project, r.Subscription)})
	if err != nil {
		return item, "", err
	}
	if want := transport.TopicPath(project, r.Topic); sub.GetTopic() != want {
		return item, "", fmt.Errorf("attached to %s, want %s", sub.GetTopic(), want)
	}
	return item, fmt.Sprintf("exists on %s, ack deadline %ds, exactly-once %t", r.Topic, sub.GetAckDeadlineSeconds(), sub.GetEnableExactlyOnceDelivery()), nil
}

func unreachable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

func reachFix(mode PubSubMode) string {
	if mode == PubSubEmulator {
		return "start the emulator, or correct PUBSUB_EMULATOR_HOST"
	}
	return credentialsFix(mode)
}

func credentialsFix(mode PubSubMode) string {
	if mode == PubSubEmulator {
		return "correct PUBSUB_EMULATOR_HOST"
	}
	return "check GOOGLE_APPLICATION_CREDENTIALS (or the runtime's service account) and PROJECT_ID, and that the Pub/Sub API is enabled"
}

// checkPubSubIAM tests, on Google, the permissions this process needs on
// each topic and subscription: publish on the topics it publishes to (the
// ingest stage to the accepted ones, the apply stage to the applied and
// poison ones), consume on the subscriptions it reads (the apply stage's,
// the outbox's follow subscriptions), get on those it only watches.
func checkPubSubIAM(ctx context.Context, client *pubsub.Client, cfg Config, needs []transport.Resource) []CheckResult {
	var out []CheckResult
	for _, r := range needs {
		ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
		var want []string
		var got *iampb.TestIamPermissionsResponse
		var err error
		item, role := "iam topic "+r.Topic, "roles/pubsub.publisher"
		fix := "gcloud pubsub topics add-iam-policy-binding %s --project=%s --member=serviceAccount:SERVICE_ACCOUNT --role=%s"
		name := r.Topic
		if r.Subscription == "" {
			ingestPublishes := cfg.Runs(StageIngest) && (r.Topic == cfg.TopicID || r.Topic == cfg.OrderedTopicID)
			applyPublishes := cfg.Runs(StageApply) && (r.Topic == cfg.AppliedTopicID || r.Topic == cfg.PoisonTopicID)
			want = watchedTopicPermissions
			if ingestPublishes || applyPublishes {
				want = publishedTopicPermissions
			} else {
				role = "roles/pubsub.viewer"
			}
			got, err = client.TopicAdminClient.TestIamPermissions(ctx, &iampb.TestIamPermissionsRequest{
				Resource: transport.TopicPath(cfg.ProjectID, r.Topic), Permissions: want})
		} else {
			item, role, name = "iam subscription "+r.Subscription, "roles/pubsub.subscriber", r.Subscription
			fix = "gcloud pubsub subscriptions add-iam-policy-binding %s --project=%s --member=serviceAccount:SERVICE_ACCOUNT --role=%s"
			want = consumedSubPermissions
			if !cfg.Runs(StageApply) && (r.Subscription == cfg.SubscriptionID || r.Subscription == cfg.OrderedSubscriptionID) {
				want, role = watchedSubPermissions, "roles/pubsub.viewer"
			}
			got, err = client.SubscriptionAdminClient.TestIamPermissions(ctx, &iampb.TestIamPermissionsRequest{
				Resource: transport.SubscriptionPath(cfg.ProjectID, r.Subscription), Permissions: want})
		}
		cancel()
		res := CheckResult{Item: item, Status: CheckOK}
		switch {
		case status.Code(err) == codes.NotFound:
			res.Status, res.Detail = CheckSkipped, "missing (see above): test again once it exists"
		case err != nil:
			res.Status, res.Detail, res.Fix = CheckFailed, oneLine(err), "grant the service account roles/pubsub.viewer on the project"
		default:
			missing := without(want, got.GetPermissions())
			res.Detail = "granted: " + strings.Join(want, ", ")
			if len(missing) > 0 {
				res.Status, res.Detail = CheckFailed, "missing: "+strings.Join(missing, ", ")
				res.Fix = fmt.Sprintf(fix, name, cfg.ProjectID, role)
			}
		}
		out = append(out, res)
	}
	return out
}

func without(want, got []string) []string {
	var missing []string
	for _, p := range want {
		if !slices.Contains(got, p) {
			missing = append(missing, p)
		}
	}
	return missing
}

func checkWarehouse(ctx context.Context, cfg Config, logger *slog.Logger) []CheckResult {
	if !cfg.WithDefaults().Runs(StageApply) {
		return []CheckResult{{Item: "warehouse", Status: CheckSkipped, Detail: "this process runs no apply stage"}}
	}
	if err := cfg.ValidateWarehouse(); err != nil {
		return []CheckResult{{Item: "warehouse", Status: CheckSkipped, Detail: "the settings above are wrong"}}
	}
	cfg = cfg.WithDefaults()
	spec, _ := ParseWarehouse(cfg.Warehouse)
	if spec.Kind == WarehouseBigQuery {
		return checkBigQuery(ctx, cfg, logger)
	}
	return checkSQLite(ctx, cfg, spec.Path, logger)
}

func checkSQLite(ctx context.Context, cfg Config, path string, logger *slog.Logger) []CheckResult {
	_, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		// Never create the file here: a check that leaves an empty
		// warehouse behind would hide a wrong path from the next run.
		dir := filepath.Dir(path)
		probe, err := os.CreateTemp(dir, ".gatekeeper-check-*")
		if err != nil {
			return []CheckResult{{Item: "warehouse", Status: CheckFailed,
				Detail: fmt.Sprintf("%s does not exist, and serve could not create it: %s", path, oneLine(err)),
				Fix:    fmt.Sprintf("create the directory %s and make it writable, or correct WAREHOUSE", dir)}}
		}
		_ = probe.Close()
		_ = os.Remove(probe.Name())
		return []CheckResult{
			{Item: "warehouse", Status: CheckOK, Detail: fmt.Sprintf("%s does not exist yet: serve creates it (its directory is writable)", path)},
			{Item: "ledger", Status: CheckSkipped, Detail: "created with the file"},
		}
	}
	if err != nil {
		return []CheckResult{{Item: "warehouse", Status: CheckFailed, Detail: oneLine(err), Fix: "correct WAREHOUSE, or the file's permissions"}}
	}
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	store, err := OpenWarehouse(ctx, cfg, logger)
	if err != nil {
		return []CheckResult{{Item: "warehouse", Status: CheckFailed, Detail: oneLine(err),
			Fix: "WAREHOUSE must name a SQLite database gatekeeper wrote, or a new path"}}
	}
	defer store.Close()
	out := []CheckResult{{Item: "warehouse", Status: CheckOK, Detail: "sqlite " + path + " opens"}}
	return append(out, ledgerResult(store.Ping(ctx), "the write lock was taken and released"))
}

func ledgerResult(err error, how string) CheckResult {
	if err != nil {
		return CheckResult{Item: "ledger", Status: CheckFailed, Detail: oneLine(err),
			Fix: "the warehouse must be writable by this process; stop whatever holds it locked"}
	}
	return CheckResult{Item: "ledger", Status: CheckOK, Detail: warehouse.LedgerTable + " is writable: " + how}
}

func checkBigQuery(ctx context.Context, cfg Config, logger *slog.Logger) []CheckResult {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	dataset := cfg.ProjectID + "." + cfg.DatasetID
	client, err := bq.NewClient(ctx, cfg.ProjectID, bigquery.ClientOptions(cfg.BigQueryEmulatorHost, cfg.CredentialsFile)...)
	if err != nil {
		return []CheckResult{{Item: "warehouse", Status: CheckFailed, Detail: oneLine(err), Fix: credentialsFix(PubSubGoogle)}}
	}
	defer client.Close()
	_, err = client.Dataset(cfg.DatasetID).Metadata(ctx)
	var gerr *googleapi.Error
	switch {
	case errors.As(err, &gerr) && gerr.Code == 404 && !cfg.DoNotCreateResources:
		return []CheckResult{
			{Item: "warehouse", Status: CheckOK, Detail: "bigquery dataset " + dataset + " is missing: serve creates it (CREATE_RESOURCES=true)"},
			{Item: "ledger", Status: CheckSkipped, Detail: "created with the dataset"},
		}
	case errors.As(err, &gerr) && gerr.Code == 404:
		return []CheckResult{{Item: "warehouse", Status: CheckFailed,
			Detail: "bigquery dataset " + dataset + " is missing, and CREATE_RESOURCES=false forbids creating it",
			Fix:    fmt.Sprintf("bq --location=%s mk --dataset %s:%s", orDefault(cfg.BigQueryLocation, "US"), cfg.ProjectID, cfg.DatasetID)}}
	case err != nil:
		fix := "check the BigQuery API is enabled and the service account has roles/bigquery.dataEditor on the dataset"
		if cfg.BigQueryEmulatorHost != "" {
			fix = "start the emulator, or correct BIGQUERY_EMULATOR_HOST"
		}
		return []CheckResult{{Item: "warehouse", Status: CheckFailed, Detail: "bigquery dataset " + dataset + ": " + oneLine(err), Fix: fix}}
	}
	out := []CheckResult{{Item: "warehouse", Status: CheckOK, Detail: "bigquery dataset " + dataset + " exists"}}
	if cfg.BigQueryEmulatorHost != "" {
		out = append(out, CheckResult{Item: "iam dataset " + cfg.DatasetID, Status: CheckSkipped, Detail: "emulator: it has no IAM, so nothing to test"})
		md, err := client.Dataset(cfg.DatasetID).Table(warehouse.LedgerTable).Metadata(ctx)
		switch {
		case errors.As(err, &gerr) && gerr.Code == 404:
			return append(out, CheckResult{Item: "ledger", Status: CheckSkipped, Detail: warehouse.LedgerTable + " is missing: serve creates it at start"})
		case err != nil:
			return append(out, CheckResult{Item: "ledger", Status: CheckFailed, Detail: oneLine(err), Fix: "start the emulator, or correct BIGQUERY_EMULATOR_HOST"})
		}
		return append(out, CheckResult{Item: "ledger", Status: CheckOK,
			Detail: fmt.Sprintf("%s exists (%d columns); the emulator has no permissions to test writing against", warehouse.LedgerTable, len(md.Schema))})
	}
	// The ledger's DML is what the apply stage runs in every transaction:
	// a dry run needs bigquery.jobs.create on the project and write access
	// to the table, and writes nothing. BigQuery has no testIamPermissions
	// on a dataset; this is the test on it.
	q := client.Query(fmt.Sprintf("INSERT INTO `%s.%s.%s` (payload_id, applied_at) VALUES ('gatekeeper-check', CURRENT_TIMESTAMP())",
		cfg.ProjectID, cfg.DatasetID, warehouse.LedgerTable))
	q.DryRun = true
	q.Location = cfg.BigQueryLocation
	_, err = q.Run(ctx)
	if errors.As(err, &gerr) && gerr.Code == 404 && !cfg.DoNotCreateResources {
		return append(out, CheckResult{Item: "ledger", Status: CheckSkipped, Detail: warehouse.LedgerTable + " is missing: serve creates it at start"})
	}
	if err != nil {
		return append(out, CheckResult{Item: "ledger", Status: CheckFailed, Detail: oneLine(err),
			Fix: fmt.Sprintf("grant the service account roles/bigquery.dataEditor on the dataset %s and roles/bigquery.jobUser on the project", dataset)})
	}
	return append(out, ledgerResult(nil, "a dry run of its INSERT passed (jobs.create and the dataset's write access)"))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// count is "1 backend", "2 backends".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
