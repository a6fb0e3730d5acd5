package operator

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// The operators' console: a JSON admin API mirroring `gatekeeper poison`,
// and a page over it. It listens on ADMIN_ADDR, apart from the ingestion
// port. With BACKENDS_FILE, the API needs an admin key (AdminConfig.Door);
// the page itself is static and asks for the key.
const (
	AdminPoisonPath = "/api/poison"
	AdminPagePath   = "/ui/poison"
	// PprofPath serves net/http/pprof's profiles on the admin listener.
	PprofPath = "/debug/pprof/"
)

//go:embed console.html
var consolePage []byte

// Filter values, as the CLI's flags and the admin API's query parameters
// name them.
var (
	filterStates  = []string{string(warehouse.EventPoisoned), string(warehouse.EventReplayed), string(warehouse.EventPurged)}
	filterClasses = []string{string(messages.ClassInvalid), string(messages.ClassTransient), string(messages.ClassPermanent), string(messages.ClassUnknown)}
)

// ParseFilter reads the filters operators give by name (table, class,
// since, reason, backend, state, search, cursor, limit), from flags or a
// query string, and reports every bad value at once.
func ParseFilter(get func(name string) string, now time.Time) (warehouse.EventFilter, error) {
	var f warehouse.EventFilter
	var errs []error
	f.Table = strings.TrimSpace(get("table"))
	f.Search = strings.TrimSpace(get("search"))
	if c := get("cursor"); c != "" {
		k, err := ParseCursor(c)
		if err != nil {
			errs = append(errs, err)
		}
		f.After = k
	}
	f.Reason = get("reason")
	f.Backend = strings.TrimSpace(get("backend"))
	if c := get("class"); c != "" {
		if !slices.Contains(filterClasses, c) {
			errs = append(errs, fmt.Errorf("class %q: want one of %s", c, strings.Join(filterClasses, ", ")))
		}
		f.Class = c
	}
	if s := get("since"); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			f.Since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339, s); err == nil {
			f.Since = t
		} else {
			errs = append(errs, fmt.Errorf("since %q: want a duration such as 1h or an RFC 3339 time", s))
		}
	}
	if s := get("state"); s != "" {
		for _, st := range strings.Split(s, ",") {
			st = strings.TrimSpace(st)
			if !slices.Contains(filterStates, st) {
				errs = append(errs, fmt.Errorf("state %q: want one of %s", st, strings.Join(filterStates, ", ")))
				continue
			}
			f.States = append(f.States, warehouse.EventKind(st))
		}
	}
	if l := get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("limit %q: want a number, 0 for all", l))
		}
		f.Limit = n
	}
	return f, errors.Join(errs...)
}

// AdminConfig is what the admin API serves, and who may use it.
type AdminConfig struct {
	// Console is the console the API drives, asked for on each request so
	// that a process may open its warehouse on first use. Required.
	Console func(ctx context.Context) (*Console, error)
	// Status serves GET /api/activities/{id} on the admin listener too.
	// Required.
	Status http.Handler
	// Door guards the API and the profiles: the admin key check. Nil lets
	// everyone in (no BACKENDS_FILE).
	Door func(http.Handler) http.Handler
	// Instrument wraps each API route for the HTTP metrics, under its
	// pattern. Nil instruments nothing.
	Instrument func(route string, next http.Handler) http.Handler
}

func (c *AdminConfig) setDefaults() {
	if c.Door == nil {
		c.Door = func(next http.Handler) http.Handler { return next }
	}
	if c.Instrument == nil {
		c.Instrument = func(_ string, next http.Handler) http.Handler { return next }
	}
}

// Validate reports every problem of c at once.
func (c AdminConfig) Validate() error {
	var errs []error
	if c.Console == nil {
		errs = append(errs, errors.New("admin API: Console is required"))
	}
	if c.Status == nil {
		errs = append(errs, errors.New("admin API: Status is required"))
	}
	return errors.Join(errs...)
}

// Admin is the admin listener's handler: the console's JSON API, the page
// over it, the status API and the profiles.
type Admin struct {
	mux *http.ServeMux
}

// ServeHTTP serves the admin listener.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// errNotSameOriginJSON refuses a write a browser could have been tricked
// into sending.
var errNotSameOriginJSON = errors.New("console writes must be same-origin requests with Content-Type: application/json")

// NewAdmin validates cfg and builds the admin listener's routes.
func NewAdmin(cfg AdminConfig, _ *slog.Logger) (*Admin, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	door := cfg.Door
	// The console's CSRF defence, with jsonBody: a browser says where a
	// write comes from (Sec-Fetch-Site, or Origin in older ones), and it
	// must be this origin; a request that says neither (the CLI, curl) is
	// no browser's, and passes.
	crossOrigin := http.NewCrossOriginProtection()
	mux := http.NewServeMux()
	api := func(pattern string, h func(*Console, http.ResponseWriter, *http.Request)) {
		mux.Handle(pattern, cfg.Instrument(strings.TrimPrefix(strings.TrimPrefix(pattern, "GET "), "POST "),
			door(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost && (!jsonBody(r) || crossOrigin.Check(r) != nil) {
					WriteError(w, http.StatusForbidden, errNotSameOriginJSON)
					return
				}
				c, err := cfg.Console(r.Context())
				if err != nil {
					WriteError(w, http.StatusServiceUnavailable, err)
					return
				}
				h(c, w, r)
			}))))
	}
	jobs := newReplayJobs()
	api("GET "+AdminPoisonPath, adminList)
	api("GET "+AdminPoisonPath+"/summary", adminSummary)
	api("GET "+AdminPoisonPath+"/{id}", adminShow)
	api("POST "+AdminPoisonPath+"/replay", func(c *Console, w http.ResponseWriter, r *http.Request) { adminReplay(c, jobs, w, r) })
	api("GET "+AdminPoisonPath+"/jobs/{job}", func(_ *Console, w http.ResponseWriter, r *http.Request) {
		job, ok := jobs.get(r.PathValue("job"))
		if !ok {
			WriteError(w, http.StatusNotFound, fmt.Errorf("replay job %q: not in this process (jobs live in the process that started them)", r.PathValue("job")))
			return
		}
		writeAdminJSON(w, http.StatusOK, job)
	})
	api("POST "+AdminPoisonPath+"/purge", adminPurge)
	api("POST "+AdminPoisonPath+"/validate", adminValidate)
	api("POST "+AdminPoisonPath+"/causes/{cause}/ack", adminAck)
	api("GET "+AdminPoisonPath+"/export", adminExport)
	api("GET "+AdminTablesPath, adminTables)
	api("GET "+AdminTablesPath+"/{table}/rows", adminRows)
	mux.Handle("GET "+StatusPath, cfg.Instrument(StatusPath, door(cfg.Status)))
	mux.HandleFunc("GET "+AdminPagePath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		_, _ = w.Write(consolePage)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, AdminPagePath, http.StatusFound)
	})
	// Profiles are taken where the service runs, under its real load, so
	// they sit on the admin listener (loopback by default, and behind the
	// admin key when keys are configured) rather than on the ingest port.
	mux.Handle("GET "+PprofPath, door(http.HandlerFunc(pprof.Index)))
	mux.Handle("GET "+PprofPath+"cmdline", door(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("GET "+PprofPath+"profile", door(http.HandlerFunc(pprof.Profile)))
	mux.Handle("GET "+PprofPath+"symbol", door(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("GET "+PprofPath+"trace", door(http.HandlerFunc(pprof.Trace)))
	mux.Handle("GET "+PprofPath+"{profile}", door(http.HandlerFunc(pprof.Index)))
	return &Admin{mux: mux}, nil
}

// jsonBody reports whether a write carries Content-Type: application/json,
// which a cross-site form cannot send, and a cross-site script only after a
// CORS preflight this server never answers.
func jsonBody(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// WriteError answers err in the admin API's body shape, {"error": "..."}:
// the doors in front of the API answer in it too.
func WriteError(w http.ResponseWriter, code int, err error) {
	writeAdminJSON(w, code, map[string]string{"error": err.Error()})
}

func writeAdminJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func queryFilter(w http.ResponseWriter, r *http.Request) (warehouse.EventFilter, bool) {
	f, err := ParseFilter(r.URL.Query().Get, time.Now())
	if err != nil {
		WriteError(w, http.StatusBadRequest, err)
		return f, false
	}
	return f, true
}

func adminList(c *Console, w http.ResponseWriter, r *http.Request) {
	f, ok := queryFilter(w, r)
	if !ok {
		return
	}
	page, err := c.Page(r.Context(), f, r.URL.Query().Get("cause"))
	if err != nil {
		WriteError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeAdminJSON(w, http.StatusOK, page)
}

func adminSummary(c *Console, w http.ResponseWriter, r *http.Request) {
	f, ok := queryFilter(w, r)
	if !ok {
		return
	}
	groups, err := c.Summary(r.Context(), f)
	if err != nil {
		WriteError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"groups": groups})
}

func adminShow(c *Console, w http.ResponseWriter, r *http.Request) {
	d, err := c.Show(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNotInIndex):
		WriteError(w, http.StatusNotFound, err)
	case err != nil:
		WriteError(w, http.StatusServiceUnavailable, err)
	default:
		writeAdminJSON(w, http.StatusOK, d)
	}
}

// adminSelection is the body of replay and purge: ids, or all with
// filters, or (replay only) edited payloads.
type adminSelection struct {
	IDs    []string          `json:"ids"`
	All    bool              `json:"all"`
	Filter map[string]string `json:"filter"`
	// Items are payloads an operator edited, replayed with their id.
	Items  []ExportLine `json:"items"`
	DryRun bool         `json:"dry_run"`
	Rate   float64      `json:"rate"`
	// Expect is the count the operator confirmed: when the selection
	// holds another number by now, nothing is done (409).
	Expect *int `json:"expect"`
	// Background runs a replay as a job and answers 202 with it at once;
	// GET /api/poison/jobs/{job} follows it.
	Background bool `json:"background"`
}

func readSelection(w http.ResponseWriter, r *http.Request) (adminSelection, Selection, bool) {
	var body adminSelection
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		WriteError(w, http.StatusBadRequest, fmt.Errorf("body: %w", err))
		return body, Selection{}, false
	}
	f, err := ParseFilter(func(k string) string { return body.Filter[k] }, time.Now())
	if err != nil {
		WriteError(w, http.StatusBadRequest, err)
		return body, Selection{}, false
	}
	return body, Selection{IDs: body.IDs, All: body.All, Filter: f, Cause: body.Filter["cause"]}, true
}

// selectEntries resolves a replay's or purge's selection, answering the
// request itself when it cannot: 400 for an empty one, 404 naming the ids
// the index does not hold, 503 when the index cannot be read.
func selectEntries(c *Console, w http.ResponseWriter, r *http.Request, sel Selection, expect *int) ([]warehouse.Entry, bool) {
	entries, unknown, err := c.Select(r.Context(), sel)
	switch {
	case err == nil && expect != nil && len(entries) != *expect:
		writeAdminJSON(w, http.StatusConflict, map[string]any{"count": len(entries),
			"error": fmt.Sprintf("the selection holds %d payloads now, not the %d confirmed: nothing was done; confirm the new count", len(entries), *expect)})
	case errors.Is(err, ErrEmptySelection):
		WriteError(w, http.StatusBadRequest, err)
	case err != nil:
		WriteError(w, http.StatusServiceUnavailable, err)
	case len(unknown) > 0:
		WriteError(w, http.StatusNotFound, fmt.Errorf("%s: %w", strings.Join(unknown, ", "), ErrNotInIndex))
	default:
		return entries, true
	}
	return nil, false
}

func adminReplay(c *Console, jobs *replayJobs, w http.ResponseWriter, r *http.Request) {
	body, sel, ok := readSelection(w, r)
	if !ok {
		return
	}
	var items []ReplayItem
	if len(body.Items) > 0 {
		var b strings.Builder
		for _, it := range body.Items {
			line, _ := json.Marshal(it)
			b.Write(line)
			b.WriteByte('\n')
		}
		var err error
		if items, err = c.ReadExport(r.Context(), strings.NewReader(b.String())); err != nil {
			WriteError(w, http.StatusBadRequest, err)
			return
		}
	} else {
		entries, ok := selectEntries(c, w, r, sel, body.Expect)
		if !ok {
			return
		}
		items = ItemsOf(entries)
	}
	if body.Background {
		job := jobs.start(sel.Cause, len(items), body.Rate, func(progress func(done, total int)) (ReplayReport, error) {
			ctx, cancel := backgroundContext(r.Context(), replayTimeout(len(items), body.Rate))
			defer cancel()
			return c.Replay(ctx, items, ReplayOptions{Rate: body.Rate, DryRun: body.DryRun, Actor: "admin-api", Progress: progress})
		})
		writeAdminJSON(w, http.StatusAccepted, job)
		return
	}
	// The request's context ends with the client; a replay half done
	// stays recorded as far as it got, so it runs to its end.
	ctx, cancel := backgroundContext(r.Context(), replayTimeout(len(items), body.Rate))
	defer cancel()
	rep, err := c.Replay(ctx, items, ReplayOptions{Rate: body.Rate, DryRun: body.DryRun, Actor: "admin-api"})
	if err != nil {
		writeAdminJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "report": rep})
		return
	}
	code := http.StatusOK
	if len(rep.Refused) > 0 {
		code = http.StatusUnprocessableEntity
	}
	writeAdminJSON(w, code, rep)
}

func adminPurge(c *Console, w http.ResponseWriter, r *http.Request) {
	body, sel, ok := readSelection(w, r)
	if !ok {
		return
	}
	entries, ok := selectEntries(c, w, r, sel, body.Expect)
	if !ok {
		return
	}
	n, err := c.Purge(context.WithoutCancel(r.Context()), entries, "admin-api")
	if err != nil {
		writeAdminJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "purged": n})
		return
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"purged": n})
}

// WarehouseVerdict is what the warehouse would say to a payload the gate
// accepts: the apply stage's planner against the current schema, with no
// writes. Checked is false when the gate refused it first, or the adapter
// cannot check; Error says why the check could not be made.
type WarehouseVerdict struct {
	Checked bool   `json:"checked"`
	Valid   bool   `json:"valid"`
	Problem string `json:"problem,omitempty"`
	Error   string `json:"error,omitempty"`
}

// CheckWarehouse asks the warehouse whether p would apply now.
func (c *Console) CheckWarehouse(ctx context.Context, p messages.Payload) WarehouseVerdict {
	checker, ok := c.store.(warehouse.Checker)
	if !ok {
		return WarehouseVerdict{}
	}
	problem, err := checker.Check(ctx, p.Activities)
	switch {
	case err != nil:
		return WarehouseVerdict{Error: err.Error()}
	case problem != nil:
		return WarehouseVerdict{Checked: true, Problem: problem.Error()}
	}
	return WarehouseVerdict{Checked: true, Valid: true}
}

// adminValidate runs the gate on an edited payload, for the page's edit
// box: the same verdict a POST to the ingestion API would get; and, when
// the gate accepts it, the warehouse's (CheckWarehouse).
func adminValidate(c *Console, w http.ResponseWriter, r *http.Request) {
	var body struct {
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20)).Decode(&body); err != nil {
		WriteError(w, http.StatusBadRequest, fmt.Errorf("body: %w", err))
		return
	}
	p, err := messages.Parse(body.Payload)
	if err == nil {
		writeAdminJSON(w, http.StatusOK, map[string]any{"valid": true, "problems": []messages.Problem{},
			"warehouse": c.CheckWarehouse(r.Context(), p)})
		return
	}
	problems := []messages.Problem{{Path: "", Message: err.Error()}}
	var ve *messages.ValidationError
	if errors.As(err, &ve) {
		problems = ve.Problems
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"valid": false, "problems": problems, "warehouse": WarehouseVerdict{}})
}

// adminAck acknowledges a cause, or opens it again with
// {"acknowledged": false}.
func adminAck(c *Console, w http.ResponseWriter, r *http.Request) {
	body := struct {
		Acknowledged *bool `json:"acknowledged"`
	}{}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		WriteError(w, http.StatusBadRequest, fmt.Errorf("body: %w", err))
		return
	}
	ack := body.Acknowledged == nil || *body.Acknowledged
	if err := c.Acknowledge(r.Context(), r.PathValue("cause"), ack, "admin-api"); err != nil {
		WriteError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"cause": r.PathValue("cause"), "acknowledged": ack})
}
