package loadgen

// loadgen --e2e: how long accepted payloads take to be applied, for a
// sample of them, read from the per-payload status API or, where a service
// does not serve it, from the applied topic.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-googlecloud/v2/pkg/googlecloud"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gatekeeper/gatekeeper/messages"
)

// Topics is where the service publishes what became of each payload, as
// serve's settings name them, for --e2e to read through subscriptions of
// its own.
type Topics struct {
	Project string
	Applied string // the applied topic (APPLIED_TOPIC_ID)
	Poison  string // the poison topic (POISON_TOPIC_ID)
	// Where names the Pub/Sub, for errors: "Pub/Sub emulator at
	// 127.0.0.1:8085 (project p)".
	Where string
	// Dial opens a client on that Pub/Sub, or says why it cannot.
	Dial func(context.Context) (*pubsub.Client, error)
}

// e2eVia is --e2e-via: where applied payloads are learnt from.
type e2eVia string

const (
	e2eAuto   e2eVia = "auto"   // the status API when the service serves it and it sees what is applied, else the applied topic
	e2eStatus e2eVia = "status" // GET /api/activities/{id}
	e2eTopic  e2eVia = "topic"  // the applied topic, through a subscription of loadgen's own
)

// Where a followed payload's latency starts.
const (
	fromReceived = "received_at" // the service's received time, from the status API
	fromSent     = "sent_at"     // loadgen's send time: the ingest answer carries no received time
)

const (
	// e2eProbeTimeout bounds the status API probe and each Pub/Sub call made
	// before and after the load.
	e2eProbeTimeout = 10 * time.Second
	// witnessRecheck bounds auto mode's second look through the status
	// API, after the applied topic saw the samples applied.
	witnessRecheck = 2 * time.Second
	// e2eSubscriptionTTL makes Pub/Sub delete a subscription loadgen could
	// not (killed with SIGKILL): a day is the shortest Pub/Sub allows.
	e2eSubscriptionTTL = 24 * time.Hour
)

// sampled is one accepted payload --e2e follows.
type sampled struct {
	id     string
	sentAt time.Time // when its request started
}

// E2EReport is what --e2e saw.
type E2EReport struct {
	Via         string `json:"via"`                    // status or topic
	Topic       string `json:"topic,omitempty"`        // topic: the applied topic read
	PoisonTopic string `json:"poison_topic,omitempty"` // topic: the poison topic read, if it exists
	// LatencyFrom is received_at (the status API's) or sent_at (loadgen's
	// own send time, in topic mode).
	LatencyFrom string    `json:"latency_from"`
	Sample      int       `json:"sample"` // 1 in this many accepted payloads
	Followed    int64     `json:"followed"`
	Applied     int64     `json:"applied"`
	Poisoned    int64     `json:"poisoned"`
	NotApplied  int64     `json:"not_applied"` // neither applied nor poisoned within timeout_s
	TimeoutS    float64   `json:"timeout_s"`
	LatencyUS   Latencies `json:"latency_us"` // latency_from → applied_at of the applied ones
	// DuplicateEvents (topic) are applied events with duplicate: true for
	// followed payloads: redeliveries, not counted again.
	DuplicateEvents int64 `json:"duplicate_events"`
	// Unmeasured (topic) were applied, but only a duplicate event said so,
	// whose applied_at is the redelivery's: they have no latency.
	Unmeasured int64 `json:"unmeasured"`
}

func (x *E2EReport) writeText(w io.Writer) {
	via := "the status API"
	if x.Via == string(e2eTopic) {
		via = "the applied topic " + x.Topic
	}
	fmt.Fprintf(w, "e2e         via %s: %d followed: %d applied, %d poisoned, %d not applied within %s\n",
		via, x.Followed, x.Applied, x.Poisoned, x.NotApplied, time.Duration(x.TimeoutS*float64(time.Second)))
	if x.Via == string(e2eTopic) {
		if x.PoisonTopic == "" {
			fmt.Fprintf(w, "e2e         no poison topic to read: poisoned payloads count as not applied\n")
		}
		if x.DuplicateEvents > 0 || x.Unmeasured > 0 {
			fmt.Fprintf(w, "e2e         %d duplicate events not counted again; %d applied without a latency (only a duplicate event)\n",
				x.DuplicateEvents, x.Unmeasured)
		}
	}
	if x.Applied > x.Unmeasured {
		source := "received → applied, from the status API"
		if x.LatencyFrom == fromSent {
			source = "send → applied event: from loadgen's send time, as the ingest answer carries no received time"
		}
		fmt.Fprintf(w, "e2e latency p50 %s  p99 %s  max %s (%s)\n", us(x.LatencyUS.P50), us(x.LatencyUS.P99), us(x.LatencyUS.Max), source)
	}
}

// e2eFollower follows the sampled payloads one way, chosen before the load.
type e2eFollower struct {
	o      Options
	via    e2eVia // status or topic, never auto
	client *http.Client
	base   string // the service's base URL
	ids    <-chan sampled
	topic  *topicFollower // topic mode, and the witness
	// witness: --e2e-via auto found the status API, and reads the applied
	// topic too, to learn whether the status API ever says "applied".
	witness bool
	// noWitness is why auto mode could not read the applied topic.
	noWitness string
	stderr    io.Writer
}

// startE2E decides how --e2e follows payloads and, in topic mode,
// subscribes before anything is sent, since a topic keeps nothing for a
// subscription created after the publish.
//
// In auto mode, a status API that is there is not enough: it says
// "applied" only where the process that serves it reads the warehouse the
// apply stage writes, which a process running the ingest stage alone (the
// stages apart) need not do; it then says "accepted" forever. Nothing in
// its answers tells before the load, so auto mode also reads the applied
// topic where it can, and decides after the load (see witnessed).
func startE2E(ctx context.Context, o Options, topics Topics, client *http.Client, base string, stderr io.Writer) (*e2eFollower, error) {
	f := &e2eFollower{o: o, via: o.E2EVia, client: client, base: base, stderr: stderr}
	var absent string
	if f.via != e2eTopic {
		there, why, err := probeStatusAPI(ctx, client, base, o.Key)
		if err != nil {
			return nil, fmt.Errorf("cannot tell whether %s serves the status API: %w (--e2e-via topic reads the applied topic instead)", base, err)
		}
		switch {
		case there && f.via == e2eStatus:
			return f, nil
		case there:
			f.via = e2eStatus
			if tf, err := newTopicFollower(ctx, topics, o); err == nil {
				f.topic, f.witness = tf, true
			} else {
				f.noWitness = err.Error()
			}
			return f, nil
		case f.via == e2eStatus:
			return nil, fmt.Errorf("--e2e-via status, but %s does not serve the status API: %s; use --e2e-via topic (or auto)", base, why)
		}
		f.via, absent = e2eTopic, why
	}
	tf, err := newTopicFollower(ctx, topics, o)
	if err != nil {
		if absent != "" {
			return nil, fmt.Errorf("%s does not serve the status API (%s), and the applied topic cannot be read either: %w", base, absent, err)
		}
		return nil, err
	}
	f.topic = tf
	return f, nil
}

// watch hands over the sampled payloads as they are accepted; the channel
// is closed when the load ends.
func (f *e2eFollower) watch(ids <-chan sampled) {
	f.ids = ids
	if f.topic != nil {
		f.topic.watch(ids)
	}
}

// wait follows the sampled payloads for at most --e2e-timeout after the
// load, and reports.
func (f *e2eFollower) wait(ctx context.Context) *E2EReport {
	switch {
	case f.witness:
		return f.witnessed(ctx)
	case f.topic != nil:
		return f.topic.wait(ctx, f.o)
	}
	rep := followApplied(ctx, f.client, f.base, f.o, f.ids)
	if rep.Followed > 0 && rep.Applied == 0 && rep.Poisoned == 0 && f.via == e2eStatus {
		// Either nothing was applied in time, or this status API cannot
		// see it; without the applied topic loadgen cannot tell which.
		why := "--e2e-via topic reads the applied topic"
		if f.noWitness != "" {
			why += ", which could not be read here: " + f.noWitness
		}
		fmt.Fprintf(f.stderr, "gatekeeper loadgen: --e2e: the status API of %s never said applied for the %d followed payloads. "+
			"If that process runs the ingest stage alone, it reads another warehouse than the apply stage's, and never will: %s\n",
			f.base, rep.Followed, why)
	}
	return rep
}

// witnessed is auto mode's wait when both ways were open: the applied
// topic follows every sample to the end, then the status API is asked
// about payloads the topic saw applied. Where it says "applied" too, the
// report is the status API's (latency from the service's received time,
// as in a single process); where it does not, the report is the topic's,
// and stderr says why.
func (f *e2eFollower) witnessed(ctx context.Context) *E2EReport {
	rep := f.topic.wait(ctx, f.o)
	for _, id := range f.topic.appliedIDs(3) {
		st, err := statusSoon(ctx, f.client, f.base, id, f.o.Key)
		if err != nil || st.Status != messages.StatusApplied {
			said := st.Status
			if err != nil {
				said = "nothing (" + err.Error() + ")"
			}
			fmt.Fprintf(f.stderr, "gatekeeper loadgen: --e2e: the status API of %s says %s for %s, which the applied topic %s shows applied: "+
				"the process that serves it does not read the warehouse the apply stage writes (does it run the ingest stage alone?); "+
				"the applied topic's count and latency are reported\n", f.base, said, id, f.topic.topic)
			return rep
		}
	}
	if rep.Applied == 0 {
		return rep // nothing the status API could be checked against
	}
	// The status API sees the apply stage's warehouse: its report, from
	// the service's received time. The topic waited out the stragglers
	// already, so this pass takes moments.
	ids := make(chan sampled, rep.Followed)
	for _, s := range f.topic.samples() {
		ids <- s
	}
	close(ids)
	o := f.o
	o.E2ETimeout = min(o.E2ETimeout, witnessRecheck)
	srep := followApplied(ctx, f.client, f.base, o, ids)
	srep.TimeoutS = f.o.E2ETimeout.Seconds()
	return srep
}

// statusSoon asks the status API about a payload the applied topic saw
// applied, until it says applied or witnessRecheck has passed: the ledger
// holds it before the event is published, but a reply may cross a commit.
func statusSoon(ctx context.Context, client *http.Client, base, id, key string) (statusAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, witnessRecheck)
	defer cancel()
	for {
		st, err := pollStatus(ctx, client, base, id, key)
		if err == nil && st.Status == messages.StatusApplied {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, err
		case <-time.After(e2ePoll * 10):
		}
	}
}

// close deletes what topic mode created; it runs on every way out,
// Ctrl-C included.
func (f *e2eFollower) close(stderr io.Writer) {
	if f.topic != nil {
		f.topic.close(stderr)
	}
}

// probeStatusAPI asks the status API about an id nobody posted.
func probeStatusAPI(ctx context.Context, client *http.Client, base, key string) (there bool, why string, err error) {
	ctx, cancel := context.WithTimeout(ctx, e2eProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/activities/"+watermill.NewUUID(), nil)
	if err != nil {
		return false, "", err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return false, "", err
	}
	return statusAPIAnswered(resp.StatusCode, body)
}

// statusAPIAnswered decides from the answer to GET /api/activities/<an id
// nobody posted> whether the status API is there. It is when the answer
// is a payload status ("unknown", with 404). It is not when the answer is
// 404 or 405 without one: a service whose process runs no ingest stage
// (only that stage serves the API on the ingestion port) or a build older
// than the API. Anything else tells nothing, and is an error.
func statusAPIAnswered(code int, body []byte) (there bool, why string, err error) {
	var p struct {
		Status string `json:"status"`
	}
	isStatus := json.Unmarshal(body, &p) == nil && p.Status != ""
	switch {
	case isStatus && (code == http.StatusNotFound && p.Status == messages.StatusUnknown || code == http.StatusOK):
		return true, "", nil
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		return false, fmt.Sprintf("GET /api/activities/ID answered %d without a payload status", code), nil
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return false, "", fmt.Errorf("GET /api/activities/ID answered %d: pass a key of BACKENDS_FILE with --key or GATEKEEPER_KEY", code)
	default:
		return false, "", fmt.Errorf("GET /api/activities/ID answered %d: %s", code, snippet(body))
	}
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// followApplied polls the status API for each sampled id until it is
// applied or poisoned, at most o.E2ETimeout after the load ended.
func followApplied(ctx context.Context, client *http.Client, base string, o Options, ids <-chan sampled) *E2EReport {
	rep := &E2EReport{Via: string(e2eStatus), LatencyFrom: fromReceived, Sample: o.E2ESample, TimeoutS: o.E2ETimeout.Seconds()}
	hist := newE2EHistogram()
	ctx, cancel := context.WithTimeout(ctx, o.E2ETimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32) // polls in flight
	for s := range ids {
		rep.Followed++
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				sem <- struct{}{}
				st, err := pollStatus(ctx, client, base, s.id, o.Key)
				<-sem
				if err == nil && st.Status == messages.StatusApplied && st.ReceivedAt != nil && st.AppliedAt != nil {
					mu.Lock()
					rep.Applied++
					_ = hist.RecordValue(max(1, st.AppliedAt.Sub(*st.ReceivedAt).Microseconds()))
					mu.Unlock()
					return
				}
				if err == nil && (st.Status == messages.StatusPoisoned || st.Status == messages.StatusPurged) {
					mu.Lock()
					rep.Poisoned++
					mu.Unlock()
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(e2ePoll):
				}
			}
			mu.Lock()
			rep.NotApplied++
			mu.Unlock()
		}()
	}
	wg.Wait()
	rep.LatencyUS = latenciesOf(hist)
	return rep
}

func newE2EHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)
}

type statusAnswer struct {
	Status     string     `json:"status"`
	ReceivedAt *time.Time `json:"received_at"`
	AppliedAt  *time.Time `json:"applied_at"`
}

func pollStatus(ctx context.Context, client *http.Client, base, id, key string) (statusAnswer, error) {
	var st statusAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/activities/"+url.PathEscape(id), nil)
	if err != nil {
		return st, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
	return st, err
}

// topicFollower reads the applied topic, and the poison topic when there
// is one, through subscriptions of its own, created before the load and
// deleted after it: the service's subscriptions are left alone, and every
// event published during the load reaches loadgen.
type topicFollower struct {
	client  *pubsub.Client
	project string
	topic   string   // the applied topic
	poison  string   // the poison topic; "" when it does not exist
	subs    []string // created subscriptions, deleted by close
	// keepUnsampled is how long an event for a payload not (yet) sampled
	// is kept: its 200 answer, which samples it, may come after the event
	// (the apply stage can be faster than the answer), but not later than
	// the request timeout after the send.
	keepUnsampled time.Duration
	stop          context.CancelFunc
	receiving     sync.WaitGroup
	registered    chan struct{} // closed when every sample is registered

	mu         sync.Mutex
	seen       map[string]*topicEvents // by payload id, sampled or not
	followed   map[string]time.Time    // sampled payload id → sent at
	settled    int                     // followed payloads with an applied or poisoned event
	changed    chan struct{}           // signalled when settled grows
	lastPruned time.Time
	duplicates int64 // duplicate events of followed payloads
}

// topicEvents is what the topics said about one payload.
type topicEvents struct {
	firstSeen time.Time // when loadgen received the first event
	appliedAt time.Time // of the first applied event that is not a duplicate
	applied   bool      // any applied event, duplicate or not
	poisoned  bool
}

func (e *topicEvents) settled() bool { return e.applied || e.poisoned }

func newTopicFollower(ctx context.Context, topics Topics, o Options) (_ *topicFollower, err error) {
	if topics.Dial == nil {
		return nil, errors.New("no Pub/Sub to read the applied topic from")
	}
	where := topics.Where
	client, err := topics.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	f := &topicFollower{
		client: client, project: topics.Project, topic: topics.Applied,
		keepUnsampled: o.Timeout + 5*time.Second, registered: make(chan struct{}),
		seen: map[string]*topicEvents{}, followed: map[string]time.Time{}, changed: make(chan struct{}, 1),
	}
	defer func() {
		if err != nil {
			f.close(io.Discard)
		}
	}()
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "gatekeeper-loadgen-" + hex.EncodeToString(suffix)
	if err := f.subscribe(ctx, topics.Applied, name+"-applied"); err != nil {
		if grpcstatus.Code(err) == codes.NotFound {
			return nil, fmt.Errorf("the applied topic %s does not exist on the %s: set APPLIED_TOPIC_ID (or TOPIC_ID) and PROJECT_ID as the service has them: %w",
				topics.Applied, where, err)
		}
		return nil, fmt.Errorf("cannot subscribe to the applied topic %s on the %s: %w; set PUBSUB_EMULATOR_HOST (or PUBSUB_EMBEDDED_ADDR for a service's embedded Pub/Sub, "+
			"or GOOGLE_APPLICATION_CREDENTIALS and PROJECT_ID for Google) to the Pub/Sub the service uses", topics.Applied, where, err)
	}
	switch err := f.subscribe(ctx, topics.Poison, name+"-poison"); {
	case err == nil:
		f.poison = topics.Poison
	case grpcstatus.Code(err) != codes.NotFound:
		return nil, fmt.Errorf("cannot subscribe to the poison topic %s on the %s: %w", topics.Poison, where, err)
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	f.stop = stop
	for i, sub := range f.subs {
		poisoned := i == 1
		f.receiving.Go(func() { f.receive(rctx, sub, poisoned) })
	}
	return f, nil
}

func (f *topicFollower) subscribe(ctx context.Context, topic, subscription string) error {
	ctx, cancel := context.WithTimeout(ctx, e2eProbeTimeout)
	defer cancel()
	_, err := f.client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:               "projects/" + f.project + "/subscriptions/" + subscription,
		Topic:              "projects/" + f.project + "/topics/" + topic,
		AckDeadlineSeconds: 20,
		ExpirationPolicy:   &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(e2eSubscriptionTTL)},
	}, gax.WithRetry(func() gax.Retryer { return nil })) // so that "connection refused" is said at once, not a deadline later
	if err == nil {
		f.subs = append(f.subs, subscription)
	}
	return err
}

func (f *topicFollower) receive(ctx context.Context, subscription string, poisoned bool) {
	sub := f.client.Subscriber(subscription)
	sub.ReceiveSettings.NumGoroutines = 2
	sub.ReceiveSettings.MaxOutstandingMessages = 1000
	for ctx.Err() == nil {
		err := sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			id := m.Attributes[googlecloud.UUIDHeaderKey]
			var ev messages.AppliedEvent
			if !poisoned && json.Unmarshal(m.Data, &ev) == nil && ev.PayloadID != "" {
				id = ev.PayloadID
			}
			if id != "" {
				f.observe(id, poisoned, ev, time.Now())
			}
		})
		if err != nil && ctx.Err() == nil {
			select { // the emulator may be restarting; try again
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// observe records one event: for a payload sampled already, or kept a
// while for one whose 200 answer is still on its way.
func (f *topicFollower) observe(id string, poisoned bool, ev messages.AppliedEvent, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.seen[id]
	if e == nil {
		e = &topicEvents{firstSeen: now}
		f.seen[id] = e
	}
	_, followed := f.followed[id]
	was := e.settled()
	switch {
	case poisoned:
		e.poisoned = true
	case ev.Duplicate:
		e.applied = true
		if followed {
			f.duplicates++
		}
	default:
		e.applied = true
		if e.appliedAt.IsZero() {
			e.appliedAt = ev.AppliedAt
		}
	}
	if followed && !was && e.settled() {
		f.settled++
		f.signal()
	}
	if now.Sub(f.lastPruned) > time.Second {
		f.lastPruned = now
		for k, e := range f.seen {
			if _, ok := f.followed[k]; !ok && now.Sub(e.firstSeen) > f.keepUnsampled {
				delete(f.seen, k)
			}
		}
	}
}

func (f *topicFollower) signal() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// appliedIDs returns at most n sampled payloads with an applied event
// that is not a duplicate.
func (f *topicFollower) appliedIDs(n int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.followed {
		if e := f.seen[id]; e != nil && !e.appliedAt.IsZero() && len(ids) < n {
			ids = append(ids, id)
		}
	}
	return ids
}

// samples returns every sampled payload.
func (f *topicFollower) samples() []sampled {
	f.mu.Lock()
	defer f.mu.Unlock()
	ss := make([]sampled, 0, len(f.followed))
	for id, sentAt := range f.followed {
		ss = append(ss, sampled{id: id, sentAt: sentAt})
	}
	return ss
}

// watch registers the samples as the load accepts them.
func (f *topicFollower) watch(ids <-chan sampled) {
	go func() {
		defer close(f.registered)
		for s := range ids {
			f.mu.Lock()
			f.followed[s.id] = s.sentAt
			if e := f.seen[s.id]; e != nil && e.settled() {
				f.settled++
			}
			f.mu.Unlock()
		}
		f.signal()
	}()
}

// wait returns when every sampled payload was applied or poisoned, or
// o.E2ETimeout after the load, or on ctx's end.
func (f *topicFollower) wait(ctx context.Context, o Options) *E2EReport {
	<-f.registered // the load is over: the rest of the samples are in the channel's buffer
	deadline := time.NewTimer(o.E2ETimeout)
	defer deadline.Stop()
follow:
	for {
		f.mu.Lock()
		done := f.settled == len(f.followed)
		f.mu.Unlock()
		if done {
			break
		}
		select {
		case <-f.changed:
		case <-deadline.C:
			break follow
		case <-ctx.Done():
			break follow
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rep := &E2EReport{Via: string(e2eTopic), Topic: f.topic, PoisonTopic: f.poison, LatencyFrom: fromSent,
		Sample: o.E2ESample, TimeoutS: o.E2ETimeout.Seconds(), Followed: int64(len(f.followed)), DuplicateEvents: f.duplicates}
	hist := newE2EHistogram()
	for id, sentAt := range f.followed {
		e := f.seen[id]
		switch {
		case e == nil || !e.settled():
			rep.NotApplied++
		case !e.applied:
			rep.Poisoned++
		case e.appliedAt.IsZero():
			rep.Applied++
			rep.Unmeasured++
		default:
			rep.Applied++
			_ = hist.RecordValue(min(max(1, e.appliedAt.Sub(sentAt).Microseconds()), hist.HighestTrackableValue()))
		}
	}
	rep.LatencyUS = latenciesOf(hist)
	return rep
}

// close stops receiving and deletes the subscriptions; one it cannot
// delete is named on stderr (Pub/Sub deletes it after a day unused).
func (f *topicFollower) close(stderr io.Writer) {
	if f.stop != nil {
		f.stop()
		// The Pub/Sub client's Receive can hang on its way out while the
		// server is unreachable (the service's outbox follower meets the same).
		done := make(chan struct{})
		go func() { f.receiving.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	var errs []error
	for _, sub := range f.subs {
		ctx, cancel := context.WithTimeout(context.Background(), e2eProbeTimeout)
		err := f.client.SubscriptionAdminClient.DeleteSubscription(ctx, &pubsubpb.DeleteSubscriptionRequest{
			Subscription: "projects/" + f.project + "/subscriptions/" + sub,
		})
		cancel()
		if err != nil && grpcstatus.Code(err) != codes.NotFound {
			errs = append(errs, fmt.Errorf("subscription %s: %w", sub, err))
		}
	}
	f.subs = nil
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "gatekeeper loadgen: could not delete what --e2e created (Pub/Sub deletes it after %s unused): %v\n", e2eSubscriptionTTL, err)
	}
	_ = f.client.Close()
}
