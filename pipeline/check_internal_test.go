package pipeline

import (
	"context"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc"

	"github.com/gatekeeper/gatekeeper/pipeline/transport"
)

// grantingIAM answers testIamPermissions as Google would: with the
// requested permissions the caller holds on the resource.
type grantingIAM struct {
	iampb.UnimplementedIAMPolicyServer
	denied map[string][]string // resource → permissions not held
}

func (g grantingIAM) TestIamPermissions(_ context.Context, req *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	var held []string
	for _, p := range req.GetPermissions() {
		if !slices.Contains(g.denied[req.GetResource()], p) {
			held = append(held, p)
		}
	}
	return &iampb.TestIamPermissionsResponse{Permissions: held}, nil
}

// On Google, check asks testIamPermissions for what each stage does on
// each resource, and no more: the apply stage publishes to the applied and
// poison topics and only reads the accepted ones; the ingest stage
// publishes to the accepted topics and only looks at the apply
// subscriptions. A permission missing fails its row, with the role to
// grant. Google's IAM does not run here: a fake IAM server on the Pub/Sub
// fake answers as it would.
func TestCheckPubSubIAMAsksWhatEachStageDoes(t *testing.T) {
	iam := grantingIAM{denied: map[string][]string{
		transport.SubscriptionPath("p", "db-sub-poison"):         {"pubsub.subscriptions.consume"},
		transport.TopicPath("p", "db-transaction-topic"):         {"pubsub.topics.publish"},
		transport.TopicPath("p", "db-transaction-topic-ordered"): {"pubsub.topics.publish"},
	}}
	srv := pstest.NewServerWithCallback(0, func(s *grpc.Server) { iampb.RegisterIAMPolicyServer(s, iam) })
	defer srv.Close()
	ctx := context.Background()
	client, err := pubsub.NewClient(ctx, "p", transport.ClientOptions(transport.Config{Mode: transport.ModeEmulator, EmulatorHost: srv.Addr})...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	rows := func(stage Stage) map[string]CheckResult {
		cfg := Config{PubSubMode: PubSubGoogle, ProjectID: "p", Stages: []Stage{stage}}.WithDefaults()
		out := map[string]CheckResult{}
		for _, r := range checkPubSubIAM(ctx, client, cfg, transport.Needs(transportConfig(cfg, nil, nil))) {
			out[r.Item] = r
		}
		return out
	}
	apply := rows(StageApply)
	for item, want := range map[string]string{
		"iam topic db-transaction-topic":         "granted: pubsub.topics.get",
		"iam topic db-transaction-topic-applied": "granted: pubsub.topics.get, pubsub.topics.publish",
		"iam subscription db-sub":                "granted: pubsub.subscriptions.get, pubsub.subscriptions.consume",
	} {
		if r := apply[item]; r.Status != CheckOK || r.Detail != want {
			t.Errorf("apply stage, %s: %+v; want ok, %s", item, r, want)
		}
	}
	if r := apply["iam subscription db-sub-poison"]; r.Status != CheckFailed || r.Detail != "missing: pubsub.subscriptions.consume" ||
		!strings.Contains(r.Fix, "gcloud pubsub subscriptions add-iam-policy-binding db-sub-poison --project=p") || !strings.Contains(r.Fix, "--role=roles/pubsub.subscriber") {
		t.Errorf("apply stage, the poison subscription without consume: %+v", r)
	}

	ingest := rows(StageIngest)
	if r := ingest["iam topic db-transaction-topic"]; r.Status != CheckFailed || r.Detail != "missing: pubsub.topics.publish" ||
		!strings.Contains(r.Fix, "--role=roles/pubsub.publisher") {
		t.Errorf("ingest stage, the accepted topic without publish: %+v", r)
	}
	if r := ingest["iam subscription db-sub"]; r.Status != CheckOK || r.Detail != "granted: pubsub.subscriptions.get" {
		t.Errorf("ingest stage, the apply subscription it only looks at: %+v", r)
	}
	if _, ok := ingest["iam subscription db-sub-poison"]; ok {
		t.Errorf("ingest stage: the poison subscription is checked, which it never uses")
	}
}
