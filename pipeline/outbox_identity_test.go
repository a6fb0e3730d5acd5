package pipeline_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/outbox"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/sqlite"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// newService is NewService for a start expected to fail.
func newService(t *testing.T, cfg pipeline.Config, opts ...pipeline.Option) error {
	t.Helper()
	svc, err := pipeline.NewService(context.Background(), cfg, testLogger(), opts...)
	if err == nil {
		// It should not have started: a Run already cancelled closes it.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = svc.Run(ctx)
	}
	return err
}

func mustContain(t *testing.T, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the service started; want a refusal saying %q", wants)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal %q does not say %q", err, w)
		}
	}
}

func outboxRecord(t *testing.T, cfg pipeline.Config) warehouse.OutboxRecord {
	t.Helper()
	spec, _ := pipeline.ParseWarehouse(cfg.Warehouse)
	w, err := sqlite.Open(context.Background(), sqlite.Config{Path: spec.Path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	host, _ := os.Hostname()
	abs, _ := filepath.Abs(cfg.OutboxPath)
	rec, found, err := w.OutboxRecord(context.Background(), host, abs)
	if err != nil || !found {
		t.Fatalf("the warehouse has no record of the outbox %s on %s: %v", abs, host, err)
	}
	return rec
}

// The whole service on SQLite: it records its outbox in the warehouse, a
// restart finds the same one, and a start without it (deleted, emptied,
// replaced) refuses, saying what to do, until told to accept the loss.
func TestServiceRefusesToStartWithoutTheOutboxItKept(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	r := startService(t, cfg)
	if code, resp, _ := post(t, r.base, "application/json", insertBody(1)); code != http.StatusOK {
		t.Fatalf("POST: %d %+v", code, resp)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	rec := outboxRecord(t, cfg)
	if rec.Pending != 0 || len(rec.Identity) != 16 {
		t.Fatalf("record after a clean stop: %+v; want the identity and 0 pending", rec)
	}
	// The same outbox: a restart starts.
	r = startService(t, cfg)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	abs, _ := filepath.Abs(cfg.OutboxPath)
	aside := cfg.OutboxPath + ".aside"
	if err := os.Rename(cfg.OutboxPath, aside); err != nil {
		t.Fatal(err)
	}
	err := newService(t, cfg)
	mustContain(t, err, "refusing to start", "the outbox "+abs+" is missing", "the warehouse records", rec.Identity,
		"0 entries pending at its last clean stop", "restore the file to "+abs, "--outbox-accept-loss", "OUTBOX_ACCEPT_LOSS=true")
	if _, err := os.Stat(cfg.OutboxPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused start created the outbox file: %v", err)
	}

	if err := os.WriteFile(cfg.OutboxPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mustContain(t, newService(t, cfg), "the outbox "+abs+" is empty")

	// Another outbox in its place.
	other, err := outbox.Open(context.Background(), outbox.Config{Path: cfg.OutboxPath}, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherID := other.Identity()
	_ = other.Close()
	mustContain(t, newService(t, cfg), "is of another identity ("+otherID+")")

	// The file restored: it starts.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(cfg.OutboxPath + suffix)
	}
	if err := os.Rename(aside, cfg.OutboxPath); err != nil {
		t.Fatal(err)
	}
	r = startService(t, cfg)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	// Lost for good: accepted once, logged, counted; the record takes the
	// new file, and the next start needs no flag.
	if err := os.Remove(cfg.OutboxPath); err != nil {
		t.Fatal(err)
	}
	accept := cfg
	accept.OutboxAcceptLoss = true
	r = startService(t, accept)
	if got := metricValue(t, r.base, "gatekeeper_outbox_loss_accepted_total"); got != 1 {
		t.Errorf("gatekeeper_outbox_loss_accepted_total = %v, want 1", got)
	}
	if logs := r.logs.String(); !strings.Contains(logs, "level=WARN msg=\"Outbox loss accepted") || !strings.Contains(logs, "identity_lost="+rec.Identity) {
		t.Errorf("no WARN naming the identity lost in the log:\n%s", logs)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if now := outboxRecord(t, cfg); now.Identity == rec.Identity {
		t.Errorf("the record kept the lost identity %s", rec.Identity)
	}
	r = startService(t, cfg)
	if got := metricValue(t, r.base, "gatekeeper_outbox_loss_accepted_total"); got != 0 {
		t.Errorf("gatekeeper_outbox_loss_accepted_total = %v after a normal start, want 0", got)
	}
}

// A fresh install has no record anywhere and starts without the flag; the
// count of what waits in the outbox at a stop is what a refusal names.
func TestOutboxRefusalCountsWhatWasPending(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	cfg.ShutdownTimeout = time.Second
	cfg.RetryMax = 1000
	cfg.RetryInitial = 50 * time.Millisecond
	cfg.RetryMaxInterval = 100 * time.Millisecond
	faulty, inner, withFaulty := faultyWarehouse(t, cfg)
	faulty.FailNext(1_000_000, nil) // nothing applies: all 7 wait in the outbox
	_, base, stop := runUntil(t, cfg, pipeline.WithWarehouse(recordingStore{faultyStore{faulty, inner}, inner}))
	_ = withFaulty
	for i := range 7 {
		if code, resp, _ := post(t, base, "application/json", insertBody(i)); code != http.StatusOK {
			t.Fatalf("POST %d: %d %+v", i, code, resp)
		}
	}
	if err := stop(); err == nil || !strings.Contains(err.Error(), "wait in the outbox") {
		t.Fatalf("Run returned %v, want the stuck drain's error", err)
	}
	if rec := outboxRecord(t, cfg); rec.Pending != 7 {
		t.Fatalf("record after the stop: %+v, want 7 pending", rec)
	}
	if err := os.Remove(cfg.OutboxPath); err != nil {
		t.Fatal(err)
	}
	mustContain(t, newService(t, cfg), "with 7 entries pending at its last clean stop: 7 payloads answered 200 are not applied yet")
}

// recordingStore is faultyStore with the SQLite warehouse's outbox
// records, which Faulty does not pass through.
type recordingStore struct {
	faultyStore
	warehouse.OutboxRegistry
}

// A damaged outbox stops the start with the command that salvages it.
func TestServiceRefusesADamagedOutboxNamingTheSalvage(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	r := startService(t, cfg)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.OutboxPath, []byte(strings.Repeat("not a database ", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	var damaged *outbox.DamagedError
	err := newService(t, cfg)
	if !errors.As(err, &damaged) {
		t.Fatalf("start with a damaged outbox: %v, want a *outbox.DamagedError", err)
	}
	mustContain(t, err, "OUTBOX_PATH", "is damaged", "gatekeeper outbox salvage --outbox-path "+cfg.OutboxPath)
}

// An ingest-only process on the emulator: Pub/Sub remembers its outbox by
// the follow subscription's existence, so a start without the file
// refuses, though it cannot count what waited in it.
func TestIngestOnlyOutboxIsRememberedByPubSub(t *testing.T) {
	t.Parallel()
	if os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
		t.Skip("needs PUBSUB_EMULATOR_HOST: the record is a subscription that outlives the process")
	}
	cfg := testConfig(t, pipeline.PubSubEmulator)
	cfg.Stages = []pipeline.Stage{pipeline.StageIngest}
	r := startService(t, cfg)
	for i := range 3 {
		if code, resp, _ := post(t, r.base, "application/json", insertBody(i)); code != http.StatusOK {
			t.Fatalf("POST %d: %d %+v", i, code, resp)
		}
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// The same outbox: a restart starts.
	r = startService(t, cfg)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cfg.OutboxPath); err != nil {
		t.Fatal(err)
	}
	mustContain(t, newService(t, cfg), "is missing", "Pub/Sub (subscription "+cfg.SubscriptionID+"-outbox-applied-",
		"how many entries were pending is unknown", "--outbox-accept-loss")
	accept := cfg
	accept.OutboxAcceptLoss = true
	r = startService(t, accept)
	if got := metricValue(t, r.base, "gatekeeper_outbox_loss_accepted_total"); got != 1 {
		t.Errorf("gatekeeper_outbox_loss_accepted_total = %v, want 1", got)
	}
}

// A warehouse another process holds locked at start does not hold the
// start up for the outbox's record: it is written once the lock goes.
func TestOutboxRecordWaitsForALockedWarehouse(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pipeline.PubSubEmbedded)
	first := cfg
	first.Outbox = pipeline.OutboxOff // the warehouse's tables, no record
	r := startService(t, first)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	spec, _ := pipeline.ParseWarehouse(cfg.Warehouse)
	release := warehousetest.HoldSQLiteLock(t, spec.Path)
	started := time.Now()
	svc, err := pipeline.NewService(context.Background(), cfg, testLogger())
	if err != nil {
		t.Fatalf("NewService with the warehouse locked: %v", err)
	}
	if took := time.Since(started); took > 4*time.Second {
		t.Errorf("NewService took %s with the warehouse locked", took)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	release()

	w, err := sqlite.Open(context.Background(), sqlite.Config{Path: spec.Path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	host, _ := os.Hostname()
	abs, _ := filepath.Abs(cfg.OutboxPath)
	deadline := time.Now().Add(20 * time.Second)
	for {
		rec, found, err := w.OutboxRecord(context.Background(), host, abs)
		if err == nil && found && rec.Pending == warehouse.PendingUnknown && len(rec.Identity) == 16 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record of the outbox 20 s after the lock went: %+v %v %v", rec, found, err)
		}
		time.Sleep(100 * time.Millisecond) // the poll's interval; the deadline bounds it
	}
}
