package warehouse

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// EventsTable is the append-only log, in every adapter, of what happened to
// payloads that did not simply apply: poisoned, replayed, purged. It is the
// operators' index of the poison topic: the topic stays the record, and the
// log is what concurrent operators query without leasing a message or
// touching its delivery attempts. A payload's current state is its latest
// event (see Event.Before).
const EventsTable = "_gatekeeper_events"

// EventKind is what happened to a payload.
type EventKind string

const (
	// EventPoisoned: the payload reached the poison topic, and the indexer
	// read it from there.
	EventPoisoned EventKind = "poisoned"
	// EventReplayed: an operator published it again to the accepted topic.
	EventReplayed EventKind = "replayed"
	// EventPurged: an operator dropped it; it is never replayed.
	EventPurged EventKind = "purged"
)

// EventKinds lists every kind, in the order they rank within a generation.
var EventKinds = []EventKind{EventReplayed, EventPoisoned, EventPurged}

// Rank orders kinds within one generation: a replay starts a generation, a
// failure of the replayed copy poisons it again, a purge ends it. An unknown
// kind ranks -1. Adapters store it beside the kind, so their queries order
// events as Before does.
func (k EventKind) Rank() int {
	switch k {
	case EventReplayed:
		return 0
	case EventPoisoned:
		return 1
	case EventPurged:
		return 2
	}
	return -1
}

// Event is one row of the events log.
type Event struct {
	// ID identifies the event. Appending an event whose ID is already in
	// the log changes nothing, so a poison message redelivered after a crash
	// is indexed once. See EventID.
	ID        string
	PayloadID string
	Kind      EventKind
	// Generation is how many times the payload had been replayed when the
	// event happened (the message's "replays" attribute): the first poisoning
	// is generation 0, its replay is generation 1, a failure of that replay
	// is poisoned in generation 1 again.
	Generation int
	// At is when the event was written; AppendEvents sets a zero At to the
	// time of the call.
	At time.Time

	// What the poison message said; empty for replayed and purged events
	// (see Entry for the values that carry over).
	ErrorClass     string
	Reason         string
	Tables         []string
	Attempts       int
	FirstFailureAt time.Time
	LastFailureAt  time.Time
	ReceivedAt     time.Time
	CorrelationID  string
	// Attributes are every attribute of the poison message, Pub/Sub's own
	// CloudPubSubDeadLetter* included.
	Attributes map[string]string
	// Payload is the message's data as it was published. Empty for replayed
	// and purged events.
	Payload []byte
	// Actor says who replayed or purged ("cli", "admin-api", …); empty for
	// poisoned events.
	Actor string
}

// EventID is the ID of the event of this kind and generation for a payload:
// the same for every copy of one poison message, different for the next
// poisoning after a replay.
func EventID(payloadID string, kind EventKind, generation int) string {
	return payloadID + "/" + string(kind) + "/" + strconv.Itoa(generation)
}

// Before reports whether e happened before o for the same payload: by
// generation, then by kind within a generation, then by time. Clocks of
// different processes never decide between kinds.
func (e Event) Before(o Event) bool {
	if e.Generation != o.Generation {
		return e.Generation < o.Generation
	}
	if e.Kind.Rank() != o.Kind.Rank() {
		return e.Kind.Rank() < o.Kind.Rank()
	}
	return e.At.Before(o.At)
}

// Validate reports what keeps e out of the log: an empty ID or PayloadID,
// an unknown Kind or a negative Generation.
func (e Event) Validate() error {
	var errs []error
	if e.ID == "" {
		errs = append(errs, errors.New("event has no ID"))
	}
	if e.PayloadID == "" {
		errs = append(errs, fmt.Errorf("event %q has no PayloadID", e.ID))
	}
	if e.Kind.Rank() < 0 {
		errs = append(errs, fmt.Errorf("event %q has the unknown kind %q", e.ID, e.Kind))
	}
	if e.Generation < 0 {
		errs = append(errs, fmt.Errorf("event %q has the negative generation %d", e.ID, e.Generation))
	}
	return errors.Join(errs...)
}

// Entry is a payload's current state in the log: its latest event, with
// the failure details of its latest poisoning carried over when the latest
// event is a replay or a purge.
type Entry struct {
	// State is the latest event's kind.
	State EventKind
	// Latest is the latest event.
	Latest Event
	// Poisoned is the latest poisoned event, whose failure details and
	// payload describe the entry. A log fed only through the indexer always
	// has one.
	Poisoned Event
	// Replays is how many times operators replayed the payload.
	Replays int
	// FirstAt is when the payload's earliest event was written: its first
	// appearance in the log, which later events never change. Entries
	// orders by it (Key).
	FirstAt time.Time
}

// EntryKey is an entry's place in the order Entries returns: first
// appearance (FirstAt) most recent first, ties by payload id. A payload's
// key never changes once it is in the log, so a walk that continues after
// the key of the last entry it read (EventFilter.After) reads every entry
// at most once, whatever happens to the entries meanwhile; payloads that
// first appear during the walk sort before it and are left to the next
// walk.
type EntryKey struct {
	FirstAt   time.Time
	PayloadID string
}

// Key is e's place in the order of Entries.
func (e Entry) Key() EntryKey { return EntryKey{FirstAt: e.FirstAt, PayloadID: e.Latest.PayloadID} }

// IsZero reports whether k is the zero key: a walk from the start.
func (k EntryKey) IsZero() bool { return k.FirstAt.IsZero() && k.PayloadID == "" }

// EntryOf is the entry of one payload's events, in any order, by the rules
// Entry describes; nil when there are none. Adapters whose queries return a
// payload's events use it, so the rules live here once.
func EntryOf(events []Event) *Entry {
	if len(events) == 0 {
		return nil
	}
	var e Entry
	var poisoned bool
	for i, ev := range events {
		if i == 0 || e.Latest.Before(ev) {
			e.Latest = ev
		}
		if i == 0 || ev.At.Before(e.FirstAt) {
			e.FirstAt = ev.At
		}
		switch ev.Kind {
		case EventReplayed:
			e.Replays++
		case EventPoisoned:
			if !poisoned || e.Poisoned.Before(ev) {
				e.Poisoned, poisoned = ev, true
			}
		}
	}
	e.State = e.Latest.Kind
	return &e
}

// EventFilter selects entries. The zero value selects every entry whose
// state is poisoned.
type EventFilter struct {
	// States selects by current state; empty means []EventKind{EventPoisoned}.
	States []EventKind
	// PayloadIDs, when not empty, selects only these payloads.
	PayloadIDs []string
	// Table selects entries whose latest poisoning touched this table.
	Table string
	// Class selects by the latest poisoning's error class.
	Class string
	// Since selects entries whose latest event is at or after it.
	Since time.Time
	// Reason selects entries whose latest poisoning's reason contains it
	// (case-insensitive).
	Reason string
	// Backend selects entries whose latest poisoning came from this
	// backend: the poison message's "backend" attribute.
	Backend string
	// Keyed selects entries whose latest poisoning carried an ordering
	// key: the poison message's "ordering_key" attribute is not empty.
	// ORDERING_POISON=block reads the blocked keys with it.
	Keyed bool
	// Search selects entries whose payload id, or whose latest poisoning's
	// correlation id, starts with it (case matters): a whole id is a prefix
	// of itself.
	Search string
	// After continues a walk: only entries after this key in the order of
	// Entries. The zero key starts from the beginning.
	After EntryKey
	// Limit bounds the entries returned; <= 0 means all.
	Limit int
	// Brief leaves the events' Payload and Attributes out of the entries
	// returned, for callers that count and group thousands of entries
	// rather than show them.
	Brief bool
}

// FailureGroup is a group of entries whose latest poisonings share an error
// class, tables, a reason and a time of failure (LastFailureAt, or the
// latest event's time without one): what summaries count, read without
// reading each entry.
type FailureGroup struct {
	ErrorClass string
	Tables     []string
	Reason     string
	At         time.Time
	Count      int
	// Example is one payload id of the group.
	Example string
}

// StateCount is how many payloads are in one state and the oldest of
// their latest events: since when the longest-waiting one is in it.
type StateCount struct {
	Entries int
	// Oldest is zero when no payload is in the state.
	Oldest time.Time
}

// PayloadState is what the warehouse knows about one payload: its ledger
// row and its latest event. Both can be absent.
type PayloadState struct {
	// Applied: the ledger holds the payload.
	Applied      bool
	AppliedAt    time.Time
	RowsAffected int64 // -1 when the ledger row does not record it
	// Entry is the payload's entry in the events log; nil without events.
	Entry *Entry
}

// AcksTable holds operators' acknowledgements of causes of failure: a
// small append-only table beside the events log, in every adapter.
const AcksTable = "_gatekeeper_acks"

// CauseAck is an operator's word on one cause of failure (the console's
// CauseOf): acknowledged, or open again. A cause's latest ack is its state.
type CauseAck struct {
	Cause string
	// Acknowledged is false when the operator opened the cause again.
	Acknowledged bool
	// At is when; AcknowledgeCause sets a zero At to the time of the call.
	At    time.Time
	Actor string
}

// EventLog is the events log. Adapters implement it beside Warehouse and
// Reader.
type EventLog interface {
	// AppendEvents appends events, skipping any whose ID is already in the
	// log. It must not spend the backend's DML quota (BigQuery: streaming
	// inserts or the Storage Write API), so an outage that poisons 100,000
	// payloads does not throttle the apply stage.
	AppendEvents(ctx context.Context, events []Event) error
	// Entries returns the current entries that f selects, in the order of
	// their keys (EntryKey): first appearance in the log, most recent first,
	// ties by payload id.
	Entries(ctx context.Context, f EventFilter) ([]Entry, error)
	// CountSelected returns how many entries f selects, ignoring its
	// After and Limit: the total a page of Entries is part of.
	CountSelected(ctx context.Context, f EventFilter) (int, error)
	// FailureGroups returns the entries f selects (ignoring After and
	// Limit), grouped as FailureGroup says, in no particular order. Groups
	// may repeat (SQLite returns one per entry): callers add them up.
	FailureGroups(ctx context.Context, f EventFilter) ([]FailureGroup, error)
	// History returns every event of one payload, oldest first (Before).
	History(ctx context.Context, payloadID string) ([]Event, error)
	// CountEntries returns how many payloads are in each state (their
	// latest event's kind) and since when the oldest of them is in it,
	// every kind present with a zero StateCount when none is. One read:
	// the poison gauges take both from it at each scrape.
	CountEntries(ctx context.Context) (map[EventKind]StateCount, error)
	// State returns what the ledger and the log hold about one payload, in
	// one indexed read.
	State(ctx context.Context, payloadID string) (PayloadState, error)
	// AcknowledgeCause records an ack in AcksTable. Like AppendEvents, it
	// spends no DML quota.
	AcknowledgeCause(ctx context.Context, ack CauseAck) error
	// CauseAcks returns each cause's latest ack (by At), by cause.
	CauseAcks(ctx context.Context) (map[string]CauseAck, error)
}
