package loadgen

// --output and `gatekeeper loadgen report`: every result of a run, kept
// as JSON lines, reported again as text, JSON, histogram buckets or an
// HdrHistogram percentile distribution (.hgrm), for plotting.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
)

// The lines of a results file: one RunInfo first, one Result per request,
// and one EndInfo last (missing when the run was killed).
type (
	// RunInfo is the run's first line: what was asked.
	RunInfo struct {
		Target      string    `json:"target"`
		Rate        float64   `json:"rate"` // 0: the closed model
		Connections int       `json:"connections"`
		Mix         string    `json:"mix"`
		Unique      bool      `json:"unique"`
		RandomSeed  uint64    `json:"random_seed"`
		Start       time.Time `json:"start"`
	}
	// EndInfo is the run's last line: what the results alone do not say.
	EndInfo struct {
		DurationS float64    `json:"duration_s"`
		Intended  int64      `json:"intended"`
		Setup     string     `json:"setup,omitempty"`
		E2E       *E2EReport `json:"e2e,omitempty"`
	}
	fileLine struct {
		Run *RunInfo `json:"run,omitempty"`
		End *EndInfo `json:"end,omitempty"`
		Result
	}
)

// resultsFile is --output while the run writes it.
type resultsFile struct {
	f   *os.File
	buf *bufio.Writer
	enc *json.Encoder
}

func createResults(o Options, endpoint string) (*resultsFile, error) {
	f, err := os.Create(o.Output)
	if err != nil {
		return nil, err
	}
	buf := bufio.NewWriterSize(f, 256<<10)
	rf := &resultsFile{f: f, buf: buf, enc: json.NewEncoder(buf)}
	err = rf.enc.Encode(struct {
		Run RunInfo `json:"run"`
	}{RunInfo{Target: endpoint, Rate: o.Rate, Connections: o.Connections,
		Mix: o.Mix, Unique: o.Unique, RandomSeed: o.Seed, Start: time.Now().UTC()}})
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return rf, nil
}

// encoder is where the recorder writes each result; nil without --output.
func (rf *resultsFile) encoder() *json.Encoder {
	if rf == nil {
		return nil
	}
	return rf.enc
}

// finish writes the last line and closes the file; writeErr is the
// recorder's first write error.
func (rf *resultsFile) finish(rep *Report, writeErr error) error {
	err := writeErr
	if err == nil {
		err = rf.enc.Encode(struct {
			End EndInfo `json:"end"`
		}{EndInfo{DurationS: rep.DurationS, Intended: rep.Intended, Setup: rep.Setup, E2E: rep.E2E}})
	}
	return errors.Join(err, rf.buf.Flush(), rf.f.Sync(), rf.f.Close())
}

// writeReport prints rep as text or JSON; false when stdout failed.
func writeReport(w io.Writer, rep *Report, asJSON bool) bool {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep) == nil
	}
	rep.writeText(w)
	return true
}

// setupTimeout bounds the wait for the setup payload to be applied: where
// the status API cannot see the apply stage's warehouse (the stages
// apart), it never says applied.
const setupTimeout = 10 * time.Second

// prepare posts the mix's setup payload and waits until the status API
// says it was applied, so that no payload of the load finds its table
// missing (and is poisoned for it). What it could not confirm it says on
// stderr and in the report, and the load goes on: its own answers will
// show a service that is down or refuses the key.
func prepare(ctx context.Context, o Options, client *http.Client, endpoint string, body []byte, stderr io.Writer) string {
	warn := func(format string, args ...any) string {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintf(stderr, "gatekeeper loadgen: setup: %s\n", msg)
		return msg
	}
	began := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(string(body)))
	if err != nil {
		return warn("%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if o.Key != "" {
		req.Header.Set("Authorization", "Bearer "+o.Key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return warn("the table1 insert was not sent (%v): the deletes of the mix may be poisoned if table1 does not exist", errorKind(err))
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	var a struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(answer, &a) != nil || a.ID == "" {
		return warn("the table1 insert was answered %d (%s): the deletes of the mix may be poisoned if table1 does not exist",
			resp.StatusCode, snippet(answer))
	}
	base := strings.TrimSuffix(endpoint, "/api/activities")
	wait, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	for {
		st, err := pollStatus(wait, client, base, a.ID, o.Key)
		switch {
		case err == nil && st.Status == messages.StatusApplied:
			return fmt.Sprintf("table1 insert %s applied before the load, in %s", a.ID, time.Since(began).Round(time.Millisecond))
		case err == nil && (st.Status == messages.StatusPoisoned || st.Status == messages.StatusPurged):
			return warn("the table1 insert %s was poisoned (%s): table1 exists with other columns? The mix's payloads may be poisoned too", a.ID, st.Status)
		}
		select {
		case <-wait.Done():
			return warn("the status API did not say the table1 insert %s was applied within %s (last: %s); "+
				"with the stages apart it cannot see the warehouse. Deletes sent before it is applied are poisoned", a.ID, setupTimeout, statusText(st, err))
		case <-time.After(e2ePoll):
		}
	}
}

func statusText(st statusAnswer, err error) string {
	if err != nil {
		return err.Error()
	}
	return st.Status
}

// ReportOptions are `gatekeeper loadgen report`'s flags.
type ReportOptions struct {
	Format  string `name:"format" default:"text" help:"text, json, hist (counts per latency bucket) or hgrm (HdrHistogram percentile distribution, in milliseconds, for HdrHistogram's plotter)"`
	Buckets string `name:"buckets" default:"0,1ms,2ms,5ms,10ms,20ms,50ms,100ms,200ms,500ms,1s,2s,5s,10s" help:"with --format hist: the buckets' lower bounds, ascending durations"`
}

// ReportFile reads a results file written with --output and reports it
// again; it returns the exit code.
func ReportFile(path string, o ReportOptions, stdout, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "gatekeeper loadgen report: %v\n", err)
		return code
	}
	var buckets []time.Duration
	switch o.Format {
	case "text", "json", "hgrm":
	case "hist":
		var err error
		if buckets, err = parseBuckets(o.Buckets); err != nil {
			return fail(exitUsage, err)
		}
	default:
		return fail(exitUsage, fmt.Errorf("--format %q: want text, json, hist or hgrm", o.Format))
	}
	rep, rc, err := readResults(path, buckets)
	if err != nil {
		return fail(exitOperational, err)
	}
	switch o.Format {
	case "hist":
		writeHist(stdout, buckets, rc.buckets, rep.Sent, rep.Errors)
	case "hgrm":
		if _, err := rc.hist.PercentilesPrint(stdout, 5, 1000); err != nil {
			return fail(exitOperational, err)
		}
	default:
		if !writeReport(stdout, rep, o.Format == "json") {
			return exitOperational
		}
	}
	return exitOK
}

// readResults replays a results file through a recorder, as the run
// recorded it, and counts the answered requests per bucket.
func readResults(path string, buckets []time.Duration) (*Report, *recorder, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	rc := newRecorder()
	rc.buckets = make([]int64, len(buckets))
	var run *RunInfo
	var end *EndInfo
	var last int64
	for n := 1; sc.Scan(); n++ {
		var l fileLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		switch {
		case n == 1 && l.Run == nil:
			return nil, nil, fmt.Errorf("%s: not a results file of gatekeeper loadgen --output (its first line has no run)", path)
		case l.Run != nil:
			run = l.Run
		case l.End != nil:
			end = l.End
		default:
			rc.sent++
			last = max(last, l.AtUS)
			rc.record(l.Result, "", time.Time{})
			if l.Error == "" {
				for i := len(buckets) - 1; i >= 0; i-- {
					if time.Duration(l.LatencyUS)*time.Microsecond >= buckets[i] {
						rc.buckets[i]++
						break
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %v", path, err)
	}
	if run == nil {
		return nil, nil, fmt.Errorf("%s: empty", path)
	}
	o := Options{Rate: run.Rate, Connections: run.Connections, Mix: run.Mix, Unique: run.Unique, Seed: run.RandomSeed}
	window, intended := time.Duration(last)*time.Microsecond, rc.sent
	if end != nil {
		window, intended = time.Duration(end.DurationS*float64(time.Second)), end.Intended
	}
	rep := rc.report(o, run.Target, window, intended)
	if end != nil {
		rep.Setup, rep.E2E = end.Setup, end.E2E
	} else {
		rep.Setup = "the results file has no last line (the run was killed): the window is up to the last send, and sends never made are not counted"
	}
	return rep, rc, nil
}

// parseBuckets reads --buckets: ascending durations, the first 0 or more.
func parseBuckets(spec string) ([]time.Duration, error) {
	var bs []time.Duration
	for _, p := range strings.Split(strings.Trim(spec, "[] "), ",") {
		p = strings.TrimSpace(p)
		d, err := time.ParseDuration(p)
		if p == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 || len(bs) > 0 && d <= bs[len(bs)-1] {
			return nil, fmt.Errorf("--buckets %q: want ascending durations such as 0,1ms,10ms,100ms", spec)
		}
		bs = append(bs, d)
	}
	return bs, nil
}

// writeHist prints the answered requests per latency bucket, as vegeta's
// hist does: each bucket from its bound up to the next one's; the
// requests without an answer have a row of their own. Shares are of sent.
func writeHist(w io.Writer, bounds []time.Duration, counts []int64, sent, noAnswer int64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Bucket\t\t#\t%\tHistogram")
	row := func(from, to string, n int64) {
		pct := 0.0
		if sent > 0 {
			pct = 100 * float64(n) / float64(sent)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s%%\t%s\n", from, to, n, strconv.FormatFloat(pct, 'f', 2, 64), strings.Repeat("#", int(pct/2+0.5)))
	}
	for i, b := range bounds {
		upper := "+Inf"
		if i+1 < len(bounds) {
			upper = bounds[i+1].String()
		}
		row("["+b.String()+",", upper+")", counts[i])
	}
	row("no answer", "", noAnswer)
	_ = tw.Flush()
}
