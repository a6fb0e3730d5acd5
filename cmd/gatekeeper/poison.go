package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatekeeper/gatekeeper/pipeline/operator"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// Exit codes of the operator commands.
const (
	exitOK          = 0
	exitOperational = 1 // could not do it all: unreachable, refused, unknown ids
	exitUsage       = 2
)

const poisonUsage = `usage: gatekeeper poison COMMAND [flags]

Commands (they ask the running service's admin API, on ADMIN_ADDR or
--server, which reads the poison index in the warehouse, never the poison
subscription, so operators side by side see the same set; --direct reads
the warehouse and publishes to Pub/Sub without the service):
  list [filters] [--limit N] [--json]   poisoned payloads, most recent first
  summary [filters] [--json]            failures grouped by class, tables and reason
  show ID [--json]                      one payload: metadata, history, the payload
  replay (ID... | --all | filters) [--dry-run] [--rate N] [--yes]
  replay --from FILE [--dry-run] [--rate N]
                                        publish again to TOPIC_ID with the same id,
                                        each re-validated through the gate first
  export [filters] [-o FILE]            JSON lines (payload_id, metadata, payload) to edit
  purge (ID... | --all | filters) [--yes]
                                        mark as dropped: never replayed

Filters: --table T, --class invalid|transient|permanent|unknown,
--since 1h|RFC3339, --reason SUBSTRING, --backend NAME,
--state poisoned|replayed|purged (default poisoned).

Exit codes: 0 ok; 1 operational error (including "some were refused",
unknown ids and no service to ask); 2 usage.

gatekeeper poison COMMAND --help lists that command's flags.`

var poisonCommands = []string{"list", "summary", "show", "replay", "export", "purge"}

// poisonSynopsis is the first line of each command's --help.
var poisonSynopsis = map[string]string{
	"list":    "usage: gatekeeper poison list [filters] [--limit N] [--json]",
	"summary": "usage: gatekeeper poison summary [filters] [--json]",
	"show":    "usage: gatekeeper poison show ID [--json]",
	"replay":  "usage: gatekeeper poison replay (ID... | --all | filters) [--dry-run] [--rate N] [--yes]\n       gatekeeper poison replay --from FILE [--dry-run] [--rate N]",
	"export":  "usage: gatekeeper poison export [filters] [-o FILE]",
	"purge":   "usage: gatekeeper poison purge (ID... | --all | filters) [--yes]",
}

// poisonAbout says what each command does, under its synopsis.
var poisonAbout = map[string]string{
	"list":    "Lists the payloads the filters select, most recently changed first.",
	"summary": "Groups the payloads the filters select by cause (error class, tables, reason), largest first.",
	"show":    "Shows one payload: its record, metadata, history and the payload itself.",
	"replay": "Publishes the payloads again with their own id, each re-validated through the gate first;\n" +
		"the ledger applies each at most once. A filtered or --all replay asks first, stating the count.",
	"export": "Writes the payloads as JSON lines (payload_id, metadata, payload), to edit and replay with --from.",
	"purge":  "Marks the payloads as dropped: they are never replayed. Asks first, stating the count.",
}

// poisonWhere ends each poison command's --help.
const poisonWhere = `It asks the running service's admin API (ADMIN_ADDR, or --server); --direct
reads the warehouse (and, to replay, publishes to Pub/Sub) itself.

Exit codes: 0 ok; 1 operational error (including "some were refused" and
unknown ids, and no service to ask); 2 usage.`

// poisonFlags are the flags of one poison command beside the settings.
type poisonFlags struct {
	filters              map[string]*string
	limit                int
	json, all, yes, dry  bool
	rate                 float64
	from, output         string
	positional           []string
	verb                 string
	filtered, acceptsIDs bool
	hasLimit             bool
}

// Each poison command's own flags, bound beside the settings.
type (
	filterFlags struct {
		Table   string `name:"table" help:"only payloads that touch this table"`
		Class   string `name:"class" help:"only this error class: invalid, transient, permanent or unknown"`
		Since   string `name:"since" placeholder:"DURATION|TIME" help:"only payloads whose state changed since: a duration (1h) or an RFC 3339 time"`
		Reason  string `name:"reason" placeholder:"TEXT" help:"only payloads whose reason contains this (case-insensitive)"`
		Backend string `name:"backend" placeholder:"NAME" help:"only payloads this backend (BACKENDS_FILE) sent"`
		State   string `name:"state" help:"only this state: poisoned, replayed or purged (default poisoned)"`
	}
	limitFlag struct {
		Limit int `name:"limit" help:"most payloads to list; 0 for all"`
	}
	jsonFlag struct {
		JSON bool `name:"json" help:"JSON lines with typed fields instead of a table"`
	}
	replayFlags struct {
		All    bool    `name:"all" help:"every payload the filters select (all poisoned ones without filters)"`
		Yes    bool    `name:"yes" help:"do not ask before replaying a filtered or --all selection"`
		DryRun bool    `name:"dry-run" help:"check and count; publish nothing"`
		Rate   float64 `name:"rate" default:"100" help:"payloads per second"`
		From   string  `name:"from" placeholder:"FILE" help:"replay the JSON lines of this file (from export, edited), each validated by the gate"`
	}
	purgeFlags struct {
		All bool `name:"all" help:"every payload the filters select (all poisoned ones without filters)"`
		Yes bool `name:"yes" help:"do not ask for confirmation"`
	}
	exportFlags struct {
		Output string `name:"output" short:"o" placeholder:"FILE" help:"write to this file instead of stdout"`
	}
)

// bind returns the structs of p.verb's flags, and done, which copies
// their values into p once parsed.
func (p *poisonFlags) bind() (own []any, done func()) {
	var (
		f      filterFlags
		l      limitFlag
		j      jsonFlag
		r      replayFlags
		pu     purgeFlags
		export exportFlags
	)
	p.filters = map[string]*string{}
	if p.filtered {
		own = append(own, &f)
		p.filters = map[string]*string{"table": &f.Table, "class": &f.Class, "since": &f.Since, "reason": &f.Reason,
			"backend": &f.Backend, "state": &f.State}
	}
	if p.hasLimit {
		own = append(own, &l)
	}
	switch p.verb {
	case "list", "summary", "show":
		own = append(own, &j)
	case "replay":
		own = append(own, &r)
	case "purge":
		own = append(own, &pu)
	case "export":
		own = append(own, &export)
	}
	return own, func() {
		p.limit, p.json, p.output = l.Limit, j.JSON, export.Output
		p.all, p.yes, p.dry, p.rate, p.from = r.All || pu.All, r.Yes || pu.Yes, r.DryRun, r.Rate, r.From
	}
}

func poison(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || !slices.Contains(poisonCommands, args[0]) {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
			fmt.Fprintln(stdout, poisonUsage)
			return exitOK
		}
		if len(args) == 0 {
			fmt.Fprintf(stderr, "gatekeeper: poison needs a command (%s); see gatekeeper poison --help\n", strings.Join(poisonCommands, ", "))
		} else {
			fmt.Fprintf(stderr, "gatekeeper: unknown poison command %q (want %s); see gatekeeper poison --help\n", args[0], strings.Join(poisonCommands, ", "))
		}
		return exitUsage
	}
	p := &poisonFlags{verb: args[0]}
	p.filtered = p.verb != "show"
	p.acceptsIDs = p.verb == "show" || p.verb == "replay" || p.verb == "purge"
	p.hasLimit = p.verb == "list"
	synopsis := poisonSynopsis[p.verb] + "\n\n" + poisonAbout[p.verb] + "\n\n" + poisonWhere
	own, done := p.bind()
	var reach reachFlags
	reads := reachReads
	if p.verb == "replay" {
		reads = append(slices.Clone(reachReads), pubSubReads...)
	}
	cfg, logger, positional, err := loadSettings("poison "+p.verb, synopsis, reads, args[1:], stdout, stderr, append(own, &reach)...)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err == nil {
		done()
		err = p.positionals(positional)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return exitUsage
	}
	q := poisonQuery{values: url.Values{}}
	for k, v := range p.filters {
		if *v != "" {
			q.values.Set(k, *v)
		}
	}
	q.filter, err = operator.ParseFilter(q.values.Get, time.Now())
	if err != nil {
		// ParseFilter names the filters as the admin API's query does
		// (class "x"); here they are flags (--class "x").
		lines := strings.Split(err.Error(), "\n")
		for i, l := range lines {
			lines[i] = "--" + l
		}
		err = fmt.Errorf("%s\nsee gatekeeper poison %s --help", strings.Join(lines, "\n"), p.verb)
	} else {
		err = p.check(q.filter)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return exitUsage
	}
	q.filter.Limit = p.limit

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var src poisonSource
	if reach.direct(args[1:]) {
		src, err = openDirectSource(ctx, cfg, logger)
	} else {
		var c *adminClient
		if c, err = newAdminClient(reach, cfg.AdminAddr); err == nil {
			src = serviceSource{c}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatekeeper: %v\n", err)
		return exitOperational
	}
	defer src.close()
	cmd := poisonCmd{src: src, p: p, q: q, stdout: stdout, stderr: stderr}
	switch p.verb {
	case "list":
		return cmd.list(ctx)
	case "summary":
		return cmd.summary(ctx)
	case "show":
		return cmd.show(ctx)
	case "replay":
		return cmd.replay(ctx)
	case "export":
		return cmd.export(ctx)
	default:
		return cmd.purge(ctx)
	}
}

// positionals takes the ids given before, between or after the flags.
func (p *poisonFlags) positionals(ids []string) error {
	p.positional = ids
	if len(p.positional) > 0 && !p.acceptsIDs {
		return fmt.Errorf("poison %s takes no payload ids (got %s); use the filters", p.verb, strings.Join(p.positional, " "))
	}
	return nil
}

func (p *poisonFlags) check(f warehouse.EventFilter) error {
	narrowed := len(f.States) > 0 || f.Table != "" || f.Class != "" || !f.Since.IsZero() || f.Reason != ""
	if (p.verb == "replay" && p.from == "" || p.verb == "purge") && len(p.positional) == 0 && !p.all && !narrowed {
		return fmt.Errorf("poison %s: %w", p.verb, operator.ErrEmptySelection)
	}
	switch p.verb {
	case "show":
		if len(p.positional) != 1 {
			return errors.New("usage: gatekeeper poison show ID [--json]")
		}
	case "replay":
		if p.from != "" && (len(p.positional) > 0 || p.all) {
			return errors.New("replay --from FILE takes no ids and no --all")
		}
		if p.rate <= 0 {
			return fmt.Errorf("--rate %v: want payloads per second above 0", p.rate)
		}
	}
	return nil
}

type poisonCmd struct {
	src            poisonSource
	p              *poisonFlags
	q              poisonQuery
	stdout, stderr io.Writer
}

func (c poisonCmd) fail(err error) int {
	fmt.Fprintf(c.stderr, "gatekeeper: %v\n", err)
	return exitOperational
}

func (c poisonCmd) list(ctx context.Context) int {
	records, err := c.src.list(ctx, c.q)
	if err != nil {
		return c.fail(err)
	}
	if c.p.json {
		return jsonLines(c.stdout, records)
	}
	if len(records) == 0 {
		fmt.Fprintf(c.stderr, "no payloads in state %s match\n", states(c.q.filter))
		return exitOK
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVED\tLAST FAILURE\tATTEMPTS\tCLASS\tTABLES\tREASON")
	for _, r := range records {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.PayloadID, ago(now, r.ReceivedAt), ago(now, r.LastFailureAt),
			r.Attempts, r.ErrorClass, strings.Join(r.Tables, ","), truncate(oneLine(r.Reason), 70))
	}
	_ = tw.Flush()
	return exitOK
}

// jsonLines writes one JSON object per line, for --json.
func jsonLines[T any](w io.Writer, items []T) int {
	enc := json.NewEncoder(w)
	for _, item := range items {
		_ = enc.Encode(item)
	}
	return exitOK
}

func states(f warehouse.EventFilter) string {
	if len(f.States) == 0 {
		return string(warehouse.EventPoisoned)
	}
	s := make([]string, len(f.States))
	for i, k := range f.States {
		s[i] = string(k)
	}
	return strings.Join(s, ",")
}

func (c poisonCmd) summary(ctx context.Context) int {
	groups, err := c.src.summary(ctx, c.q)
	if err != nil {
		return c.fail(err)
	}
	if c.p.json {
		return jsonLines(c.stdout, groups)
	}
	if len(groups) == 0 {
		fmt.Fprintf(c.stderr, "no payloads in state %s match\n", states(c.q.filter))
		return exitOK
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COUNT\tCLASS\tTABLES\tFIRST SEEN\tLAST SEEN\tREASON")
	total := 0
	for _, g := range groups {
		total += g.Count
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", g.Count, g.ErrorClass, strings.Join(g.Tables, ","),
			ago(now, &g.FirstSeen), ago(now, &g.LastSeen), truncate(oneLine(g.Reason), 90))
	}
	_ = tw.Flush()
	fmt.Fprintf(c.stdout, "%s, %s; `gatekeeper poison list --reason ...` lists one cause\n", plural(total, "payload"), plural(len(groups), "cause"))
	return exitOK
}

func (c poisonCmd) show(ctx context.Context) int {
	d, err := c.src.show(ctx, c.p.positional[0])
	if err != nil {
		return c.fail(err)
	}
	if c.p.json {
		_ = json.NewEncoder(c.stdout).Encode(d)
		return exitOK
	}
	w := c.stdout
	fmt.Fprintf(w, "payload        %s\n", d.PayloadID)
	fmt.Fprintf(w, "state          %s (replays: %d)\n", d.State, d.Replays)
	fmt.Fprintf(w, "class          %s\n", d.ErrorClass)
	fmt.Fprintf(w, "tables         %s\n", strings.Join(d.Tables, ", "))
	fmt.Fprintf(w, "attempts       %d\n", d.Attempts)
	fmt.Fprintf(w, "received       %s\n", stamp(d.ReceivedAt))
	fmt.Fprintf(w, "first failure  %s\n", stamp(d.FirstFailureAt))
	fmt.Fprintf(w, "last failure   %s\n", stamp(d.LastFailureAt))
	fmt.Fprintf(w, "correlation    %s\n", d.CorrelationID)
	fmt.Fprintf(w, "reason         %s\n", d.Reason)
	fmt.Fprintln(w, "\nmetadata:")
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range d.Metadata {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		fmt.Fprintf(w, "  %s = %s\n", k, d.Metadata[k])
	}
	fmt.Fprintln(w, "\nhistory:")
	for _, h := range d.History {
		line := fmt.Sprintf("  %s  %-8s generation %d", h.At.Format(time.RFC3339), h.Kind, h.Generation)
		if h.ErrorClass != "" {
			line += fmt.Sprintf("  %s after %d attempts", h.ErrorClass, h.Attempts)
		}
		if h.Actor != "" {
			line += "  by " + h.Actor
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w, "\npayload:")
	var pretty bytes.Buffer
	if json.Indent(&pretty, d.Payload, "  ", "  ") == nil {
		fmt.Fprintf(w, "  %s\n", pretty.String())
	} else {
		fmt.Fprintf(w, "  %s\n", d.Payload)
	}
	return exitOK
}

func (c poisonCmd) export(ctx context.Context) int {
	if c.p.output == "" {
		if _, err := c.src.export(ctx, c.q, c.stdout); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
	// The file is written once the export is complete: a failed export
	// leaves no file, never an empty one that reads as "nothing poisoned".
	// It holds payloads, business data: only its owner may read it.
	var buf bytes.Buffer
	n, err := c.src.export(ctx, c.q, &buf)
	if err == nil {
		err = os.WriteFile(c.p.output, buf.Bytes(), 0o600)
	}
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stderr, "exported %d payload(s) to %s\n", n, c.p.output)
	return exitOK
}

// selection is the ids given, or those the filters (or --all) select.
func (c poisonCmd) selection(ctx context.Context) ([]string, error) {
	if len(c.p.positional) > 0 {
		return c.p.positional, nil
	}
	return c.src.selectIDs(ctx, c.q)
}

// confirm asks on the terminal, unless --yes. Without a terminal to answer
// it refuses: a script must say --yes.
func (c poisonCmd) confirm(question string) bool {
	if c.p.yes {
		return true
	}
	fmt.Fprintf(c.stderr, "%s [y/N] ", question)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	answer := strings.ToLower(strings.TrimSpace(line))
	if answer != "y" && answer != "yes" {
		fmt.Fprintln(c.stderr, "not confirmed; nothing done (--yes skips the question)")
		return false
	}
	return true
}

func (c poisonCmd) replay(ctx context.Context) int {
	req := replayRequest{rate: c.p.rate, dryRun: c.p.dry}
	if c.p.from != "" {
		f, err := os.Open(c.p.from)
		if err != nil {
			return c.fail(err)
		}
		req.lines, err = readExportLines(f)
		f.Close()
		if err != nil {
			return c.fail(fmt.Errorf("%s: %w", c.p.from, err))
		}
	} else {
		ids, err := c.selection(ctx)
		if err != nil {
			return c.fail(err)
		}
		if len(c.p.positional) == 0 && !c.p.dry && len(ids) > 0 &&
			!c.confirm(fmt.Sprintf("Replay %d payload(s) to %s?", len(ids), c.src.target())) {
			return exitOperational
		}
		req.ids = ids
	}
	start := time.Now()
	req.progress = func(done, total int) {
		fmt.Fprintf(c.stderr, "replay: %d/%d after %s\n", done, total, time.Since(start).Round(time.Second))
	}
	rep, err := c.src.replay(ctx, req)
	for _, r := range rep.Refused {
		fmt.Fprintf(c.stderr, "refused %s: the gate rejects it:\n", r.PayloadID)
		if len(r.Problems) == 0 {
			fmt.Fprintf(c.stderr, "  %s\n", r.Error)
		}
		for _, pr := range r.Problems {
			fmt.Fprintf(c.stderr, "  %s: %s\n", cmp.Or(pr.Path, "(document)"), pr.Message)
		}
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(c.stderr, "skipped %s: %s\n", s.PayloadID, s.Why)
	}
	if err != nil && rep.Replayed == 0 && len(rep.Refused) == 0 && len(rep.Skipped) == 0 {
		return c.fail(err) // nothing was done: the error says it all
	}
	verb := "replayed"
	if c.p.dry {
		verb = "would replay"
	}
	fmt.Fprintf(c.stdout, "%s %d, refused %d, skipped %d (to %s, in %s)\n", verb, rep.Replayed, len(rep.Refused), len(rep.Skipped),
		c.src.target(), time.Since(start).Round(10*time.Millisecond))
	if err != nil {
		return c.fail(err)
	}
	if len(rep.Refused) > 0 {
		return exitOperational
	}
	return exitOK
}

// readExportLines reads `poison export` lines, as an operator may have
// edited them; a line that is not one is an error naming its number, and
// nothing is replayed from a file that is not what the operator thinks.
func readExportLines(r io.Reader) ([]operator.ExportLine, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var out []operator.ExportLine
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var l operator.ExportLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			return nil, fmt.Errorf("line %d: not an export line: %v", n, err)
		}
		if l.PayloadID == "" {
			return nil, fmt.Errorf("line %d: no payload_id", n)
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

func (c poisonCmd) purge(ctx context.Context) int {
	ids, err := c.selection(ctx)
	if err != nil {
		return c.fail(err)
	}
	if len(ids) == 0 {
		fmt.Fprintln(c.stdout, "purged 0")
		return exitOK
	}
	if !c.confirm(fmt.Sprintf("Purge %d payload(s)? They will never be replayed.", len(ids))) {
		return exitOperational
	}
	n, err := c.src.purge(ctx, ids)
	fmt.Fprintf(c.stdout, "purged %d\n", n)
	if err != nil {
		return c.fail(err)
	}
	return exitOK
}

// ago says how long ago t was, as a person reads it in a table.
func ago(now time.Time, t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := now.Sub(*t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}

func stamp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339Nano) + " (" + ago(time.Now(), t) + ")"
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// plural is "1 cause", "2 causes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
