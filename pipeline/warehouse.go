package pipeline

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/bigquery"
	"github.com/gatekeeper/gatekeeper/warehouse/sqlite"
)

// Store is what the service and its tools need of a warehouse adapter.
type Store interface {
	warehouse.Warehouse
	warehouse.Reader
}

// OpenWarehouse opens the adapter cfg.Warehouse names.
func OpenWarehouse(ctx context.Context, cfg Config, logger *slog.Logger) (Store, error) {
	spec, err := ParseWarehouse(cfg.Warehouse)
	if err != nil {
		return nil, err
	}
	switch spec.Kind {
	case WarehouseSQLite:
		return sqlite.Open(ctx, sqlite.Config{Path: spec.Path, Sync: sqlite.Sync(cfg.SQLiteSync)}, logger)
	case WarehouseBigQuery:
		return bigquery.Open(ctx, bigquery.Config{
			ProjectID:                   cfg.ProjectID,
			DatasetID:                   cfg.DatasetID,
			Location:                    cfg.BigQueryLocation,
			EmulatorHost:                cfg.BigQueryEmulatorHost,
			CredentialsFile:             cfg.CredentialsFile,
			DoNotCreateDatasetIfMissing: !cfg.CreateResources,
		}, logger)
	default:
		return nil, fmt.Errorf("WAREHOUSE=%s is not available in this build", spec.Kind)
	}
}
