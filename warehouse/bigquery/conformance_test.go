package bigquery_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	bq "cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/bigquery"
	"github.com/gatekeeper/gatekeeper/warehouse/warehousetest"
)

// emulatorProject is the project the emulator was started with:
// BIGQUERY_EMULATOR_PROJECT (which the emulator reads too), or "test".
func emulatorProject() string {
	if p := os.Getenv("BIGQUERY_EMULATOR_PROJECT"); p != "" {
		return p
	}
	return "test"
}

// emulatorHost returns BIGQUERY_EMULATOR_HOST, or skips t. Run the tests
// against a fresh emulator (it slows down with every job it keeps):
//
//	bigquery-emulator --project=test --port=9050 --grpc-port=9060 &
//	BIGQUERY_EMULATOR_HOST=127.0.0.1:9050 go test ./warehouse/bigquery/
func emulatorHost(t *testing.T) string {
	t.Helper()
	host := os.Getenv("BIGQUERY_EMULATOR_HOST")
	if host == "" {
		t.Skip("BIGQUERY_EMULATOR_HOST is not set: start goccy/bigquery-emulator (--project=test) and point it there to run the BigQuery tests against it")
	}
	return host
}

// emulatorFeatures are what goccy/bigquery-emulator (v0.6.6) can do of what
// BigQuery does. Unit tests over the fake backend cover the adapter's side
// of each gap.
var emulatorFeatures = warehousetest.Features{
	// tables.patch answers with the new schema but keeps the old one, and
	// tables.update is not implemented; there is no ALTER TABLE either.
	// See TestAddsColumnsWithOneUpdatePerTable.
	AddsColumns: false,
	// Apply leaves the ledger's rows_affected NULL (see ensureLedger).
	LedgerRowsAffected: false,
}

func TestConformance(t *testing.T) {
	host := emulatorHost(t)
	warehousetest.Run(t, emulatorFeatures, func(t *testing.T) warehouse.Store {
		return openEmulated(t, host, bigquery.Config{})
	})
}

// openEmulated opens a warehouse on a fresh dataset of the emulator and
// deletes the dataset when t ends.
func openEmulated(t *testing.T, host string, cfg bigquery.Config) *bigquery.Warehouse {
	t.Helper()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(t.Name()))
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	cfg.ProjectID = emulatorProject()
	cfg.DatasetID = "gk_" + name + "_" + hex.EncodeToString(suffix)
	cfg.EmulatorHost = host
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := bigquery.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		dropDataset(t, host, cfg.DatasetID)
	})
	return w
}

func dropDataset(t *testing.T, host, dataset string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := bq.NewClient(ctx, emulatorProject(), option.WithEndpoint("http://"+host), option.WithoutAuthentication())
	if err != nil {
		t.Logf("drop dataset %s: %v", dataset, err)
		return
	}
	defer client.Close()
	if err := client.Dataset(dataset).DeleteWithContents(ctx); err != nil {
		t.Logf("drop dataset %s: %v", dataset, err)
	}
}
