package pipeline

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/bigquery"
	"github.com/gatekeeper/gatekeeper/warehouse/sqlite"
)

// OpenWarehouse opens the adapter cfg.Warehouse names.
func OpenWarehouse(ctx context.Context, cfg Config, logger *slog.Logger) (warehouse.Store, error) {
	spec, err := ParseWarehouse(cfg.Warehouse)
	if err != nil {
		return nil, err
	}
	// Each adapter's nil pointer is returned as a nil warehouse.Store, never
	// as one holding a nil pointer, which callers would try to Close.
	switch spec.Kind {
	case WarehouseSQLite:
		w, err := sqlite.Open(ctx, sqlite.Config{Path: spec.Path, Sync: sqlite.Sync(cfg.SQLiteSync)}, logger)
		if err != nil {
			return nil, err
		}
		return w, nil
	case WarehouseBigQuery:
		w, err := bigquery.Open(ctx, bigquery.Config{
			ProjectID:                   cfg.ProjectID,
			DatasetID:                   cfg.DatasetID,
			Location:                    cfg.BigQueryLocation,
			DMLBudget:                   cfg.BigQueryDMLBudget,
			EmulatorHost:                cfg.BigQueryEmulatorHost,
			CredentialsFile:             cfg.CredentialsFile,
			DoNotCreateDatasetIfMissing: cfg.DoNotCreateResources,
		}, logger)
		if err != nil {
			return nil, err
		}
		return w, nil
	default:
		return nil, fmt.Errorf("WAREHOUSE=%s is not available in this build", spec.Kind)
	}
}
