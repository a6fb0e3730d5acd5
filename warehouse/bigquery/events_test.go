package bigquery

import (
	"context"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

func TestAppendEventsStreamsAndSpendsNoDML(t *testing.T) {
	f := newFakeBackend()
	w := openFake(t, f, Config{})
	events := []warehouse.Event{
		{ID: "p/poisoned/0", PayloadID: "p", Kind: warehouse.EventPoisoned, At: time.Now()},
		{ID: "p/replayed/1", PayloadID: "p", Kind: warehouse.EventReplayed, Generation: 1},
	}
	if err := w.AppendEvents(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	if got := f.callCount("tabledata.insertAll"); got != 1 {
		t.Errorf("%d insertAll calls, want 1", got)
	}
	if got := f.callCount("jobs.insert") + f.callCount("query"); got != 0 {
		t.Errorf("%d jobs and queries, want none", got)
	}
	if got := f.inserted[warehouse.EventsTable]; got != 2 {
		t.Errorf("%d rows streamed, want 2", got)
	}

	err := w.AppendEvents(context.Background(), []warehouse.Event{{ID: "x", PayloadID: "x", Kind: "exploded"}})
	if messages.ClassOf(err) != messages.ClassPermanent || f.callCount("tabledata.insertAll") != 1 {
		t.Errorf("an invalid event: %v (class %q), %d insertAll calls; want a permanent error before any call",
			err, messages.ClassOf(err), f.callCount("tabledata.insertAll"))
	}
}

func TestEventSaverUsesTheEventIDAsInsertID(t *testing.T) {
	e := warehouse.Event{ID: "p/poisoned/0", PayloadID: "p", Kind: warehouse.EventPoisoned, At: time.Now(),
		Tables: []string{"a", "b"}, Payload: []byte{0, 1, 2}}
	row, insertID, err := eventSaver{e}.Save()
	if err != nil {
		t.Fatal(err)
	}
	if insertID != e.ID {
		t.Errorf("insert ID %q, want the event ID %q", insertID, e.ID)
	}
	for _, f := range eventFields {
		if _, ok := row[f.name]; !ok {
			t.Errorf("the row has no %s", f.name)
		}
	}
	if len(row) != len(eventFields) {
		t.Errorf("the row has %d values, want %d", len(row), len(eventFields))
	}
	back, err := readEvent(func() []bigquery.Value {
		var vals []bigquery.Value
		for _, c := range eventColumns {
			vals = append(vals, row[c])
		}
		return vals
	}())
	if err != nil {
		t.Fatal(err)
	}
	if string(back.Payload) != string(e.Payload) || strings.Join(back.Tables, ",") != "a,b" {
		t.Errorf("read back %+v", back)
	}
}

func TestOpenRefusesAnEventsTableWithoutItsColumns(t *testing.T) {
	f := newFakeBackend()
	f.setTable(warehouse.EventsTable, bigquery.Schema{{Name: "event_id", Type: bigquery.StringFieldType}})
	cfg := Config{ProjectID: "proj", DatasetID: "ds"}
	cfg.setDefaults()
	if _, err := open(context.Background(), cfg, nil, f); err == nil || !strings.Contains(err.Error(), "payload_id") {
		t.Fatalf("open = %v, want an error naming the missing columns", err)
	}
}
