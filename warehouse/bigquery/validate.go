package bigquery

import (
	"context"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// Check checks activities as Apply would, against the tables as BigQuery
// describes them now (read afresh, not from the cache), and writes nothing
// (warehouse.Checker). Apply's limits of one job are not checked.
func (w *Warehouse) Check(ctx context.Context, activities []messages.Activity) (problem, err error) {
	if !w.enter() {
		return nil, messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	res, err := warehouse.NewPlan(planRules, func(ctx context.Context, table string) (*tableInfo, bool, error) {
		info, err := w.backend.table(ctx, table)
		return info, info != nil, err
	}).Check(ctx, activities)
	if err != nil {
		return nil, err
	}
	return res.Problem, nil
}

var _ warehouse.Checker = (*Warehouse)(nil)
