package bigquery

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// The events log is appended to with streaming inserts (tabledata.insertAll),
// never DML: BigQuery allows a few DML statements per table every few
// seconds, and an outage that poisons many payloads must not spend them.
// Streaming deduplicates by insert ID (the event ID) on a best-effort basis
// only, so every query here keeps one row per event_id itself.

// eventField is one column of the events table. Event.At is event_at: AT is
// a keyword of GoogleSQL.
type eventField struct {
	name string
	// sqlType is the column's type as a typed NULL needs it.
	sqlType string
	field   *bigquery.FieldSchema
}

var eventFields = func() []eventField {
	f := func(name string, t bigquery.FieldType, required bool) eventField {
		sqlType := string(t)
		switch t {
		case bigquery.IntegerFieldType:
			sqlType = "INT64"
		}
		return eventField{name: name, sqlType: sqlType, field: &bigquery.FieldSchema{Name: name, Type: t, Required: required}}
	}
	tables := f("tables", bigquery.StringFieldType, false)
	tables.field.Repeated = true
	tables.sqlType = "ARRAY<STRING>"
	return []eventField{
		f("event_id", bigquery.StringFieldType, true),
		f("payload_id", bigquery.StringFieldType, true),
		f("kind", bigquery.StringFieldType, true),
		f("generation", bigquery.IntegerFieldType, true),
		f("event_at", bigquery.TimestampFieldType, true),
		f("error_class", bigquery.StringFieldType, false),
		f("reason", bigquery.StringFieldType, false),
		tables,
		f("attempts", bigquery.IntegerFieldType, false),
		f("first_failure_at", bigquery.TimestampFieldType, false),
		f("last_failure_at", bigquery.TimestampFieldType, false),
		f("received_at", bigquery.TimestampFieldType, false),
		f("correlation_id", bigquery.StringFieldType, false),
		// Attributes are a JSON object, as text.
		f("attributes", bigquery.StringFieldType, false),
		// The payload is base64 text, not BYTES: the emulator hands a BYTES
		// value streamed in back still base64-encoded. FROM_BASE64 reads it.
		f("payload_base64", bigquery.StringFieldType, false),
		f("actor", bigquery.StringFieldType, false),
		// kind_rank orders kinds within a generation (Event.Before).
		f("kind_rank", bigquery.IntegerFieldType, true),
	}
}()

// eventColumns are the columns readEvent reads, in its order: every field
// but kind_rank.
var eventColumns = func() []string {
	var names []string
	for _, f := range eventFields {
		if f.name != "kind_rank" {
			names = append(names, f.name)
		}
	}
	return names
}()

func eventColumnList(alias string) string {
	cols := make([]string, len(eventColumns))
	for i, c := range eventColumns {
		cols[i] = alias + "." + c
	}
	return strings.Join(cols, ", ")
}

// ensureEvents creates the events table when missing, clustered by
// payload_id, and checks its columns.
func ensureEvents(ctx context.Context, b backend) error {
	info, err := b.table(ctx, warehouse.EventsTable)
	if err != nil {
		return fmt.Errorf("read events table: %w", err)
	}
	if info == nil {
		schema := make(bigquery.Schema, len(eventFields))
		for i, f := range eventFields {
			schema[i] = f.field
		}
		info, err = b.createTable(ctx, warehouse.EventsTable, schema, []string{"payload_id"})
		if isDuplicate(err) {
			info, err = b.table(ctx, warehouse.EventsTable)
		}
		if err == nil && info == nil {
			err = errors.New("missing after creation")
		}
		if err != nil {
			return fmt.Errorf("create events table: %w", err)
		}
	}
	var missing []string
	for _, f := range eventFields {
		if _, ok := info.Column(f.name); !ok {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("events table %s exists without the columns %s", warehouse.EventsTable, strings.Join(missing, ", "))
	}
	return nil
}

// eventSaver is one event as a streaming insert row; its insert ID is the
// event ID.
type eventSaver struct {
	e warehouse.Event
}

func timestampValue(t time.Time) bigquery.Value {
	if t.IsZero() {
		return nil
	}
	return t
}

func (s eventSaver) Save() (map[string]bigquery.Value, string, error) {
	e := s.e
	attrs := "{}"
	if len(e.Attributes) > 0 {
		b, err := json.Marshal(e.Attributes)
		if err != nil {
			return nil, "", err
		}
		attrs = string(b)
	}
	tables := make([]bigquery.Value, len(e.Tables))
	for i, t := range e.Tables {
		tables[i] = t
	}
	row := map[string]bigquery.Value{
		"event_id":         e.ID,
		"payload_id":       e.PayloadID,
		"kind":             string(e.Kind),
		"kind_rank":        int64(e.Kind.Rank()),
		"generation":       int64(e.Generation),
		"event_at":         e.At,
		"error_class":      e.ErrorClass,
		"reason":           e.Reason,
		"tables":           tables,
		"attempts":         int64(e.Attempts),
		"first_failure_at": timestampValue(e.FirstFailureAt),
		"last_failure_at":  timestampValue(e.LastFailureAt),
		"received_at":      timestampValue(e.ReceivedAt),
		"correlation_id":   e.CorrelationID,
		"attributes":       attrs,
		"payload_base64":   base64.StdEncoding.EncodeToString(e.Payload),
		"actor":            e.Actor,
	}
	return row, e.ID, nil
}

// AppendEvents streams events into the log in one insertAll request per
// call, each with its ID as insert ID.
func (w *Warehouse) AppendEvents(ctx context.Context, events []warehouse.Event) error {
	if len(events) == 0 {
		return nil
	}
	now := time.Now()
	rows := make([]bigquery.ValueSaver, len(events))
	for i, e := range events {
		if e.At.IsZero() {
			e.At = now
		}
		if err := e.Validate(); err != nil {
			return messages.Permanent(fmt.Errorf("append events: %w", err))
		}
		rows[i] = eventSaver{e}
	}
	if !w.enter() {
		return messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	if err := w.backend.insertRows(ctx, warehouse.EventsTable, rows); err != nil {
		// The insert IDs make a retry safe, whatever BigQuery said.
		return groupError("append events", err)
	}
	return nil
}

// dedupedEvents is the events table with one row per event_id (streaming
// inserts may have stored one twice), as a subquery; where filters the
// table first.
func (w *Warehouse) dedupedEvents(where string) string {
	cols := strings.Join(eventColumns, ", ")
	return "(SELECT " + cols + ", kind_rank FROM (SELECT " + cols + ", kind_rank, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_at) AS copy FROM " +
		w.qualifier + quoteIdent(warehouse.EventsTable) + " WHERE " + where + ") WHERE copy = 1)"
}

// params names query parameters p0, p1, … for values.
type params struct {
	list []bigquery.QueryParameter
}

func (p *params) add(v any) string {
	name := "p" + strconv.Itoa(len(p.list))
	p.list = append(p.list, bigquery.QueryParameter{Name: name, Value: v})
	return name
}

func (p *params) array(values []string) string {
	names := make([]string, len(values))
	for i, v := range values {
		names[i] = p.add(v)
	}
	var b strings.Builder
	writeStringArray(&b, names)
	return b.String()
}

// entriesSQL builds the query behind Entries; with count, the one behind
// CountSelected, which ignores After and Limit.
func (w *Warehouse) entriesSQL(f warehouse.EventFilter, shape querying) (string, []bigquery.QueryParameter) {
	var p params
	where := "TRUE"
	if len(f.PayloadIDs) > 0 {
		where = "payload_id IN UNNEST(" + p.array(f.PayloadIDs) + ")"
	}
	states := f.States
	if len(states) == 0 {
		states = []warehouse.EventKind{warehouse.EventPoisoned}
	}
	kinds := make([]string, len(states))
	for i, s := range states {
		kinds[i] = string(s)
	}
	columns := eventColumnList
	if f.Brief {
		columns = func(alias string) string {
			cols := make([]string, len(eventColumns))
			for i, c := range eventColumns {
				cols[i] = alias + "." + c
				if c == "attributes" || c == "payload_base64" {
					cols[i] = "CAST(NULL AS STRING)"
				}
			}
			return strings.Join(cols, ", ")
		}
	}
	selected := columns("l") + ", l.replays, l.first_at, " + columns("p")
	switch shape {
	case queryCount:
		selected = "COUNT(*)"
	case queryFailures:
		selected = "p.error_class, TO_JSON_STRING(p.tables) AS tables_json, p.reason, COALESCE(p.last_failure_at, l.event_at) AS failed_at, COUNT(*), MIN(l.payload_id)"
	}
	var b strings.Builder
	b.WriteString("WITH ev AS " + w.dedupedEvents(where) + `,
ranked AS (
	SELECT ` + strings.Join(eventColumns, ", ") + `,
		ROW_NUMBER() OVER (PARTITION BY payload_id ORDER BY generation DESC, kind_rank DESC, event_at DESC) AS pos,
		SUM(IF(kind_rank = 0, 1, 0)) OVER (PARTITION BY payload_id) AS replays,
		MIN(event_at) OVER (PARTITION BY payload_id) AS first_at
	FROM ev
),
poisoned AS (
	SELECT ` + strings.Join(eventColumns, ", ") + ` FROM (
		SELECT ` + strings.Join(eventColumns, ", ") + `,
			ROW_NUMBER() OVER (PARTITION BY payload_id ORDER BY generation DESC, event_at DESC) AS pos
		FROM ev WHERE kind_rank = 1
	) WHERE pos = 1
)
SELECT ` + selected + `
FROM ranked AS l LEFT JOIN poisoned AS p ON p.payload_id = l.payload_id
WHERE l.pos = 1 AND l.kind IN UNNEST(` + p.array(kinds) + ")")
	if !f.Since.IsZero() {
		b.WriteString(" AND l.event_at >= @" + p.add(f.Since))
	}
	if f.Class != "" {
		b.WriteString(" AND p.error_class = @" + p.add(f.Class))
	}
	if f.Reason != "" {
		b.WriteString(" AND STRPOS(LOWER(p.reason), LOWER(@" + p.add(f.Reason) + ")) > 0")
	}
	if f.Table != "" {
		b.WriteString(" AND @" + p.add(f.Table) + " IN UNNEST(p.tables)")
	}
	if f.Backend != "" {
		// attributes is a STRING column holding the JSON object.
		b.WriteString(" AND JSON_VALUE(p.attributes, '$.backend') = @" + p.add(f.Backend))
	}
	if f.Keyed {
		b.WriteString(" AND COALESCE(JSON_VALUE(p.attributes, '$.ordering_key'), '') != ''")
	}
	if f.Search != "" {
		b.WriteString(" AND (STARTS_WITH(l.payload_id, @" + p.add(f.Search) + ") OR STARTS_WITH(IFNULL(p.correlation_id, ''), @" + p.add(f.Search) + "))")
	}
	switch shape {
	case queryCount:
		return b.String(), p.list
	case queryFailures:
		return b.String() + " GROUP BY 1, 2, 3, 4", p.list
	}
	if !f.After.IsZero() {
		b.WriteString(" AND (l.first_at < @" + p.add(f.After.FirstAt) + " OR (l.first_at = @" + p.add(f.After.FirstAt) +
			" AND l.payload_id > @" + p.add(f.After.PayloadID) + "))")
	}
	b.WriteString("\nORDER BY l.first_at DESC, l.payload_id")
	if f.Limit > 0 {
		b.WriteString(" LIMIT " + strconv.Itoa(f.Limit))
	}
	return b.String(), p.list
}

// Entries returns the entries f selects, in one query.
func (w *Warehouse) Entries(ctx context.Context, f warehouse.EventFilter) ([]warehouse.Entry, error) {
	if !w.enter() {
		return nil, messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	query, params := w.entriesSQL(f, queryEntries)
	rows, err := w.backend.query(ctx, query, params)
	if err != nil {
		return nil, fmt.Errorf("read event entries: %w", err)
	}
	n := len(eventColumns)
	entries := make([]warehouse.Entry, 0, len(rows))
	for _, row := range rows {
		if len(row) != 2*n+2 {
			return nil, fmt.Errorf("read event entries: a row of %d columns, want %d", len(row), 2*n+2)
		}
		var e warehouse.Entry
		if e.Latest, err = readEvent(row[:n]); err != nil {
			return nil, fmt.Errorf("read event entries: %w", err)
		}
		e.State = e.Latest.Kind
		replays, err := intValue(row[n])
		if err != nil {
			return nil, fmt.Errorf("read event entries: replays: %w", err)
		}
		e.Replays = int(replays)
		e.FirstAt = timeValue(row[n+1])
		if row[n+2] != nil {
			if e.Poisoned, err = readEvent(row[n+2:]); err != nil {
				return nil, fmt.Errorf("read event entries: %w", err)
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// CountSelected counts the entries f selects, in one query job.
func (w *Warehouse) CountSelected(ctx context.Context, f warehouse.EventFilter) (int, error) {
	if !w.enter() {
		return 0, messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	query, params := w.entriesSQL(f, queryCount)
	rows, err := w.backend.query(ctx, query, params)
	if err != nil {
		return 0, fmt.Errorf("count event entries: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return 0, fmt.Errorf("count event entries: %d rows, want one of one column", len(rows))
	}
	n, err := intValue(rows[0][0])
	return int(n), err
}

// querying is what entriesSQL's query returns.
type querying int

const (
	queryEntries querying = iota
	queryCount
	queryFailures
)

// FailureGroups groups the entries f selects, in one query job.
func (w *Warehouse) FailureGroups(ctx context.Context, f warehouse.EventFilter) ([]warehouse.FailureGroup, error) {
	if !w.enter() {
		return nil, messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	query, params := w.entriesSQL(f, queryFailures)
	rows, err := w.backend.query(ctx, query, params)
	if err != nil {
		return nil, fmt.Errorf("read failures: %w", err)
	}
	out := make([]warehouse.FailureGroup, 0, len(rows))
	for _, row := range rows {
		if len(row) != 6 {
			return nil, fmt.Errorf("read failures: a row of %d columns, want 6", len(row))
		}
		var tables []string
		if s := stringValue(row[1]); s != "" && s != "null" {
			if err := json.Unmarshal([]byte(s), &tables); err != nil {
				return nil, fmt.Errorf("read failures: tables: %w", err)
			}
		}
		if len(tables) == 0 {
			tables = nil
		}
		n, err := intValue(row[4])
		if err != nil {
			return nil, fmt.Errorf("read failures: %w", err)
		}
		out = append(out, warehouse.FailureGroup{ErrorClass: stringValue(row[0]), Tables: tables, Reason: stringValue(row[2]), At: timeValue(row[3]), Count: int(n), Example: stringValue(row[5])})
	}
	return out, nil
}

// History returns the payload's events, oldest first.
func (w *Warehouse) History(ctx context.Context, payloadID string) ([]warehouse.Event, error) {
	if !w.enter() {
		return nil, messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	query := "SELECT " + strings.Join(eventColumns, ", ") + " FROM " + w.dedupedEvents("payload_id = @id") +
		" ORDER BY generation, kind_rank, event_at"
	rows, err := w.backend.query(ctx, query, []bigquery.QueryParameter{{Name: "id", Value: payloadID}})
	if err != nil {
		return nil, fmt.Errorf("read history of %q: %w", payloadID, err)
	}
	events := make([]warehouse.Event, 0, len(rows))
	for _, row := range rows {
		e, err := readEvent(row)
		if err != nil {
			return nil, fmt.Errorf("read history of %q: %w", payloadID, err)
		}
		events = append(events, e)
	}
	return events, nil
}

// stateSQL reads the ledger row and the events of one payload in one query
// job: the first column tells the ledger's row (TRUE) from events.
func (w *Warehouse) stateSQL() string {
	rowsAffected := "CAST(NULL AS INT64)"
	if w.ledgerRowsAffected {
		rowsAffected = "rows_affected"
	}
	nulls := make([]string, 0, len(eventColumns))
	for _, f := range eventFields {
		switch {
		case f.name == "kind_rank":
		case f.field.Repeated:
			nulls = append(nulls, "ARRAY<STRING>[]")
		default:
			nulls = append(nulls, "CAST(NULL AS "+f.sqlType+")")
		}
	}
	return "SELECT TRUE, applied_at, " + rowsAffected + ", " + strings.Join(nulls, ", ") +
		" FROM " + w.qualifier + quoteIdent(warehouse.LedgerTable) + " WHERE payload_id = @id" +
		" UNION ALL SELECT FALSE, CAST(NULL AS TIMESTAMP), CAST(NULL AS INT64), " + strings.Join(eventColumns, ", ") +
		" FROM " + w.dedupedEvents("payload_id = @id")
}

// State reads the payload's ledger row and events in one query job.
func (w *Warehouse) State(ctx context.Context, payloadID string) (warehouse.PayloadState, error) {
	state := warehouse.PayloadState{RowsAffected: -1}
	if !w.enter() {
		return state, messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	rows, err := w.backend.query(ctx, w.stateSQL(), []bigquery.QueryParameter{{Name: "id", Value: payloadID}})
	if err != nil {
		return state, fmt.Errorf("read state of %q: %w", payloadID, err)
	}
	var events []warehouse.Event
	for _, row := range rows {
		if len(row) != 3+len(eventColumns) {
			return state, fmt.Errorf("read state of %q: a row of %d columns, want %d", payloadID, len(row), 3+len(eventColumns))
		}
		if ledger, _ := row[0].(bool); ledger {
			state.Applied = true
			if t, ok := row[1].(time.Time); ok {
				state.AppliedAt = t.UTC()
			}
			if row[2] != nil {
				if state.RowsAffected, err = intValue(row[2]); err != nil {
					return state, fmt.Errorf("read state of %q: rows_affected: %w", payloadID, err)
				}
			}
			continue
		}
		e, err := readEvent(row[3:])
		if err != nil {
			return state, fmt.Errorf("read state of %q: %w", payloadID, err)
		}
		events = append(events, e)
	}
	state.Entry = warehouse.EntryOf(events)
	return state, nil
}

func intValue(v bigquery.Value) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("an integer is a %T", v)
}

func stringValue(v bigquery.Value) string {
	s, _ := v.(string)
	return s
}

func timeValue(v bigquery.Value) time.Time {
	t, ok := v.(time.Time)
	if !ok {
		return time.Time{}
	}
	return t.UTC()
}

// readEvent reads the columns eventColumns names.
func readEvent(row []bigquery.Value) (warehouse.Event, error) {
	if len(row) < len(eventColumns) {
		return warehouse.Event{}, fmt.Errorf("an event of %d columns, want %d", len(row), len(eventColumns))
	}
	col := func(name string) bigquery.Value {
		for i, c := range eventColumns {
			if c == name {
				return row[i]
			}
		}
		panic("no event column " + name)
	}
	e := warehouse.Event{
		ID:             stringValue(col("event_id")),
		PayloadID:      stringValue(col("payload_id")),
		Kind:           warehouse.EventKind(stringValue(col("kind"))),
		At:             timeValue(col("event_at")),
		ErrorClass:     stringValue(col("error_class")),
		Reason:         stringValue(col("reason")),
		FirstFailureAt: timeValue(col("first_failure_at")),
		LastFailureAt:  timeValue(col("last_failure_at")),
		ReceivedAt:     timeValue(col("received_at")),
		CorrelationID:  stringValue(col("correlation_id")),
		Actor:          stringValue(col("actor")),
	}
	generation, err := intValue(col("generation"))
	if err != nil {
		return e, fmt.Errorf("event %q: generation: %w", e.ID, err)
	}
	e.Generation = int(generation)
	attempts, err := intValue(col("attempts"))
	if err != nil {
		return e, fmt.Errorf("event %q: attempts: %w", e.ID, err)
	}
	e.Attempts = int(attempts)
	if tables, ok := col("tables").([]bigquery.Value); ok {
		for _, t := range tables {
			e.Tables = append(e.Tables, stringValue(t))
		}
	}
	if attrs := stringValue(col("attributes")); attrs != "" && attrs != "{}" {
		if err := json.Unmarshal([]byte(attrs), &e.Attributes); err != nil {
			return e, fmt.Errorf("event %q: attributes: %w", e.ID, err)
		}
	}
	if payload := stringValue(col("payload_base64")); payload != "" {
		if e.Payload, err = base64.StdEncoding.DecodeString(payload); err != nil {
			return e, fmt.Errorf("event %q: payload: %w", e.ID, err)
		}
	}
	return e, nil
}

// CountEntries counts payloads by state, in one query job.
func (w *Warehouse) CountEntries(ctx context.Context) (map[warehouse.EventKind]warehouse.StateCount, error) {
	if !w.enter() {
		return nil, messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	query := "SELECT kind_rank, COUNT(*), MIN(event_at) FROM (SELECT kind_rank, event_at, ROW_NUMBER() OVER (PARTITION BY payload_id ORDER BY generation DESC, kind_rank DESC, event_at DESC) AS pos FROM " +
		w.dedupedEvents("TRUE") + ") WHERE pos = 1 GROUP BY kind_rank"
	rows, err := w.backend.query(ctx, query, nil)
	if err != nil {
		return nil, fmt.Errorf("count event entries: %w", err)
	}
	counts := map[warehouse.EventKind]warehouse.StateCount{}
	for _, k := range warehouse.EventKinds {
		counts[k] = warehouse.StateCount{}
	}
	for _, row := range rows {
		if len(row) != 3 {
			return nil, fmt.Errorf("count event entries: a row of %d columns, want 3", len(row))
		}
		rank, err := intValue(row[0])
		if err != nil {
			return nil, fmt.Errorf("count event entries: %w", err)
		}
		n, err := intValue(row[1])
		if err != nil {
			return nil, fmt.Errorf("count event entries: %w", err)
		}
		for _, k := range warehouse.EventKinds {
			if int64(k.Rank()) == rank {
				counts[k] = warehouse.StateCount{Entries: int(n), Oldest: timeValue(row[2])}
			}
		}
	}
	return counts, nil
}

// The acks table is created on the first ack: most deployments never
// acknowledge a cause, and a missing table reads as no acks.
var ackSchema = bigquery.Schema{
	{Name: "cause", Type: bigquery.StringFieldType, Required: true},
	{Name: "acknowledged", Type: bigquery.BooleanFieldType, Required: true},
	{Name: "ack_at", Type: bigquery.TimestampFieldType, Required: true},
	{Name: "actor", Type: bigquery.StringFieldType},
}

type ackSaver struct{ a warehouse.CauseAck }

func (s ackSaver) Save() (map[string]bigquery.Value, string, error) {
	a := s.a
	return map[string]bigquery.Value{"cause": a.Cause, "acknowledged": a.Acknowledged, "ack_at": a.At, "actor": a.Actor},
		a.Cause + "/" + strconv.FormatInt(a.At.UnixNano(), 10), nil
}

// AcknowledgeCause streams ack into the acks table, creating it first
// when missing.
func (w *Warehouse) AcknowledgeCause(ctx context.Context, ack warehouse.CauseAck) error {
	if ack.Cause == "" {
		return messages.Permanent(errors.New("acknowledge: no cause"))
	}
	if ack.At.IsZero() {
		ack.At = time.Now()
	}
	if !w.enter() {
		return messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	info, err := w.backend.table(ctx, warehouse.AcksTable)
	if err != nil {
		return groupError("acknowledge", err)
	}
	if info == nil {
		if _, err := w.backend.createTable(ctx, warehouse.AcksTable, ackSchema, nil); err != nil && !isDuplicate(err) {
			return groupError("acknowledge: create acks table", err)
		}
	}
	if err := w.backend.insertRows(ctx, warehouse.AcksTable, []bigquery.ValueSaver{ackSaver{ack}}); err != nil {
		return groupError("acknowledge", err)
	}
	return nil
}

// CauseAcks reads each cause's latest ack in one query job; none without
// the acks table.
func (w *Warehouse) CauseAcks(ctx context.Context) (map[string]warehouse.CauseAck, error) {
	if !w.enter() {
		return nil, messages.Transient(ErrClosed)
	}
	defer w.closeMu.RUnlock()
	acks := map[string]warehouse.CauseAck{}
	info, err := w.backend.table(ctx, warehouse.AcksTable)
	if err != nil {
		return nil, fmt.Errorf("read acks: %w", err)
	}
	if info == nil {
		return acks, nil
	}
	query := "SELECT cause, acknowledged, ack_at, actor FROM (SELECT cause, acknowledged, ack_at, actor, " +
		"ROW_NUMBER() OVER (PARTITION BY cause ORDER BY ack_at DESC) AS pos FROM " +
		w.qualifier + quoteIdent(warehouse.AcksTable) + ") WHERE pos = 1"
	rows, err := w.backend.query(ctx, query, nil)
	if err != nil {
		return nil, fmt.Errorf("read acks: %w", err)
	}
	for _, row := range rows {
		if len(row) != 4 {
			return nil, fmt.Errorf("read acks: a row of %d columns, want 4", len(row))
		}
		ok, _ := row[1].(bool)
		a := warehouse.CauseAck{Cause: stringValue(row[0]), Acknowledged: ok, At: timeValue(row[2]), Actor: stringValue(row[3])}
		acks[a.Cause] = a
	}
	return acks, nil
}
