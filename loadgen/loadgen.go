// Package loadgen is `gatekeeper loadgen`: a bounded load generator for
// the ingestion API, in an open model (--rate, timed from each send's
// intended time, so that coordinated omission cannot hide latency) or a
// closed one (--connections workers back to back), with the replaced
// service's locust mix, and, with --e2e, the latency from accepted to
// applied for a sample of payloads.
package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/gatekeeper/gatekeeper/messages"
)

// Bounds of one run: loadgen is a test tool, not a flood.
const (
	loadgenMaxDuration    = time.Hour
	loadgenMaxRequests    = 10_000_000
	loadgenMaxRate        = 100_000
	loadgenMaxConnections = 4096
	loadgenMaxFileLines   = 100_000
	// lateAfter: a send that starts later than this after its intended
	// time counts as late (its latency still counts from the intended time).
	lateAfter = time.Millisecond
	// e2eMaxSamples bounds the payloads --e2e follows.
	e2eMaxSamples = 1000
	// e2ePoll is how often --e2e asks the status API about one payload.
	e2ePoll = 10 * time.Millisecond
)

// Options are loadgen's flags, with the tags gatekeeper's command line
// binds them by.
type Options struct {
	Target      string        `name:"target" default:"http://127.0.0.1:8080" help:"the service's base URL; only loopback hosts unless --allow-remote"`
	AllowRemote bool          `name:"allow-remote" help:"allow a --target that is not a loopback address or localhost"`
	Duration    time.Duration `name:"duration" help:"stop sending after this long (at most 1h); required with --rate"`
	Requests    int           `name:"requests" help:"stop after this many requests (at most 10,000,000)"`
	Rate        float64       `name:"rate" help:"open model: requests per second at fixed intended times (at most 100,000); 0 for the closed model"`
	Connections int           `name:"connections" help:"closed model: workers back to back (default 1); open model: most requests in flight (default 256)"`
	Mix         string        `name:"mix" default:"locust" help:"payload mix: locust (the replaced service's three payloads; its table is created before the load), insert, invalid, file:PATH (JSON lines), weighted as locust=8,invalid=2"`
	Unique      bool          `name:"unique" help:"give each insert a distinct key (column a), so that every row lands"`
	Key         string        `name:"key" help:"API key sent as Authorization: Bearer; without it, $GATEKEEPER_KEY (never shown here)"`
	E2E         bool          `name:"e2e" help:"also measure accepted → applied latency for 1 in --e2e-sample accepted payloads (at most 1,000), via the status API or the applied topic (--e2e-via)"`
	E2ESample   int           `name:"e2e-sample" default:"100" help:"with --e2e, follow 1 in this many accepted payloads"`
	E2ETimeout  time.Duration `name:"e2e-timeout" default:"30s" help:"with --e2e, how long after the load a followed payload may take to be applied"`
	E2EVia      e2eVia        `name:"e2e-via" default:"auto" help:"with --e2e: status (GET /api/activities/ID), topic (the applied topic APPLIED_TOPIC_ID, through a subscription of loadgen's own), or auto: status when the service serves it and, where the applied topic can be read too, it says applied for what the topic shows applied; else topic (default auto)"`
	Timeout     time.Duration `name:"timeout" default:"10s" help:"per-request timeout"`
	JSON        bool          `name:"json" help:"print the report as JSON"`
	FailIf      string        `name:"fail-if" help:"exit 1 when a threshold is crossed: comma-separated NAME>VALUE or NAME<VALUE over min, mean, p50, p90, p95, p99, p999, max (durations), errors, non2xx (counts), success, error_rate (ratios 0..1 or percentages), e.g. 'p95>50ms,success<0.99'"`
	Seed        uint64        `name:"seed" help:"random seed that draws the mix's payloads (default: from the clock); the report shows it, to repeat a run"`
	Output      string        `name:"output" help:"also write every result to this file (JSON lines), for gatekeeper loadgen report"`
}

// Exit codes of Run.
const (
	exitOK          = 0
	exitOperational = 1 // a --fail-if threshold crossed, no answer, or --e2e cannot follow
	exitUsage       = 2
)

// Run checks o, posts the load, prints the report on stdout and returns
// the exit code. topics are the service's, for --e2e.
func Run(ctx context.Context, o Options, topics Topics, stdout, stderr io.Writer) int {
	usageErr := func(err error) int {
		fmt.Fprintf(stderr, "gatekeeper loadgen: %v\n", err)
		return exitUsage
	}
	endpoint, err := o.validate()
	if err != nil {
		return usageErr(err)
	}
	conds, err := parseFailIf(o.FailIf)
	if err != nil {
		return usageErr(err)
	}
	m, err := parseMix(o.Mix, o.Unique)
	if err != nil {
		return usageErr(err)
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}

	client := newLoadClient(o)
	defer client.CloseIdleConnections()
	var follow *e2eFollower
	if o.E2E {
		// Decided before the first send: a subscription created after it
		// would miss what was applied meanwhile.
		if follow, err = startE2E(ctx, o, topics, client, strings.TrimSuffix(endpoint, "/api/activities"), stderr); err != nil {
			fmt.Fprintf(stderr, "gatekeeper loadgen: --e2e: %v\n", err)
			return exitOperational
		}
		defer follow.close(stderr)
	}
	var out *resultsFile
	if o.Output != "" {
		if out, err = createResults(o, endpoint); err != nil {
			fmt.Fprintf(stderr, "gatekeeper loadgen: --output: %v\n", err)
			return exitOperational
		}
	}
	var setup string
	if m.setup != nil {
		setup = prepare(ctx, o, client, endpoint, m.setup, stderr)
	}
	rep, outErr := runLoad(ctx, o, endpoint, m, client, follow, out.encoder(), stderr)
	rep.Setup = setup
	code := exitOK
	if out != nil {
		if err := out.finish(rep, outErr); err != nil {
			fmt.Fprintf(stderr, "gatekeeper loadgen: --output %s: %v\n", o.Output, err)
			code = exitOperational
		}
	}
	if !writeReport(stdout, rep, o.JSON) {
		code = exitOperational
	}
	for _, c := range conds {
		if v, crossed := c.check(rep); crossed {
			fmt.Fprintf(stderr, "gatekeeper loadgen: threshold crossed: %s (got %s)\n", c.text, v)
			code = exitOperational
		}
	}
	if rep.Answered == 0 {
		fmt.Fprintln(stderr, "gatekeeper loadgen: no request got an answer")
		code = exitOperational
	}
	return code
}

// validate checks the flags and returns the URL requests go to.
func (o *Options) validate() (string, error) {
	var errs []error
	if o.Duration == 0 && o.Requests == 0 {
		errs = append(errs, errors.New("--duration or --requests is required"))
	}
	if o.Duration < 0 || o.Duration > loadgenMaxDuration {
		errs = append(errs, fmt.Errorf("--duration %s: want more than 0 and at most %s", o.Duration, loadgenMaxDuration))
	}
	if o.Requests < 0 || o.Requests > loadgenMaxRequests {
		errs = append(errs, fmt.Errorf("--requests %d: want 1 to %d", o.Requests, loadgenMaxRequests))
	}
	if o.Rate < 0 || o.Rate > loadgenMaxRate {
		errs = append(errs, fmt.Errorf("--rate %g: want more than 0 and at most %d", o.Rate, loadgenMaxRate))
	}
	if o.Rate > 0 && o.Duration == 0 {
		errs = append(errs, errors.New("--rate needs --duration"))
	}
	if o.Connections < 0 || o.Connections > loadgenMaxConnections {
		errs = append(errs, fmt.Errorf("--connections %d: want 1 to %d", o.Connections, loadgenMaxConnections))
	}
	if o.Connections == 0 {
		o.Connections = 1
		if o.Rate > 0 {
			o.Connections = 256
		}
	}
	if o.E2ESample < 1 {
		errs = append(errs, fmt.Errorf("--e2e-sample %d: want 1 or more", o.E2ESample))
	}
	if o.E2ETimeout <= 0 || o.Timeout <= 0 {
		errs = append(errs, errors.New("--e2e-timeout and --timeout must be positive"))
	}
	switch o.E2EVia {
	case e2eAuto, e2eStatus, e2eTopic:
	default:
		errs = append(errs, fmt.Errorf("--e2e-via %q: want auto, status or topic", o.E2EVia))
	}
	u, err := url.Parse(o.Target)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("--target: %v", err))
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		errs = append(errs, fmt.Errorf("--target %q: want http://HOST:PORT or https://HOST:PORT", o.Target))
	case !o.AllowRemote && !loopbackHost(u.Hostname()):
		errs = append(errs, fmt.Errorf("--target %q is not a loopback address; pass --allow-remote to load another host", o.Target))
	}
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return strings.TrimSuffix(u.String(), "/") + "/api/activities", nil
}

// loopbackHost is true for localhost and loopback IPs; names other than
// localhost are not resolved, so they need --allow-remote.
func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// request is one payload to send.
type request struct {
	kind   string // the mix component it came from
	body   []byte
	header map[string]string
}

// source makes the payloads of one mix component.
type source struct {
	name   string
	weight int
	next   func(r *rand.Rand, seq int64) request
}

type mix struct {
	sources []source
	total   int
	// setup is a payload applied before the load, so that no payload of
	// the mix finds its table missing: the locust mix's deletes would
	// poison on a fresh service, where table1 does not exist yet.
	setup []byte
}

// mixLocust is the replaced service's locust mix.
const mixLocust = "locust"

func (m mix) pick(r *rand.Rand, seq int64) request {
	n := r.IntN(m.total)
	for _, s := range m.sources {
		if n < s.weight {
			return s.next(r, seq)
		}
		n -= s.weight
	}
	panic("unreachable")
}

// The replaced service's locust payloads (README "Try it"): an insert, a
// delete, and a delete followed by an insert.
const (
	locustInsert       = `{"activities":[{"operation":"insert","table":"table1","col_names":["a","b","c","e"],"col_types":["INTEGER","TEXT","TEXT","TEXT"],"col_values":[%s,"Disaster Recovery","2019-04-28 10:24:30.183414","something"]}]}`
	locustDelete       = `{"activities":[{"operation":"delete","table":"table1","value_to_delete":{"col_names":["a","c","e"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[3,"2019-04-28 10:24:30.183414","something"]}}]}`
	locustDeleteInsert = `{"activities":[{"operation":"delete","table":"table1","value_to_delete":{"col_names":["a","c","e"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[3,"2019-04-28 10:24:30.183414","something"]}},{"operation":"insert","table":"table1","col_names":["a","b","c"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[%s,"Backup and Restore","2018-03-27 11:58:28.988414"]}]}`
)

// invalidPayloads breaks each rule the gate answers 400 for, one payload
// per rule. Rules answered otherwise (413 too_large, 415
// unsupported_media_type, 409 and 422 idempotency conflicts) are not in
// the mix: it is the gate's 400s under load.
func invalidPayloads() map[messages.Rule]request {
	ins := func(names, types, values string) []byte {
		return []byte(`{"activities":[{"operation":"insert","table":"t","col_names":` + names + `,"col_types":` + types + `,"col_values":` + values + `}]}`)
	}
	valid := ins(`["a"]`, `["INTEGER"]`, `[1]`)
	return map[messages.Rule]request{
		messages.RuleSchema:          {body: []byte(`{"activities":[{"operation":"upsert","table":"t"}]}`)},
		messages.RuleLengthMismatch:  {body: ins(`["a","b"]`, `["INTEGER"]`, `[1,2]`)},
		messages.RuleIdentifier:      {body: ins(`["a-b"]`, `["INTEGER"]`, `[1]`)},
		messages.RuleDuplicateColumn: {body: ins(`["a","A"]`, `["INTEGER","INTEGER"]`, `[1,2]`)},
		messages.RuleUnknownType:     {body: ins(`["a"]`, `["BLOB9"]`, `[1]`)},
		messages.RuleValueType:       {body: ins(`["a"]`, `["INTEGER"]`, `["x"]`)},
		messages.RuleLimits:          {body: []byte(`{"activities":[` + strings.Repeat(`{},`, messages.MaxActivities) + `{}]}`)},
		messages.RuleNotJSON:         {body: []byte(`{"activities":[`)},
		messages.RuleIdempotencyKey:  {body: valid, header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}},
	}
}

// parseMix reads --mix: components name[=weight], comma-separated.
func parseMix(spec string, unique bool) (mix, error) {
	runID := time.Now().Unix() % 1_000_000_000
	key := func(r *rand.Rand, seq int64) string {
		if unique {
			// Distinct across runs too: the run's second, then the sequence.
			return strconv.FormatInt(runID*10_000_000+seq, 10)
		}
		return "3"
	}
	var m mix
	var errs []error
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, weight := part, 1
		if i := strings.LastIndex(part, "="); i >= 0 {
			w, err := strconv.Atoi(part[i+1:])
			if err != nil || w < 1 || w > 1000 {
				errs = append(errs, fmt.Errorf("--mix %q: weight %q: want 1 to 1000", part, part[i+1:]))
				continue
			}
			name, weight = part[:i], w
		}
		s := source{name: name, weight: weight}
		switch {
		case name == mixLocust || name == "seed": // seed: its name before locust
			s.name = mixLocust
			m.setup = fmt.Appendf(nil, locustInsert, key(nil, -1))
			s.next = func(r *rand.Rand, seq int64) request {
				switch r.IntN(3) {
				case 0:
					return request{kind: mixLocust, body: fmt.Appendf(nil, locustInsert, key(r, seq))}
				case 1:
					return request{kind: mixLocust, body: []byte(locustDelete)}
				default:
					return request{kind: mixLocust, body: fmt.Appendf(nil, locustDeleteInsert, key(r, seq))}
				}
			}
		case name == "insert":
			s.next = func(r *rand.Rand, seq int64) request {
				return request{kind: "insert", body: fmt.Appendf(nil, locustInsert, key(r, seq))}
			}
		case name == "invalid":
			all := invalidPayloads()
			var reqs []request
			for _, rule := range messages.Rules {
				if q, ok := all[rule]; ok {
					q.kind = "invalid"
					reqs = append(reqs, q)
				}
			}
			s.next = func(r *rand.Rand, seq int64) request { return reqs[r.IntN(len(reqs))] }
		case strings.HasPrefix(name, "file:"):
			reqs, err := readPayloadFile(strings.TrimPrefix(name, "file:"), name)
			if err != nil {
				errs = append(errs, fmt.Errorf("--mix %s: %w", name, err))
				continue
			}
			s.next = func(r *rand.Rand, seq int64) request { return reqs[seq%int64(len(reqs))] }
		default:
			errs = append(errs, fmt.Errorf("--mix %q: want locust, insert, invalid or file:PATH", name))
			continue
		}
		m.sources = append(m.sources, s)
		m.total += weight
	}
	if len(errs) == 0 && len(m.sources) == 0 {
		errs = append(errs, errors.New("--mix is empty"))
	}
	return m, errors.Join(errs...)
}

// readPayloadFile reads JSON lines, one payload per line, sent in order
// and round again; blank lines are skipped.
func readPayloadFile(path, kind string) ([]request, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var reqs []request
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if len(reqs) == loadgenMaxFileLines {
			return nil, fmt.Errorf("more than %d payloads", loadgenMaxFileLines)
		}
		reqs = append(reqs, request{kind: kind, body: []byte(line)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(reqs) == 0 {
		return nil, errors.New("no payloads")
	}
	return reqs, nil
}

// recorder collects the results; every method is safe for concurrent use.
type recorder struct {
	mu        sync.Mutex
	hist      *hdrhistogram.Histogram // latency in µs, from the intended send time
	status    map[int]int64
	errKinds  map[string]int64
	kinds     map[string]int64
	answered  int64
	errors    int64
	non2xx    int64
	sent      int64
	late      int64
	bytesOut  int64
	bytesIn   int64
	e2eIDs    chan sampled
	e2eSample int64
	e2eTaken  int64 // samples handed over, at most e2eMaxSamples
	accepted  int64
	// out, when set, receives every result as a JSON line (--output);
	// outErr is its first write error.
	out    *json.Encoder
	outErr error
	// buckets counts answered requests per --buckets bound (report hist).
	buckets []int64
}

func newRecorder() *recorder {
	return &recorder{
		hist:   hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3),
		status: map[int]int64{}, errKinds: map[string]int64{}, kinds: map[string]int64{},
	}
}

// Result is one request's outcome: a line of the --output file.
type Result struct {
	// AtUS is the request's intended send time, in µs after the run's
	// start (its actual send time in the closed model).
	AtUS int64  `json:"at_us"`
	Kind string `json:"kind"` // the mix component it came from
	// Code is the HTTP status; 0 when the request got no answer.
	Code      int    `json:"code"`
	LatencyUS int64  `json:"latency_us,omitempty"` // from AtUS to the whole answer read; answered requests only
	Error     string `json:"error,omitempty"`      // refused, timeout, reset or other: no answer
	Late      bool   `json:"late,omitempty"`       // open model: sent over 1ms after AtUS
	BytesOut  int64  `json:"bytes_out"`
	BytesIn   int64  `json:"bytes_in"`
}

// record counts one result; id and sentAt are the payload id of a 200
// and when its request started, for --e2e.
func (rc *recorder) record(res Result, id string, sentAt time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.out != nil && rc.outErr == nil {
		rc.outErr = rc.out.Encode(res)
	}
	rc.kinds[res.Kind]++
	rc.bytesOut += res.BytesOut
	rc.bytesIn += res.BytesIn
	if res.Late {
		rc.late++
	}
	if res.Error != "" {
		rc.errors++
		rc.errKinds[res.Error]++
		return
	}
	rc.answered++
	rc.status[res.Code]++
	if res.Code < 200 || res.Code > 299 {
		rc.non2xx++
	}
	_ = rc.hist.RecordValue(min(max(res.LatencyUS, 1), rc.hist.HighestTrackableValue()))
	if res.Code == http.StatusOK && id != "" && rc.e2eIDs != nil {
		rc.accepted++
		if rc.accepted%rc.e2eSample == 0 && rc.e2eTaken < e2eMaxSamples {
			// The channel holds e2eMaxSamples, so this never blocks.
			rc.e2eTaken++
			rc.e2eIDs <- sampled{id: id, sentAt: sentAt}
		}
	}
}

// errorKind names a transport failure: refused, timeout, reset or other.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "reset"
	default:
		return "other"
	}
}

// newLoadClient is the HTTP client of the load and of the status API.
func newLoadClient(o Options) *http.Client {
	return &http.Client{
		Timeout: o.Timeout,
		Transport: &http.Transport{
			Proxy:               nil, // loopback load must not go through a proxy
			DialContext:         (&net.Dialer{Timeout: o.Timeout}).DialContext,
			MaxIdleConns:        o.Connections,
			MaxIdleConnsPerHost: o.Connections,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// runLoad sends the load and gathers the report; follow, when set, sees
// the sampled payloads during the load and follows them after it.
func runLoad(ctx context.Context, o Options, endpoint string, m mix, client *http.Client, follow *e2eFollower, out *json.Encoder, stderr io.Writer) (*Report, error) {
	rc := newRecorder()
	rc.out = out
	if follow != nil {
		rc.e2eIDs = make(chan sampled, e2eMaxSamples)
		rc.e2eSample = int64(o.E2ESample)
		follow.watch(rc.e2eIDs)
	}

	var seq atomic.Int64
	start := time.Now()
	send := func(r *rand.Rand, intended time.Time, late bool) {
		n := seq.Add(1) - 1
		q := m.pick(r, n)
		res := Result{AtUS: intended.Sub(start).Microseconds(), Kind: q.kind, Late: late}
		failed := func(err error) {
			res.Error = errorKind(err)
			rc.record(res, "", time.Time{})
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(string(q.body)))
		if err != nil {
			failed(err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		if o.Key != "" {
			req.Header.Set("Authorization", "Bearer "+o.Key)
		}
		for k, v := range q.header {
			req.Header.Set(k, v)
		}
		sentAt := time.Now()
		res.BytesOut = int64(len(q.body))
		resp, err := client.Do(req)
		if err != nil {
			failed(err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res.BytesIn = int64(len(body))
		if err != nil {
			failed(err)
			return
		}
		latency := time.Since(intended)
		var id string
		if rc.e2eIDs != nil && resp.StatusCode == http.StatusOK {
			var a struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(body, &a)
			id = a.ID
		}
		res.Code, res.LatencyUS = resp.StatusCode, latency.Microseconds()
		rc.record(res, id, sentAt)
	}

	var end time.Time
	if o.Duration > 0 {
		end = start.Add(o.Duration)
	}
	limit := int64(o.Requests)
	if limit == 0 {
		limit = loadgenMaxRequests
	}
	stopProgress := progress(stderr, rc, start)
	var wg sync.WaitGroup
	var intendedTotal int64
	var window time.Duration
	if o.Rate > 0 {
		// Open model: send i is due at start + i/rate, whatever happened
		// to the sends before it; at most --connections are in flight.
		period := time.Duration(float64(time.Second) / o.Rate)
		intendedTotal = min(limit, int64(o.Duration.Seconds()*o.Rate))
		slots := make(chan struct{}, o.Connections)
		r := rand.New(rand.NewPCG(o.Seed, 1))
		var last time.Time
	schedule:
		for i := int64(0); i < intendedTotal; i++ {
			intended := start.Add(time.Duration(i) * period)
			if d := time.Until(intended); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					break schedule
				}
			}
			select {
			case slots <- struct{}{}:
			case <-time.After(time.Until(end)):
				break schedule // the run ended while every slot was busy
			case <-ctx.Done():
				break schedule
			}
			now := time.Now()
			if !now.Before(end) {
				break
			}
			last = now
			rc.mu.Lock()
			rc.sent++
			rc.mu.Unlock()
			late := now.Sub(intended) > lateAfter
			wg.Add(1)
			rr := rand.New(rand.NewPCG(r.Uint64(), r.Uint64()))
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				send(rr, intended, late)
			}()
		}
		// The window is the intended one, unless sending ran longer, or
		// was interrupted: then it is what ran, and only the sends due by
		// then were intended (else Ctrl-C would show as dropped sends and
		// a low achieved rate).
		window = max(last.Sub(start), time.Duration(float64(intendedTotal)/o.Rate*float64(time.Second)))
		if ctx.Err() != nil {
			window = time.Since(start)
			intendedTotal = min(intendedTotal, int64(window/period)+1)
		}
	} else {
		// Closed model: each worker sends its next request when its last
		// one is answered; latency counts from the actual send.
		for w := 0; w < o.Connections; w++ {
			wg.Add(1)
			r := rand.New(rand.NewPCG(o.Seed, uint64(w)+1))
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					now := time.Now()
					if !end.IsZero() && !now.Before(end) {
						return
					}
					rc.mu.Lock()
					if rc.sent >= limit {
						rc.mu.Unlock()
						return
					}
					rc.sent++
					rc.mu.Unlock()
					send(r, now, false)
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if o.Rate == 0 {
		window = elapsed
	}
	stopProgress()

	rep := rc.report(o, endpoint, window, intendedTotal)
	if follow != nil {
		close(rc.e2eIDs)
		rep.E2E = follow.wait(ctx)
	}
	return rep, rc.outErr
}

// progress prints one line per second on stderr until stopped.
func progress(w io.Writer, rc *recorder, start time.Time) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastDone int64
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				rc.mu.Lock()
				total := rc.answered + rc.errors
				p99 := time.Duration(rc.hist.ValueAtQuantile(99)) * time.Microsecond
				errs, non2xx := rc.errors, rc.non2xx
				rc.mu.Unlock()
				fmt.Fprintf(w, "loadgen: %3.0fs  %6d req/s  p99 %-9s errors %d  non2xx %d\n",
					now.Sub(start).Seconds(), total-lastDone, p99, errs, non2xx)
				lastDone = total
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// Latencies are in microseconds.
type Latencies struct {
	Min    int64 `json:"min"`
	Mean   int64 `json:"mean"`
	P50    int64 `json:"p50"`
	P90    int64 `json:"p90"`
	P95    int64 `json:"p95"`
	P99    int64 `json:"p99"`
	P999   int64 `json:"p999"`
	Max    int64 `json:"max"`
	StdDev int64 `json:"stddev"`
}

func latenciesOf(h *hdrhistogram.Histogram) Latencies {
	return Latencies{Min: h.Min(), Mean: int64(math.Round(h.Mean())),
		P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P95: h.ValueAtQuantile(95), P99: h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9), Max: h.Max(), StdDev: int64(math.Round(h.StdDev()))}
}

// Report is the end-of-run report; its JSON is --json's output.
type Report struct {
	Target      string `json:"target"`
	Model       string `json:"model"` // open or closed
	Connections int    `json:"connections"`
	Mix         string `json:"mix"`
	Unique      bool   `json:"unique"`
	RandomSeed  uint64 `json:"random_seed"` // --seed: what drew the mix's payloads
	// Setup says what was applied before the load for the mix (the
	// locust mix's table), and whether it was seen applied.
	Setup          string           `json:"setup,omitempty"`
	DurationS      float64          `json:"duration_s"` // the send window
	IntendedRate   float64          `json:"intended_rate"`
	AchievedRate   float64          `json:"achieved_rate"`
	Intended       int64            `json:"intended"` // open model: sends due in the window
	Sent           int64            `json:"sent"`
	Dropped        int64            `json:"dropped"` // open model: due but never sent
	Late           int64            `json:"late"`    // open model: started over 1ms after their intended time
	Answered       int64            `json:"answered"`
	Errors         int64            `json:"errors"`
	Non2xx         int64            `json:"non2xx"`
	Success        float64          `json:"success"`    // 2xx answers / sent
	ErrorRate      float64          `json:"error_rate"` // transport errors / sent
	Status         map[string]int64 `json:"status"`
	ErrorsByKind   map[string]int64 `json:"errors_by_kind"`
	Kinds          map[string]int64 `json:"kinds"`
	BytesSent      int64            `json:"bytes_sent"`
	BytesReceived  int64            `json:"bytes_received"`
	LatencyUS      Latencies        `json:"latency_us"`
	E2E            *E2EReport       `json:"e2e,omitempty"`
	LateThresholdS float64          `json:"late_threshold_s"`
}

func (rc *recorder) report(o Options, endpoint string, window time.Duration, intended int64) *Report {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := &Report{
		Target: endpoint, Model: "closed", Connections: o.Connections, Mix: o.Mix, Unique: o.Unique, RandomSeed: o.Seed,
		DurationS: window.Seconds(), Sent: rc.sent, Answered: rc.answered, Errors: rc.errors, Non2xx: rc.non2xx,
		Status: map[string]int64{}, ErrorsByKind: map[string]int64{"refused": 0, "timeout": 0, "reset": 0, "other": 0},
		Kinds: map[string]int64{}, BytesSent: rc.bytesOut, BytesReceived: rc.bytesIn, LatencyUS: latenciesOf(rc.hist),
		LateThresholdS: lateAfter.Seconds(),
	}
	if o.Rate > 0 {
		r.Model, r.IntendedRate, r.Intended, r.Dropped, r.Late = "open", o.Rate, intended, intended-rc.sent, rc.late
	}
	if window > 0 {
		r.AchievedRate = float64(rc.sent) / window.Seconds()
	}
	if rc.sent > 0 {
		r.Success = float64(rc.answered-rc.non2xx) / float64(rc.sent)
		r.ErrorRate = float64(rc.errors) / float64(rc.sent)
	}
	for c, n := range rc.status {
		r.Status[strconv.Itoa(c)] = n
	}
	for k, n := range rc.errKinds {
		r.ErrorsByKind[k] = n
	}
	for k, n := range rc.kinds {
		r.Kinds[k] = n
	}
	return r
}

func us(v int64) time.Duration { return time.Duration(v) * time.Microsecond }

func (r *Report) writeText(w io.Writer) {
	fmt.Fprintf(w, "target      %s\n", r.Target)
	if r.Model == "open" {
		fmt.Fprintf(w, "model       open: %g/s for %.1fs, at most %d in flight\n", r.IntendedRate, r.DurationS, r.Connections)
	} else {
		fmt.Fprintf(w, "model       closed: %d connections, %.1fs\n", r.Connections, r.DurationS)
	}
	mixText := r.Mix
	if r.Unique {
		mixText += " (unique)"
	}
	fmt.Fprintf(w, "mix         %s, random seed %d; sent by component:%s\n", mixText, r.RandomSeed, countsText(r.Kinds))
	if r.Setup != "" {
		fmt.Fprintf(w, "setup       %s\n", r.Setup)
	}
	fmt.Fprintf(w, "requests    %d sent, %d answered, %d errors\n", r.Sent, r.Answered, r.Errors)
	fmt.Fprintf(w, "success     %.2f%% (2xx of sent); error rate %.2f%% (no answer)\n", 100*r.Success, 100*r.ErrorRate)
	if r.Model == "open" {
		fmt.Fprintf(w, "rate        %.1f/s achieved, %g/s intended; %d of %d due sends dropped, %d late (>%s)\n",
			r.AchievedRate, r.IntendedRate, r.Dropped, r.Intended, r.Late, lateAfter)
	} else {
		fmt.Fprintf(w, "rate        %.1f/s achieved\n", r.AchievedRate)
	}
	l := r.LatencyUS
	fmt.Fprintf(w, "latency     min %s  mean %s  p50 %s  p90 %s  p95 %s  p99 %s  p99.9 %s  max %s  stddev %s\n",
		us(l.Min), us(l.Mean), us(l.P50), us(l.P90), us(l.P95), us(l.P99), us(l.P999), us(l.Max), us(l.StdDev))
	fmt.Fprintf(w, "status     %s\n", countsText(r.Status))
	e := r.ErrorsByKind
	fmt.Fprintf(w, "errors      refused %d  timeout %d  reset %d  other %d\n", e["refused"], e["timeout"], e["reset"], e["other"])
	fmt.Fprintf(w, "bytes       %d sent, %d received (bodies)\n", r.BytesSent, r.BytesReceived)
	if r.E2E != nil {
		r.E2E.writeText(w)
	}
}

func countsText(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s %d", k, m[k])
	}
	return b.String()
}

// failCond is one --fail-if condition: NAME>VALUE or NAME<VALUE.
type failCond struct {
	text   string
	metric string
	below  bool    // NAME<VALUE: crossed when the value is below the limit
	limit  float64 // microseconds for durations, a count or a ratio otherwise
}

var durationMetrics = map[string]func(Latencies) int64{
	"min": func(l Latencies) int64 { return l.Min }, "mean": func(l Latencies) int64 { return l.Mean },
	"p50": func(l Latencies) int64 { return l.P50 }, "p90": func(l Latencies) int64 { return l.P90 },
	"p95": func(l Latencies) int64 { return l.P95 }, "p99": func(l Latencies) int64 { return l.P99 },
	"p999": func(l Latencies) int64 { return l.P999 }, "max": func(l Latencies) int64 { return l.Max },
	"stddev": func(l Latencies) int64 { return l.StdDev },
}

var countMetrics = map[string]func(*Report) int64{
	"errors": func(r *Report) int64 { return r.Errors }, "non2xx": func(r *Report) int64 { return r.Non2xx },
}

var ratioMetrics = map[string]func(*Report) float64{
	"success": func(r *Report) float64 { return r.Success }, "error_rate": func(r *Report) float64 { return r.ErrorRate },
}

const failIfNames = "min, mean, p50, p90, p95, p99, p999, max, stddev, errors, non2xx, success or error_rate"

// parseFailIf reads --fail-if; every malformed condition is reported.
func parseFailIf(spec string) ([]failCond, error) {
	var conds []failCond
	var errs []error
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		i := strings.IndexAny(part, "<>")
		if i < 0 || strings.HasPrefix(part[i+1:], "=") {
			errs = append(errs, fmt.Errorf("--fail-if %q: want NAME>VALUE or NAME<VALUE", part))
			continue
		}
		name, value := strings.TrimSpace(part[:i]), strings.TrimSpace(part[i+1:])
		c := failCond{text: part, metric: name, below: part[i] == '<'}
		_, isDur := durationMetrics[name]
		_, isCount := countMetrics[name]
		_, isRatio := ratioMetrics[name]
		switch {
		case isDur:
			d, err := time.ParseDuration(value)
			if err != nil || d < 0 {
				errs = append(errs, fmt.Errorf("--fail-if %q: %q is not a duration like 50ms", part, value))
				continue
			}
			c.limit = float64(d.Microseconds())
		case isCount:
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				errs = append(errs, fmt.Errorf("--fail-if %q: %q is not a count", part, value))
				continue
			}
			c.limit = float64(n)
		case isRatio:
			f, err := parseRatio(value)
			if err != nil {
				errs = append(errs, fmt.Errorf("--fail-if %q: %q is not a ratio like 0.99 or 99%%", part, value))
				continue
			}
			c.limit = f
		default:
			errs = append(errs, fmt.Errorf("--fail-if %q: unknown %q (want %s)", part, name, failIfNames))
			continue
		}
		conds = append(conds, c)
	}
	return conds, errors.Join(errs...)
}

// parseRatio reads 0.99 or 99%.
func parseRatio(s string) (float64, error) {
	scale := 1.0
	if t, ok := strings.CutSuffix(s, "%"); ok {
		s, scale = t, 100
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f/scale > 1 || math.IsNaN(f) {
		return 0, errors.New("not a ratio")
	}
	return f / scale, nil
}

// check reports the measured value and whether it crossed the threshold.
func (c failCond) check(r *Report) (string, bool) {
	var v float64
	var text string
	switch {
	case durationMetrics[c.metric] != nil:
		d := durationMetrics[c.metric](r.LatencyUS)
		v, text = float64(d), us(d).String()
	case countMetrics[c.metric] != nil:
		n := countMetrics[c.metric](r)
		v, text = float64(n), strconv.FormatInt(n, 10)
	default:
		v = ratioMetrics[c.metric](r)
		text = strconv.FormatFloat(v, 'f', 4, 64)
	}
	if c.below {
		return text, v < c.limit
	}
	return text, v > c.limit
}
