package handlers_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/gatekeeper/gatekeeper/handlers"
	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
	"github.com/gatekeeper/gatekeeper/warehouse/sqlite"
)

const insertOnly = `{"activities":[{"operation":"insert","table":"table1","col_names":["a","b"],"col_types":["INT","TEXT"],"col_values":[1.0,"x"]}]}`

func TestGatePublishesCanonicalPayloadWithMetadata(t *testing.T) {
	bus := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	defer bus.Close()
	gate, err := handlers.NewGate(handlers.GateConfig{Publisher: bus, Topic: "accepted"})
	if err != nil {
		t.Fatal(err)
	}
	in := message.NewMessage("payload-1", []byte(insertOnly))
	in.Metadata.Set(messages.MetaCorrelationID, "corr")
	in.Metadata.Set(messages.MetaReceivedAt, "2026-01-02T03:04:05.123456789Z")
	in.Metadata.Set(messages.MetaContentType, "application/json")
	in.Metadata.Set("x-private", "not forwarded")
	if err := gate.Handle(in); err != nil {
		t.Fatal(err)
	}
	ch, err := bus.Subscribe(context.Background(), "accepted")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case out := <-ch:
		out.Ack()
		want, _ := messages.Parse([]byte(insertOnly))
		if out.UUID != "payload-1" || string(out.Payload) != string(want.Canonical()) {
			t.Errorf("published %s %s", out.UUID, out.Payload)
		}
		if out.Metadata.Get(messages.MetaCorrelationID) != "corr" || out.Metadata.Get("x-private") != "" {
			t.Errorf("metadata %v", out.Metadata)
		}
		sum := sha256.Sum256(want.Canonical())
		if h := hex.EncodeToString(sum[:]); out.Metadata.Get(messages.MetaPayloadHash) != h || in.Metadata.Get(messages.MetaPayloadHash) != h {
			t.Errorf("payload_hash published %q, on the request's message %q; want %q",
				out.Metadata.Get(messages.MetaPayloadHash), in.Metadata.Get(messages.MetaPayloadHash), h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing published")
	}
}

type failingPublisher struct{ message.Publisher }

func (failingPublisher) Publish(string, ...*message.Message) error { return errors.New("unreachable") }

func TestGateClassifiesItsFailures(t *testing.T) {
	gate, _ := handlers.NewGate(handlers.GateConfig{Publisher: failingPublisher{}, Topic: "accepted"})
	if err := gate.Handle(message.NewMessage("1", []byte(`{"activities":[]}`))); messages.ClassOf(err) != messages.ClassInvalid {
		t.Errorf("invalid payload: class %q (%v), want invalid", messages.ClassOf(err), err)
	}
	if err := gate.Handle(message.NewMessage("2", []byte(insertOnly))); messages.ClassOf(err) != messages.ClassTransient {
		t.Errorf("publish failure: class %q (%v), want transient", messages.ClassOf(err), err)
	}
	_, err := handlers.NewGate(handlers.GateConfig{PublishTimeout: -1})
	want := "gate config: Publisher is required\ngate config: Topic is required\ngate config: PublishTimeout must not be negative"
	if err == nil || err.Error() != want {
		t.Errorf("NewGate of an empty config: %v, want every problem in order:\n%s", err, want)
	}
	if _, err := handlers.NewApply(handlers.ApplyConfig{}); err == nil {
		t.Error("NewApply accepted a config without a Submitter")
	}
}

// A payload id applied before with other content is a permanent failure
// that names the reuse, whether the hash came as metadata or is computed
// from a message without it.
func TestApplyRejectsAnAppliedIDWithOtherContent(t *testing.T) {
	apply, store := newApply(t)
	first := message.NewMessage("keyed", []byte(insertOnly))
	if _, err := apply.Handle(first); err != nil {
		t.Fatal(err)
	}
	const other = `{"activities":[{"operation":"insert","table":"table1","col_names":["a","b"],"col_types":["INT","TEXT"],"col_values":[2.0,"y"]}]}`
	for _, withMeta := range []bool{false, true} {
		msg := message.NewMessage("keyed", []byte(other))
		if withMeta {
			p, err := messages.Parse([]byte(other))
			if err != nil {
				t.Fatal(err)
			}
			msg.Metadata.Set(messages.MetaPayloadHash, messages.PayloadHash(p.Canonical()))
		}
		_, err := apply.Handle(msg)
		if messages.ClassOf(err) != messages.ClassPermanent || !errors.Is(err, warehouse.ErrPayloadMismatch) ||
			!strings.Contains(err.Error(), "payload id keyed was applied with different content: same Idempotency-Key, different payload") {
			t.Fatalf("other content under an applied id (metadata %v): %v, want the permanent mismatch", withMeta, err)
		}
	}
	if rows, err := store.Rows(context.Background(), "table1", 0); err != nil || len(rows) != 1 {
		t.Fatalf("rows %v, %v: want only the first payload's", rows, err)
	}
}

func newApply(t *testing.T) (*handlers.Apply, *sqlite.Warehouse) {
	t.Helper()
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: t.TempDir() + "/w.db"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	committer, err := warehouse.NewGroupCommitter(store, warehouse.GroupConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { committer.Close(context.Background()) })
	apply, err := handlers.NewApply(handlers.ApplyConfig{Submitter: committer})
	if err != nil {
		t.Fatal(err)
	}
	return apply, store
}

func TestApplyProducesAppliedEventThenDuplicate(t *testing.T) {
	apply, store := newApply(t)
	for i, wantDuplicate := range []bool{false, true} {
		out, err := apply.Handle(message.NewMessage("payload-1", []byte(insertOnly)))
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 1 || out[0].UUID != "payload-1" {
			t.Fatalf("delivery %d produced %v", i, out)
		}
		var ev messages.AppliedEvent
		if err := json.Unmarshal(out[0].Payload, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Duplicate != wantDuplicate || ev.PayloadID != "payload-1" || len(ev.Tables) != 1 {
			t.Errorf("delivery %d: event %+v", i, ev)
		}
	}
	rows, err := store.Rows(context.Background(), "table1", 0)
	if err != nil || len(rows) != 1 {
		t.Fatalf("rows %v, %v: want exactly one", rows, err)
	}
}

func TestApplyErrorsArePermanentWhereRetryCannotHelp(t *testing.T) {
	apply, _ := newApply(t)
	msg := message.NewMessage("bad", []byte(`not json`))
	if _, err := apply.Handle(msg); messages.ClassOf(err) != messages.ClassPermanent {
		t.Errorf("malformed message: class %q, want permanent", messages.ClassOf(err))
	}
	missing := `{"activities":[{"operation":"delete","table":"nowhere","value_to_delete":{"col_names":["a"],"col_types":["INT"],"col_values":[1]}}]}`
	msg = message.NewMessage("missing", []byte(missing))
	_, err := apply.Handle(msg)
	if messages.ClassOf(err) != messages.ClassPermanent || !errors.Is(err, warehouse.ErrTableNotFound) {
		t.Errorf("delete on a missing table: %v (class %q), want permanent ErrTableNotFound", err, messages.ClassOf(err))
	}
	if msg.Metadata.Get(messages.MetaTables) != "nowhere" {
		t.Errorf("tables metadata %q", msg.Metadata.Get(messages.MetaTables))
	}
}

type rejectingSubmitter struct{}

func (rejectingSubmitter) Submit(context.Context, warehouse.Payload) (warehouse.Outcome, error) {
	return warehouse.Outcome{Status: warehouse.Rejected}, nil
}

// A rejection without a reason is still an error: acked silently it would
// leave neither an applied event nor a poison message.
func TestApplyTreatsAReasonlessRejectionAsPermanent(t *testing.T) {
	apply, err := handlers.NewApply(handlers.ApplyConfig{Submitter: rejectingSubmitter{}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := apply.Handle(message.NewMessage("r", []byte(insertOnly)))
	if len(out) != 0 || messages.ClassOf(err) != messages.ClassPermanent {
		t.Fatalf("Handle = %v, %v (class %q), want no event and a permanent error", out, err, messages.ClassOf(err))
	}
}
