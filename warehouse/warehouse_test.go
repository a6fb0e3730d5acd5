package warehouse_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

func TestLedgerOutcome(t *testing.T) {
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	p := warehouse.Payload{ID: "p1", Hash: "h1"}

	for _, stored := range []string{"h1", ""} {
		if got := warehouse.LedgerOutcome(p, stored, logger); got.Status != warehouse.Duplicate || got.Err != nil {
			t.Errorf("stored %q: %+v, want Duplicate", stored, got)
		}
	}
	if got := warehouse.LedgerOutcome(warehouse.Payload{ID: "p1"}, "h1", logger); got.Status != warehouse.Duplicate {
		t.Errorf("no incoming hash: %+v, want Duplicate", got)
	}
	if log.Len() != 0 {
		t.Errorf("a duplicate logged: %s", log.String())
	}

	got := warehouse.LedgerOutcome(p, "h2", logger)
	if got.Status != warehouse.Rejected || !errors.Is(got.Err, warehouse.ErrPayloadMismatch) || messages.ClassOf(got.Err) != messages.ClassPermanent {
		t.Errorf("other content under the id: %+v, want Rejected, permanent, ErrPayloadMismatch", got)
	}
	if !strings.Contains(log.String(), "payload_id=p1") {
		t.Errorf("the rejection is not logged with its payload_id: %q", log.String())
	}
}
