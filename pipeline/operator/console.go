package operator

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gatekeeper/gatekeeper/warehouse"
)

// ErrNotInIndex is returned for a payload id the poison index does not hold.
var ErrNotInIndex = errors.New("not in the poison index")

// Publishers gives a publisher per topic: a *pubsub.Client is one.
type Publishers interface {
	Publisher(topicNameOrID string) *pubsub.Publisher
}

// ConsoleConfig is what a Console works on.
type ConsoleConfig struct {
	// Store is the warehouse: its events log is the poison index, its
	// ledger says what was applied. Required.
	Store warehouse.Store
	// Publishers publish replayed payloads. Required.
	Publishers Publishers
	// TopicID and OrderedTopicID are where replayed payloads go: keyed
	// ones to OrderedTopicID, the others to TopicID. Required.
	TopicID, OrderedTopicID string
	// Close, when set, releases what the console was given and owns (the
	// CLI's warehouse and Pub/Sub client); a service's console owns
	// nothing.
	Close func() error
}

func (c *ConsoleConfig) setDefaults() {
	if c.Close == nil {
		c.Close = func() error { return nil }
	}
}

// Validate reports every problem of c at once.
func (c ConsoleConfig) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("console: Store is required"))
	}
	if c.Publishers == nil {
		errs = append(errs, errors.New("console: Publishers is required"))
	}
	if c.TopicID == "" {
		errs = append(errs, errors.New("console: TopicID is required"))
	}
	if c.OrderedTopicID == "" {
		errs = append(errs, errors.New("console: OrderedTopicID is required"))
	}
	return errors.Join(errs...)
}

// Console is what an operator does with poisoned payloads: list, summarise,
// show, replay, export and purge them. The gatekeeper poison commands and
// the admin API share it. It reads the poison index (the warehouse's events
// log), never the poison subscription, so operators side by side see the
// same complete set and no delivery attempt is spent on looking.
type Console struct {
	cfg    ConsoleConfig
	store  warehouse.Store
	logger *slog.Logger
}

// NewConsole validates cfg and returns a console over it.
func NewConsole(cfg ConsoleConfig, logger *slog.Logger) (*Console, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Console{cfg: cfg, store: cfg.Store, logger: logger}, nil
}

// Close releases what the console owns (ConsoleConfig.Close), once.
func (c *Console) Close() error {
	f := c.cfg.Close
	c.cfg.Close = func() error { return nil }
	return f()
}

// PoisonRecord is one indexed payload as operators see it: the JSON lines
// of `poison list --json` and the items of GET /api/poison.
type PoisonRecord struct {
	PayloadID      string          `json:"payload_id"`
	ReceivedAt     *time.Time      `json:"received_at"`
	FirstFailureAt *time.Time      `json:"first_failure_at"`
	LastFailureAt  *time.Time      `json:"last_failure_at"`
	Attempts       int             `json:"attempts"`
	ErrorClass     string          `json:"error_class"`
	Tables         []string        `json:"tables"`
	Reason         string          `json:"reason"`
	CorrelationID  string          `json:"correlation_id"`
	State          string          `json:"state"`
	Replays        int             `json:"replays"`
	Payload        json.RawMessage `json:"payload"`
	// Cause names the cause of failure the payload shares with others
	// (CauseOf); FirstSeen is when it first appeared in the index, the
	// list's order.
	Cause     string    `json:"cause"`
	FirstSeen time.Time `json:"first_seen"`
}

func recordOf(e warehouse.Entry) PoisonRecord {
	p := e.Poisoned
	tables := p.Tables
	if tables == nil {
		tables = []string{}
	}
	return PoisonRecord{
		PayloadID: e.Latest.PayloadID, ReceivedAt: timePtr(p.ReceivedAt),
		FirstFailureAt: timePtr(p.FirstFailureAt), LastFailureAt: timePtr(p.LastFailureAt),
		Attempts: p.Attempts, ErrorClass: p.ErrorClass, Tables: tables, Reason: p.Reason,
		CorrelationID: p.CorrelationID, State: string(e.State), Replays: e.Replays,
		Payload: rawJSON(p.Payload), Cause: CauseOf(p), FirstSeen: e.FirstAt,
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// rawJSON keeps a payload that is JSON as it is, and quotes one that is not
// (a foreign message on the poison topic), so a record is always JSON.
func rawJSON(b []byte) json.RawMessage {
	if len(b) > 0 && json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}

// List returns the entries f selects, most recently indexed first.
func (c *Console) List(ctx context.Context, f warehouse.EventFilter) ([]PoisonRecord, error) {
	entries, err := c.store.Entries(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("read the poison index: %w", err)
	}
	out := make([]PoisonRecord, len(entries))
	for i, e := range entries {
		out[i] = recordOf(e)
	}
	return out, nil
}

// SummaryGroup is one cause of failure: the payloads that share an error
// class, a set of tables and a reason once its values are stripped.
type SummaryGroup struct {
	// Cause names the group (CauseOf): GET /api/poison?cause= lists it.
	Cause      string    `json:"cause"`
	ErrorClass string    `json:"error_class"`
	Tables     []string  `json:"tables"`
	Reason     string    `json:"reason"`
	Count      int       `json:"count"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	// Example is one payload id of the group, to start from with show.
	Example string `json:"example_payload_id"`
	// Hourly counts the group's payloads by the hour they last failed,
	// over the last 24 hours, oldest first: the last is the current hour.
	Hourly []int `json:"hourly"`
	// AcknowledgedAt is when an operator acknowledged the cause, if one
	// did and did not open it again; New counts its payloads that failed
	// since (all of them when it is not acknowledged).
	AcknowledgedAt *time.Time `json:"acknowledged_at"`
	New            int        `json:"new"`
}

// Summary groups the entries f selects by cause, largest group first, so
// that 50,000 poisoned payloads read as the few causes they share.
func (c *Console) Summary(ctx context.Context, f warehouse.EventFilter) ([]SummaryGroup, error) {
	failures, err := c.store.FailureGroups(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("read the poison index: %w", err)
	}
	acks, err := c.store.CauseAcks(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the acknowledged causes: %w", err)
	}
	now := time.Now().UTC()
	thisHour := now.Truncate(time.Hour)
	groups := map[string]*SummaryGroup{}
	var causes causeMemo
	for _, fg := range failures {
		p := warehouse.Event{ErrorClass: fg.ErrorClass, Tables: fg.Tables, Reason: fg.Reason}
		key := causes.of(p)
		seen := fg.At
		g := groups[key]
		if g == nil {
			tables := p.Tables
			if tables == nil {
				tables = []string{}
			}
			g = &SummaryGroup{Cause: key, ErrorClass: p.ErrorClass, Tables: tables, Reason: ReasonPattern(p.Reason),
				FirstSeen: seen, LastSeen: seen, Example: fg.Example, Hourly: make([]int, 24)}
			groups[key] = g
		}
		if h := int(thisHour.Sub(seen.Truncate(time.Hour)) / time.Hour); h >= 0 && h < 24 && !seen.After(now.Add(time.Hour)) {
			g.Hourly[23-h] += fg.Count
		}
		if a, ok := acks[key]; !ok || !a.Acknowledged || seen.After(a.At) {
			g.New += fg.Count
		}
		g.Count += fg.Count
		if seen.Before(g.FirstSeen) {
			g.FirstSeen = seen
		}
		if seen.After(g.LastSeen) {
			g.LastSeen = seen
		}
		if fg.Example < g.Example {
			g.Example = fg.Example
		}
	}
	out := make([]SummaryGroup, 0, len(groups))
	for _, g := range groups {
		if a, ok := acks[g.Cause]; ok && a.Acknowledged {
			g.AcknowledgedAt = &a.At
		}
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b SummaryGroup) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), b.LastSeen.Compare(a.LastSeen),
			cmp.Compare(a.ErrorClass, b.ErrorClass), cmp.Compare(a.Reason, b.Reason))
	})
	return out, nil
}

var (
	reasonUUID       = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	reasonQuoted     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	reasonIdentifier = regexp.MustCompile(`^["'][A-Za-z_][A-Za-z0-9_]{0,127}["']$`)
	reasonIndex      = regexp.MustCompile(`\[\d+\]`)
	reasonNumber     = regexp.MustCompile(`\b\d+(?:\.\d+)?\b`)
)

// ReasonPattern strips the values from a failure reason (ids, positions,
// numbers, quoted values), so that reasons that differ only in them group
// together. Quoted identifiers (tables, columns) stay: they are the cause.
func ReasonPattern(reason string) string {
	r := reasonUUID.ReplaceAllString(reason, "<id>")
	r = reasonQuoted.ReplaceAllStringFunc(r, func(q string) string {
		if reasonIdentifier.MatchString(q) {
			return q
		}
		return "<value>"
	})
	r = reasonIndex.ReplaceAllString(r, "[*]")
	return reasonNumber.ReplaceAllString(r, "<n>")
}

// Acknowledge records an operator's word on a cause: acknowledged (so
// that the summary counts only what failed since as new), or open again.
func (c *Console) Acknowledge(ctx context.Context, cause string, acknowledged bool, actor string) error {
	if err := c.store.AcknowledgeCause(ctx, warehouse.CauseAck{Cause: cause, Acknowledged: acknowledged, At: time.Now().UTC(), Actor: actor}); err != nil {
		return fmt.Errorf("record the acknowledgement: %w", err)
	}
	return nil
}

// PoisonDetail is everything the index holds about one payload.
type PoisonDetail struct {
	PoisonRecord
	// Metadata are the attributes of its latest poison message, Pub/Sub's
	// own CloudPubSubDeadLetter* included.
	Metadata map[string]string `json:"metadata"`
	History  []HistoryEvent    `json:"history"`
}

// HistoryEvent is one event of a payload's history.
type HistoryEvent struct {
	Kind       string    `json:"event"`
	At         time.Time `json:"at"`
	Generation int       `json:"generation"`
	ErrorClass string    `json:"error_class,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Attempts   int       `json:"attempts,omitempty"`
	Actor      string    `json:"actor,omitempty"`
}

// Show returns one payload's record, metadata and history; ErrNotInIndex
// when the index does not hold it.
func (c *Console) Show(ctx context.Context, payloadID string) (PoisonDetail, error) {
	entries, err := c.store.Entries(ctx, warehouse.EventFilter{PayloadIDs: []string{payloadID}, States: warehouse.EventKinds})
	if err != nil {
		return PoisonDetail{}, fmt.Errorf("read the poison index: %w", err)
	}
	if len(entries) == 0 {
		return PoisonDetail{}, fmt.Errorf("payload %s: %w", payloadID, ErrNotInIndex)
	}
	history, err := c.store.History(ctx, payloadID)
	if err != nil {
		return PoisonDetail{}, fmt.Errorf("read the poison index: %w", err)
	}
	d := PoisonDetail{PoisonRecord: recordOf(entries[0]), Metadata: entries[0].Poisoned.Attributes, History: []HistoryEvent{}}
	if d.Metadata == nil {
		d.Metadata = map[string]string{}
	}
	for _, e := range history {
		d.History = append(d.History, HistoryEvent{Kind: string(e.Kind), At: e.At, Generation: e.Generation,
			ErrorClass: e.ErrorClass, Reason: e.Reason, Attempts: e.Attempts, Actor: e.Actor})
	}
	return d, nil
}

// Selection says which indexed payloads an operator acts on: the ids
// given, or every entry the filter selects (All, or a filter narrower than
// the default). An empty selection is refused, so that a forgotten argument
// never means "everything".
type Selection struct {
	IDs    []string
	All    bool
	Filter warehouse.EventFilter
	// Cause narrows the filter's entries to one cause (CauseOf).
	Cause string
}

// ErrEmptySelection refuses a replay or purge that names nothing.
var ErrEmptySelection = errors.New("name payload ids, a filter, or --all")

func (s Selection) narrowed() bool {
	f := s.Filter
	return len(f.States) > 0 || f.Table != "" || f.Class != "" || !f.Since.IsZero() || f.Reason != "" ||
		f.Search != "" || s.Cause != ""
}

// Select resolves a selection into index entries. Ids the index does not
// hold are returned apart, in the order given.
func (c *Console) Select(ctx context.Context, s Selection) (entries []warehouse.Entry, unknown []string, err error) {
	switch {
	case len(s.IDs) > 0:
		entries, err = c.store.Entries(ctx, warehouse.EventFilter{PayloadIDs: s.IDs, States: warehouse.EventKinds})
		if err != nil {
			return nil, nil, fmt.Errorf("read the poison index: %w", err)
		}
		found := map[string]bool{}
		for _, e := range entries {
			found[e.Latest.PayloadID] = true
		}
		for _, id := range s.IDs {
			if !found[id] {
				unknown = append(unknown, id)
			}
		}
		return entries, unknown, nil
	case s.Cause != "":
		entries, err = c.causeEntries(ctx, s.Filter, s.Cause)
		return entries, nil, err
	case s.All || s.narrowed():
		entries, err = c.store.Entries(ctx, s.Filter)
		if err != nil {
			return nil, nil, fmt.Errorf("read the poison index: %w", err)
		}
		return entries, nil, nil
	default:
		return nil, nil, ErrEmptySelection
	}
}

// Purge marks the entries as dropped: they are never replayed, and leave
// the default list. It returns how many it marked.
func (c *Console) Purge(ctx context.Context, entries []warehouse.Entry, actor string) (int, error) {
	now := time.Now().UTC()
	var events []warehouse.Event
	for _, e := range entries {
		if e.State == warehouse.EventPurged {
			continue
		}
		g := e.Latest.Generation
		events = append(events, warehouse.Event{
			ID: warehouse.EventID(e.Latest.PayloadID, warehouse.EventPurged, g), PayloadID: e.Latest.PayloadID,
			Kind: warehouse.EventPurged, Generation: g, At: now, Actor: actor,
		})
	}
	for start := 0; start < len(events); start += 500 {
		if err := c.store.AppendEvents(ctx, events[start:min(start+500, len(events))]); err != nil {
			return start, fmt.Errorf("record the purge in the poison index: %w", err)
		}
	}
	return len(events), nil
}

// ExportLine is one line of `poison export`, and what `poison replay
// --from` reads back.
type ExportLine struct {
	PayloadID string            `json:"payload_id"`
	Metadata  map[string]string `json:"metadata"`
	Payload   json.RawMessage   `json:"payload"`
}

// Export writes the entries f selects as JSON lines and returns how many.
func (c *Console) Export(ctx context.Context, f warehouse.EventFilter, w io.Writer) (int, error) {
	entries, err := c.store.Entries(ctx, f)
	if err != nil {
		return 0, fmt.Errorf("read the poison index: %w", err)
	}
	enc := json.NewEncoder(w)
	for i, e := range entries {
		meta := e.Poisoned.Attributes
		if meta == nil {
			meta = map[string]string{}
		}
		if err := enc.Encode(ExportLine{PayloadID: e.Latest.PayloadID, Metadata: meta, Payload: rawJSON(e.Poisoned.Payload)}); err != nil {
			return i, err
		}
	}
	return len(entries), nil
}

// ReadExport reads `poison export` lines, as an operator may have edited
// them, and attaches what the index holds of each. A line that is not an
// export line is an error naming its number: nothing is replayed from a
// file that is not what the operator thinks it is.
func (c *Console) ReadExport(ctx context.Context, r io.Reader) ([]ReplayItem, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var items []ReplayItem
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var l ExportLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			return nil, fmt.Errorf("line %d: not an export line: %v", n, err)
		}
		if l.PayloadID == "" {
			return nil, fmt.Errorf("line %d: no payload_id", n)
		}
		items = append(items, ReplayItem{PayloadID: l.PayloadID, Metadata: l.Metadata, Payload: l.Payload})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.PayloadID
	}
	if len(ids) == 0 {
		return nil, nil
	}
	entries, err := c.store.Entries(ctx, warehouse.EventFilter{PayloadIDs: ids, States: warehouse.EventKinds})
	if err != nil {
		return nil, fmt.Errorf("read the poison index: %w", err)
	}
	byID := map[string]*warehouse.Entry{}
	for i := range entries {
		byID[entries[i].Latest.PayloadID] = &entries[i]
	}
	for i := range items {
		items[i].Entry = byID[items[i].PayloadID]
		if items[i].Metadata == nil && items[i].Entry != nil {
			items[i].Metadata = items[i].Entry.Poisoned.Attributes
		}
	}
	return items, nil
}
