package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline"
	"github.com/gatekeeper/gatekeeper/pipeline/operator"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// poisonSource is where the poison commands get their answers: the
// service's admin API, or (--direct) the warehouse and Pub/Sub themselves.
type poisonSource interface {
	list(ctx context.Context, q poisonQuery) ([]operator.PoisonRecord, error)
	summary(ctx context.Context, q poisonQuery) ([]operator.SummaryGroup, error)
	show(ctx context.Context, id string) (operator.PoisonDetail, error)
	export(ctx context.Context, q poisonQuery, w io.Writer) (int, error)
	// selectIDs resolves the filters (or --all) into the ids they select,
	// so that a confirmation states the count and the action takes exactly
	// the payloads confirmed.
	selectIDs(ctx context.Context, q poisonQuery) ([]string, error)
	replay(ctx context.Context, r replayRequest) (operator.ReplayReport, error)
	purge(ctx context.Context, ids []string) (int, error)
	// target says where a replay publishes, for the messages.
	target() string
	close()
}

// poisonQuery is the filters, parsed (for --direct) and as given (for the
// admin API, which parses them the same way: operator.ParseFilter).
type poisonQuery struct {
	filter warehouse.EventFilter
	values url.Values
}

// replayRequest is a replay of ids from the index, or of edited lines.
type replayRequest struct {
	ids      []string
	lines    []operator.ExportLine
	rate     float64
	dryRun   bool
	progress func(done, total int)
}

// serviceSource asks the service's admin API.
type serviceSource struct{ c *adminClient }

func (s serviceSource) close()         {}
func (s serviceSource) target() string { return "the service on " + s.c.host }

func (s serviceSource) list(ctx context.Context, q poisonQuery) ([]operator.PoisonRecord, error) {
	values := url.Values{}
	for k, v := range q.values {
		values[k] = v
	}
	values.Set("limit", strconv.Itoa(q.filter.Limit))
	var out []operator.PoisonRecord
	// A service that pages its answer (next) is followed to the end, or
	// to --limit.
	for {
		var page struct {
			Items []operator.PoisonRecord `json:"items"`
			Next  string                  `json:"next"`
		}
		if err := s.c.get(ctx, operator.AdminPoisonPath, values, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if page.Next == "" || page.Next == values.Get("cursor") || len(page.Items) == 0 ||
			(q.filter.Limit > 0 && len(out) >= q.filter.Limit) {
			break
		}
		values.Set("cursor", page.Next)
	}
	if q.filter.Limit > 0 && len(out) > q.filter.Limit {
		out = out[:q.filter.Limit]
	}
	return out, nil
}

func (s serviceSource) summary(ctx context.Context, q poisonQuery) ([]operator.SummaryGroup, error) {
	var out struct {
		Groups []operator.SummaryGroup `json:"groups"`
	}
	err := s.c.get(ctx, operator.AdminPoisonPath+"/summary", q.values, &out)
	return out.Groups, err
}

func (s serviceSource) show(ctx context.Context, id string) (operator.PoisonDetail, error) {
	var d operator.PoisonDetail
	err := s.c.get(ctx, operator.AdminPoisonPath+"/"+url.PathEscape(id), nil, &d)
	return d, err
}

func (s serviceSource) export(ctx context.Context, q poisonQuery, w io.Writer) (int, error) {
	_, raw, err := s.c.call(ctx, http.MethodGet, operator.AdminPoisonPath+"/export", q.values, nil, 5*time.Minute, http.StatusOK)
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(raw); err != nil {
		return 0, err
	}
	return bytes.Count(raw, []byte("\n")), nil
}

func (s serviceSource) selectIDs(ctx context.Context, q poisonQuery) ([]string, error) {
	q.filter.Limit = 0
	records, err := s.list(ctx, q)
	ids := make([]string, len(records))
	for i, r := range records {
		ids[i] = r.PayloadID
	}
	return ids, err
}

// replay sends the payloads in batches of about five seconds' worth at the
// rate, so that the operator sees progress and no one request outlives the
// service's bound on a replay.
func (s serviceSource) replay(ctx context.Context, r replayRequest) (operator.ReplayReport, error) {
	rep := operator.ReplayReport{Refused: []operator.ReplayRefusal{}, Skipped: []operator.ReplaySkip{}}
	total := len(r.ids) + len(r.lines)
	batch := max(50, int(r.rate*5))
	for done := 0; done < total; {
		n := min(batch, total-done)
		body := map[string]any{"rate": r.rate, "dry_run": r.dryRun}
		if len(r.ids) > 0 {
			body["ids"] = r.ids[done : done+n]
		} else {
			body["items"] = r.lines[done : done+n]
		}
		wait := time.Duration(float64(n)/r.rate*float64(time.Second)) + time.Minute
		code, raw, err := s.c.call(ctx, http.MethodPost, operator.AdminPoisonPath+"/replay", nil, body, wait,
			http.StatusOK, http.StatusUnprocessableEntity)
		var part struct {
			operator.ReplayReport
			Report *operator.ReplayReport `json:"report"` // beside an error (503)
		}
		if raw != nil && (err == nil || code == http.StatusServiceUnavailable) {
			_ = json.Unmarshal(raw, &part)
			if part.Report != nil {
				part.ReplayReport = *part.Report
			}
			rep.Replayed += part.Replayed
			rep.Refused = append(rep.Refused, part.Refused...)
			rep.Skipped = append(rep.Skipped, part.Skipped...)
		}
		if err != nil {
			return rep, err
		}
		done += n
		if total > batch && r.progress != nil {
			r.progress(done, total)
		}
	}
	return rep, nil
}

func (s serviceSource) purge(ctx context.Context, ids []string) (int, error) {
	purged := 0
	for done := 0; done < len(ids); {
		n := min(1000, len(ids)-done)
		_, raw, err := s.c.call(ctx, http.MethodPost, operator.AdminPoisonPath+"/purge", nil,
			map[string]any{"ids": ids[done : done+n]}, 2*time.Minute, http.StatusOK)
		var out struct {
			Purged int `json:"purged"`
		}
		if raw != nil {
			_ = json.Unmarshal(raw, &out)
		}
		purged += out.Purged
		if err != nil {
			return purged, err
		}
		done += n
	}
	return purged, nil
}

// directSource reads the warehouse and publishes to Pub/Sub itself.
type directSource struct {
	c   *operator.Console
	cfg pipeline.Config
}

// openDirectSource opens the console over the warehouse cfg names, which
// must exist (openDirect).
func openDirectSource(ctx context.Context, cfg pipeline.Config, logger *slog.Logger) (*directSource, error) {
	cfg, err := openDirect(cfg)
	if err != nil {
		return nil, err
	}
	c, err := pipeline.NewConsole(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	return &directSource{c: c, cfg: cfg}, nil
}

func (d *directSource) close()         { _ = d.c.Close() }
func (d *directSource) target() string { return d.cfg.TopicID }

func (d *directSource) list(ctx context.Context, q poisonQuery) ([]operator.PoisonRecord, error) {
	return d.c.List(ctx, q.filter)
}

func (d *directSource) summary(ctx context.Context, q poisonQuery) ([]operator.SummaryGroup, error) {
	return d.c.Summary(ctx, q.filter)
}

func (d *directSource) show(ctx context.Context, id string) (operator.PoisonDetail, error) {
	return d.c.Show(ctx, id)
}

func (d *directSource) export(ctx context.Context, q poisonQuery, w io.Writer) (int, error) {
	return d.c.Export(ctx, q.filter, w)
}

func (d *directSource) selectIDs(ctx context.Context, q poisonQuery) ([]string, error) {
	entries, _, err := d.c.Select(ctx, operator.Selection{All: true, Filter: q.filter})
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.Latest.PayloadID
	}
	return ids, err
}

// entries are the index's entries of ids; an id it does not hold is an
// error naming it.
func (d *directSource) entries(ctx context.Context, ids []string) ([]warehouse.Entry, error) {
	entries, unknown, err := d.c.Select(ctx, operator.Selection{IDs: ids})
	if err == nil && len(unknown) > 0 {
		err = fmt.Errorf("%s: %w", strings.Join(unknown, ", "), operator.ErrNotInIndex)
	}
	return entries, err
}

func (d *directSource) replay(ctx context.Context, r replayRequest) (operator.ReplayReport, error) {
	var items []operator.ReplayItem
	if len(r.lines) > 0 {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		for _, l := range r.lines {
			_ = enc.Encode(l)
		}
		var err error
		if items, err = d.c.ReadExport(ctx, &b); err != nil {
			return operator.ReplayReport{}, err
		}
	} else {
		entries, err := d.entries(ctx, r.ids)
		if err != nil {
			return operator.ReplayReport{}, err
		}
		items = operator.ItemsOf(entries)
	}
	if !r.dryRun {
		if err := d.pubSubAnswers(ctx); err != nil {
			return operator.ReplayReport{}, err
		}
	}
	return d.c.Replay(ctx, items, operator.ReplayOptions{Rate: r.rate, DryRun: r.dryRun, Actor: "cli", Progress: r.progress})
}

// pubSubAnswers fails at once when nothing listens where a replay would
// publish (the embedded Pub/Sub of a service that is not running, an
// emulator not started), instead of when the publish times out.
func (d *directSource) pubSubAnswers(ctx context.Context) error {
	var addr, from string
	switch d.cfg.ResolvedPubSubMode() {
	case pipeline.PubSubEmbedded:
		addr, from = d.cfg.EmbeddedPubSubAddr, "PUBSUB_EMBEDDED_ADDR"
	case pipeline.PubSubEmulator:
		addr, from = d.cfg.EmulatorHost, "PUBSUB_EMULATOR_HOST"
	default:
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s=%s: %w", from, addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	conn, err := (&net.Dialer{Timeout: dialTimeout}).DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err
		}
		return fmt.Errorf("no Pub/Sub on %s (%s): %v; is the service (or the emulator) running? "+
			"set %s, or replay through the service without --direct", net.JoinHostPort(host, port), from, err, from)
	}
	return conn.Close()
}

func (d *directSource) purge(ctx context.Context, ids []string) (int, error) {
	entries, err := d.entries(ctx, ids)
	if err != nil {
		return 0, err
	}
	return d.c.Purge(ctx, entries, "cli")
}
