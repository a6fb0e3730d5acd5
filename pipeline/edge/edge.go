// Package edge is the HTTP side of the ingestion stage: it turns a request
// into a message for the gate and the gate's verdict into the replaced
// service's JSON answer, with the status the error's class calls for.
package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/condition"
)

// Edge is the HTTP side of the ingestion stage. The watermill-http
// subscriber turns a request into a message and answers with a bare status
// code once the router acks or nacks it; the Watermill handler stays the
// validation step. Edge wraps that exchange to give clients the replaced
// service's JSON body and the status the error's class calls for:
//
//   - Middleware (on the chi router handed to the subscriber) checks the
//     Content-Type, opens an exchange, holds back the subscriber's bare
//     status, and renders the response when the subscriber returns;
//   - Unmarshal (the subscriber's UnmarshalMessageFunc) reads the bounded
//     body into a message and registers the exchange under its UUID, the
//     payload id;
//   - VerdictMiddleware (a router middleware) records the handler's result on the
//     exchange before the message is acked.
//
// The registry is needed because the subscriber gives messages a context of
// its own, not the request's.
type Edge struct {
	cfg    Config
	now    func() time.Time
	logger *slog.Logger

	pending sync.Map // payload id → *exchange
	keys    *keyRecord
	// unavailable logs the 503s by cause: once when a cause starts, a count
	// per LogEvery, once when requests are accepted again.
	unavailable *condition.Group
	claims      sync.Map // payload id → *keyEntry, until its request's verdict
}

// Config configures an Edge.
type Config struct {
	// MaxBodyBytes is the largest accepted request body; a larger one gets
	// 413. Optional, default 1 MiB.
	MaxBodyBytes int64
	// VerdictWait is how long the edge still waits for what became of a
	// payload whose client left before its answer, so that the log and the
	// metrics say what happened to it. Make it longer than the gate's
	// publish can take. Optional, default 15s.
	VerdictWait time.Duration
	// IdempotencyTTL is how long this process remembers an accepted
	// Idempotency-Key, to answer its retries 200 (replayed) or 422 without
	// publishing. Past it, or after a restart, the ledger still makes a
	// retry a duplicate. Optional, default 24h.
	IdempotencyTTL time.Duration
	// IdempotencyMaxKeys bounds the keys remembered; the oldest are
	// forgotten first. Optional, default 100000.
	IdempotencyMaxKeys int
	// OnVerdict, when set, sees the verdict on every request, once: nil for
	// accepted, an error otherwise (RulesOf names the rules a rejection
	// broke), with the request's message, or, for a request refused before
	// it became one (key, quota, Content-Type, size), a message without id
	// or payload whose only metadata is the backend. Optional.
	OnVerdict func(msg *message.Message, err error)
	// Cause names what a 503 is for ("outbox", "publish", "shed"...), so
	// that each distinct cause is logged as one condition instead of a
	// line per request. Optional: without it, or for "", the edge names
	// its own causes and calls the rest "unavailable".
	Cause func(err error) string
	// LogEvery is the least time between two lines that count the 503s of
	// one cause. Optional, default 1m.
	LogEvery time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.VerdictWait == 0 {
		c.VerdictWait = 15 * time.Second
	}
	if c.IdempotencyTTL == 0 {
		c.IdempotencyTTL = 24 * time.Hour
	}
	if c.IdempotencyMaxKeys == 0 {
		c.IdempotencyMaxKeys = 100_000
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("edge config: MaxBodyBytes must not be negative"))
	}
	if c.VerdictWait < 0 {
		errs = append(errs, errors.New("edge config: VerdictWait must not be negative"))
	}
	if c.IdempotencyTTL < 0 {
		errs = append(errs, errors.New("edge config: IdempotencyTTL must not be negative"))
	}
	if c.IdempotencyMaxKeys < 0 {
		errs = append(errs, errors.New("edge config: IdempotencyMaxKeys must not be negative"))
	}
	if c.LogEvery < 0 {
		errs = append(errs, errors.New("edge config: LogEvery must not be negative"))
	}
	return errors.Join(errs...)
}

type exchangeKey struct{}

// exchange is one request's way through the stage.
type exchange struct {
	mu      sync.Mutex
	id      string
	body    []byte
	readErr error
	decided bool
	err     error
	// done is closed when the handler reports its result.
	done chan struct{}
	// key is the request's Idempotency-Key, "" without one; claim is its
	// entry in the record while this request holds it, and replayed says
	// the record answered instead of the gate.
	key      string
	claim    *keyEntry
	replayed bool
	// problem: the client asked for RFC 9457 errors (Accept), for an
	// answer rendered without its request.
	problem bool
}

// New returns an Edge, or the problems with cfg.
func New(cfg Config, logger *slog.Logger) (*Edge, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Edge{cfg: cfg, now: time.Now, logger: logger}
	// A 503 under load comes beside 200s (shedding takes some requests,
	// not all): a cause ends once a request is accepted a second after its
	// last 503, not at every 200 in between.
	var err error
	if e.unavailable, err = condition.NewGroup(condition.Config{Name: "Ingestion", Warn: true, Quiet: time.Second,
		Interval: cfg.LogEvery, Attrs: []any{"status", http.StatusServiceUnavailable}}, logger); err != nil {
		return nil, err
	}
	e.keys = newKeyRecord(cfg.IdempotencyTTL, cfg.IdempotencyMaxKeys, func() time.Time { return e.now() })
	return e, nil
}

// ErrUnsupportedMediaType is the edge's answer to a body that is not JSON by
// its Content-Type.
var ErrUnsupportedMediaType = errors.New(`Content-Type must be "application/json"`)

// ErrUnsupportedCharset is the edge's answer to a JSON body declared in a
// charset other than UTF-8: the gate reads every body as UTF-8, and reading
// latin-1 that way would change what was sent.
var ErrUnsupportedCharset = errors.New(`only UTF-8 is accepted: the Content-Type's charset, when given, must be "utf-8"`)

// checkContentType accepts application/json, with any parameters, except a
// charset other than UTF-8 (in any case).
func checkContentType(contentType string) error {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType != "application/json" {
		return ErrUnsupportedMediaType
	}
	if charset, ok := params["charset"]; ok && !strings.EqualFold(charset, "utf-8") {
		return fmt.Errorf("%w (got %s)", ErrUnsupportedCharset, strconv.Quote(charset))
	}
	return nil
}

// errNoVerdict means the handler never reported back: the client went
// away, or the service is shutting down.
var errNoVerdict = messages.Transient(errors.New("the payload was not processed; nothing was published, retry"))

// correlate takes the request's X-Correlation-ID, or makes one, and echoes
// it on the answer: every answer of the ingestion route carries one, the
// front door's refusals included, so that a client can quote it.
func correlate(w http.ResponseWriter, r *http.Request) {
	correlationID := r.Header.Get("X-Correlation-ID")
	if correlationID == "" {
		correlationID = watermill.NewUUID()
		r.Header.Set("X-Correlation-ID", correlationID)
	}
	w.Header().Set("X-Correlation-ID", correlationID)
}

// Middleware renders every response of the ingestion route.
func (e *Edge) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		correlate(w, r)

		if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
			e.render(w, r, &exchange{decided: true, err: err}, false)
			return
		}
		key, err := parseIdempotencyKey(r.Header.Values("Idempotency-Key"))
		if err != nil {
			e.render(w, nil, &exchange{decided: true, err: err, problem: wantsProblem(r.Header.Get("Accept"))}, false)
			return
		}
		x := &exchange{done: make(chan struct{}), key: key}
		// The subscriber sees a context the client's departure does not
		// cancel, so it waits for the gate's verdict like for any request:
		// the payload's fate, not the client's patience, decides the
		// outcome. (Its own client-gone branch also reads the message's
		// context while the router sets it, a data race in watermill-http
		// v2.3.1.)
		clientCtx := r.Context()
		r = r.WithContext(context.WithValue(context.WithoutCancel(clientCtx), exchangeKey{}, x))
		next.ServeHTTP(&heldStatus{ResponseWriter: w}, r)

		clientGone := clientCtx.Err() != nil
		x.mu.Lock()
		inRouter := x.id != "" && !x.decided
		x.mu.Unlock()
		if clientGone && inRouter {
			select {
			case <-x.done:
			case <-time.After(e.cfg.VerdictWait):
			}
		}
		e.pending.CompareAndDelete(x.id, x)
		x.mu.Lock()
		claim := x.claim
		x.mu.Unlock()
		if claim != nil && e.claims.CompareAndDelete(claim.id, claim) {
			// No verdict came (a shutdown, or the client left and the
			// gate took longer than VerdictWait): the key is free again.
			e.keys.abandon(claim)
		}
		e.render(w, r, x, clientGone)
	})
}

// refuse records why the request will not reach the gate (nil for one the
// Idempotency-Key record answers) and returns it.
func (x *exchange) refuse(err error) error {
	x.mu.Lock()
	x.readErr = err
	x.mu.Unlock()
	return err
}

// heldStatus swallows the subscriber's bare status code: Middleware writes
// the real response after the subscriber returns.
type heldStatus struct {
	http.ResponseWriter
}

func (h *heldStatus) WriteHeader(int)             {}
func (h *heldStatus) Write(b []byte) (int, error) { return len(b), nil }

// Unmarshal is the subscriber's UnmarshalMessageFunc.
func (e *Edge) Unmarshal(_ string, r *http.Request) (*message.Message, error) {
	x, _ := r.Context().Value(exchangeKey{}).(*exchange)
	if x == nil {
		return nil, errors.New("request did not pass through Edge.Middleware")
	}
	if r.ContentLength > e.cfg.MaxBodyBytes {
		// Refused by what it announces, without reading a byte of it.
		return nil, x.refuse(&http.MaxBytesError{Limit: e.cfg.MaxBodyBytes})
	}
	body, err := readBody(r, e.cfg.MaxBodyBytes)
	if err != nil {
		// Too large, too slow, or broken off: the client's doing, and
		// nothing was published.
		return nil, x.refuse(bodyReadError(err, int64(len(body)), r))
	}
	if values, given := r.Header[messages.OrderingKeyHeader]; given {
		// Checked here because only the request tells a header sent empty
		// from one not sent; the gate checks that it agrees with the body.
		problem := messages.CheckOrderingKeyHeader(values[0])
		if len(values) > 1 {
			problem = messages.OrderingKeyHeader + " must be given once"
		}
		if problem != "" {
			err := &messages.ValidationError{
				Problems: []messages.Problem{{Message: problem, Rule: messages.RuleSchema}},
				Rules:    []messages.Rule{messages.RuleSchema},
			}
			x.mu.Lock()
			x.body, x.readErr = body, err
			x.mu.Unlock()
			return nil, err
		}
	}
	var id string
	if x.key == "" {
		if id, err = newPayloadID(); err != nil {
			// The system's random source failed: a bug-class 500, not a
			// retry.
			return nil, x.refuse(err)
		}
	} else {
		var claim *keyEntry
		if id, claim, err = e.claimKey(r, x, body); err != nil || claim == nil {
			if x.refuse(err) == nil {
				err = errReplayed
			}
			return nil, err
		}
		x.mu.Lock()
		x.claim = claim
		x.mu.Unlock()
		e.claims.Store(id, claim)
	}
	msg := message.NewMessage(id, body)
	msg.Metadata.Set(messages.MetaReceivedAt, e.now().UTC().Format(time.RFC3339Nano))
	msg.Metadata.Set(messages.MetaCorrelationID, r.Header.Get("X-Correlation-ID"))
	msg.Metadata.Set(messages.MetaContentType, r.Header.Get("Content-Type"))
	if key := r.Header.Get(messages.OrderingKeyHeader); key != "" {
		msg.Metadata.Set(messages.MetaOrderingKey, key)
	}
	if b := BackendFrom(r.Context()); b != "" {
		msg.Metadata.Set(messages.MetaBackend, b)
	}

	x.mu.Lock()
	x.id, x.body = msg.UUID, body
	x.mu.Unlock()
	e.pending.Store(msg.UUID, x)
	return msg, nil
}

// readBody reads r's body, at most limit bytes. A body of known length is
// read into one buffer of that length: io.ReadAll grows its buffer by
// doubling, which for a 1 MiB body allocated 2.1 MiB and left the copies
// behind as garbage. The first 64 KiB are read into a buffer of their
// own, so that a client that announces a large body and trickles it holds
// no more than that until it has sent as much.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	n := r.ContentLength
	if n < 0 || n > limit {
		return io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	}
	// net/http ends the body at Content-Length, so exactly n bytes come,
	// or an error says why not.
	body := make([]byte, min(n, 64<<10))
	read, err := io.ReadFull(r.Body, body)
	if err == nil && int64(read) < n {
		whole := make([]byte, n)
		copy(whole, body)
		var more int
		more, err = io.ReadFull(r.Body, whole[read:])
		body, read = whole, read+more
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // announced, none came
	}
	return body[:read], err
}

// errReplayed stops the subscriber for a request the key record answered.
var errReplayed = errors.New("answered from the Idempotency-Key record; not published again")

// claimKey looks the request's key up: unknown, it is claimed and the
// request goes on under the key's payload id; in flight, the request gets
// 409; accepted with this payload, the request is answered 200 replayed
// (no claim, no error); accepted with another, 422.
func (e *Edge) claimKey(r *http.Request, x *exchange, body []byte) (string, *keyEntry, error) {
	id := IdempotentPayloadID(BackendFrom(r.Context()), x.key)
	state, hash, claim := e.keys.begin(id)
	switch state {
	case keyInFlight:
		return "", nil, ErrKeyInFlight
	case keyDone:
		payload, err := messages.Parse(body)
		if err != nil {
			return "", nil, err // invalid is invalid, whatever the key
		}
		if messages.PayloadHash(payload.Canonical()) != hash {
			return "", nil, ErrKeyReused
		}
		x.mu.Lock()
		x.id, x.body, x.decided, x.replayed = id, body, true, true
		x.mu.Unlock()
		return id, nil, nil
	}
	return id, claim, nil
}

// Verdict records what the ingestion handler decided for msg.
func (e *Edge) Verdict(msg *message.Message, err error) {
	if v, ok := e.claims.LoadAndDelete(msg.UUID); ok {
		e.keys.finish(v.(*keyEntry), msg.Metadata.Get(messages.MetaPayloadHash), err == nil)
	}
	v, ok := e.pending.Load(msg.UUID)
	if !ok {
		return // the client is gone; its request already ended
	}
	x := v.(*exchange)
	x.mu.Lock()
	if !x.decided {
		x.decided, x.err = true, err
		close(x.done)
	}
	x.mu.Unlock()
}

// VerdictMiddleware reports the handler's result to the edge. Rejections are
// the handler doing its job, so they are acked rather than logged as
// handler errors; everything else is returned and nacks the message.
func (e *Edge) VerdictMiddleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		e.Verdict(msg, err)
		if e.cfg.OnVerdict != nil {
			e.cfg.OnVerdict(msg, err)
		}
		if class := messages.ClassOf(err); class == messages.ClassInvalid || class == messages.ClassRefused {
			return out, nil
		}
		return out, err
	}
}

func (e *Edge) render(w http.ResponseWriter, r *http.Request, x *exchange, clientGone bool) {
	x.mu.Lock()
	err, decided, readErr, id, replayed := x.err, x.decided, x.readErr, x.id, x.replayed
	resp := Response{ID: x.id}
	body := x.body
	problem := x.problem || (r != nil && wantsProblem(r.Header.Get("Accept")))
	x.mu.Unlock()
	if readErr != nil {
		err = readErr
	} else if !decided {
		err = errNoVerdict
	}
	resp.Status, resp.Message, resp.Error = e.classify(err)
	if resp.Status != http.StatusOK {
		resp.ID = ""
	}
	if id == "" && e.cfg.OnVerdict != nil {
		// Refused here, before the gate saw it (key, quota, Content-Type,
		// size): VerdictMiddleware never ran for it.
		e.cfg.OnVerdict(bareMessage(r), err)
	}
	if resp.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if resp.Status == http.StatusRequestTimeout {
		// The read deadline passed, and the write deadline with it (see
		// writeGrace): without more time the 408 would not be sent.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeGrace))
		w.Header().Set("Connection", "close")
	}
	if replayed && resp.Status == http.StatusOK {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if ref, ok := refusalOf(err); ok && ref.header != nil {
		ref.header(w.Header())
	}
	switch {
	case r == nil:
	case errors.Is(err, ErrBodyBudget):
		e.logger.Debug("Request shed: MAX_IN_FLIGHT_BYTES reached", "status", resp.Status,
			"correlation_id", r.Header.Get("X-Correlation-ID"))
	case resp.Status == http.StatusInternalServerError:
		e.logger.Error("Ingestion failed: a bug", "status", resp.Status, "error", err, "payload_id", id,
			"correlation_id", r.Header.Get("X-Correlation-ID"), "client_gone", clientGone)
	case resp.Status == http.StatusServiceUnavailable:
		// One condition per cause (a full disk answers every request
		// 503); each request's ids at debug.
		e.unavailable.Fail(e.cause(err), err)
		e.logger.Debug("Ingestion failed", "status", resp.Status, "error", err, "payload_id", id,
			"correlation_id", r.Header.Get("X-Correlation-ID"), "client_gone", clientGone)
	case resp.Status >= 500:
		e.logger.Warn("Ingestion failed", "status", resp.Status, "error", err, "payload_id", id,
			"correlation_id", r.Header.Get("X-Correlation-ID"), "client_gone", clientGone)
	case resp.Status == http.StatusRequestTimeout || errors.As(err, new(*BodyAbortedError)):
		// The client's fault, and as frequent as clients are slow: counted
		// (metrics.OutcomeTimeout, OutcomeAborted), not warned about.
		e.logger.Debug("Request body not received whole", "status", resp.Status, "error", err,
			"correlation_id", r.Header.Get("X-Correlation-ID"))
	case clientGone && resp.Status == http.StatusOK:
		e.logger.Info("Payload accepted; the client left before the answer", "payload_id", id,
			"correlation_id", r.Header.Get("X-Correlation-ID"), "client_gone", true)
	case replayed && resp.Status == http.StatusOK:
		e.logger.Info("Payload accepted before under its Idempotency-Key; answered from the record", "payload_id", id,
			"correlation_id", r.Header.Get("X-Correlation-ID"))
	case resp.Status == http.StatusOK:
		e.logger.Debug("Payload accepted", "payload_id", id, "correlation_id", r.Header.Get("X-Correlation-ID"))
	}
	if resp.Status == http.StatusOK {
		e.unavailable.OK()
	}
	if problem && resp.Status != http.StatusOK {
		writeProblem(w, resp.Status, resp.Message, resp.Error)
		return
	}
	buf := responseBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 { // a huge answer is not worth keeping
			buf.Reset()
			responseBuffers.Put(buf)
		}
	}()
	buf.Reset()
	// Only a body the gate parsed is answered 200.
	if bodyIsJSON := resp.Status == http.StatusOK; streamable(body, bodyIsJSON) {
		if mErr := encodeHead(buf, resp); mErr != nil {
			http.Error(w, mErr.Error(), http.StatusInternalServerError)
			return
		}
		head := buf.Len()
		if mErr := encodeTail(buf, resp); mErr != nil {
			http.Error(w, mErr.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()+compactLen(body)))
		w.WriteHeader(resp.Status)
		_ = writeStreamed(w, buf.Bytes()[:head], buf.Bytes()[head:], body)
		return
	}
	if mErr := encodeResponse(buf, resp, body, resp.Status == http.StatusOK); mErr != nil {
		http.Error(w, mErr.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(resp.Status)
	_, _ = w.Write(buf.Bytes())
}

// cause names what a 503 is for, for its log condition.
func (e *Edge) cause(err error) string {
	if e.cfg.Cause != nil {
		if c := e.cfg.Cause(err); c != "" {
			return c
		}
	}
	switch {
	case errors.Is(err, errNoVerdict):
		return "not processed"
	case strings.HasPrefix(err.Error(), "reading the request body"):
		return "request body"
	}
	return "unavailable"
}

// RulesOf names the rules a rejected request broke: the gate's, or the
// edge's own (not JSON, too large, wrong Content-Type). It is empty for an
// error that is not a rejection.
func RulesOf(err error) []messages.Rule {
	r, _ := refusalOf(err)
	return r.rules
}

// refusal is the answer to a request refused for what it is, by the edge
// or the gate: its status, the replaced service's message, the problems
// shown to the client and the rules counted in metrics.
type refusal struct {
	status   int
	message  string
	problems []messages.Problem
	rules    []messages.Rule
	// header, when set, adds the refusal's own response headers.
	header func(http.Header)
}

// refusalOf tells a refused request from a failure, by the error's type.
func refusalOf(err error) (refusal, bool) {
	if err == nil {
		// Most requests are accepted; the errors.As targets below would
		// otherwise cost each of them six heap allocations.
		return refusal{}, false
	}
	if r, ok := idempotencyRefusal(err); ok {
		return r, true
	}
	var tooLarge *http.MaxBytesError
	var syntax *messages.SyntaxError
	var invalid *messages.ValidationError
	var refused Refusal
	var slow *BodyTimeoutError
	var aborted *BodyAbortedError
	switch {
	case errors.As(err, &refused):
		status, message, problems, header := refused.Answer()
		return refusal{status: status, message: message, problems: problems, header: header}, true
	case errors.As(err, &tooLarge):
		return refusal{status: http.StatusRequestEntityTooLarge, message: "Payload Too Large",
			problems: []messages.Problem{{Message: fmt.Sprintf("the body exceeds %d bytes", tooLarge.Limit)}},
			rules:    []messages.Rule{messages.RuleTooLarge}}, true
	case errors.Is(err, ErrUnsupportedMediaType), errors.Is(err, ErrUnsupportedCharset):
		return refusal{status: http.StatusUnsupportedMediaType, message: "Unsupported Media Type",
			problems: []messages.Problem{{Message: err.Error()}}, rules: []messages.Rule{messages.RuleUnsupportedMediaType}}, true
	case errors.As(err, &slow):
		return refusal{status: http.StatusRequestTimeout, message: "Request Timeout",
			problems: []messages.Problem{{Message: slow.Error()}}}, true
	case errors.As(err, &aborted):
		return refusal{status: http.StatusBadRequest, message: "Incomplete Body",
			problems: []messages.Problem{{Message: aborted.Error()}}}, true
	case errors.As(err, &syntax):
		return refusal{status: http.StatusBadRequest, message: "Invalid JSON",
			problems: []messages.Problem{{Path: syntax.Path, Message: err.Error()}}, rules: []messages.Rule{messages.RuleNotJSON}}, true
	case errors.As(err, &invalid):
		return refusal{status: http.StatusBadRequest, message: "Invalid Schema", problems: invalid.Problems, rules: invalid.Rules}, true
	}
	return refusal{}, false
}

// classify is the one place an ingestion error becomes an HTTP status:
// a refusal's own, else 503 for an explicitly transient error or an
// outage, else 500.
func (e *Edge) classify(err error) (status int, msg string, problems []messages.Problem) {
	if err == nil {
		return http.StatusOK, "Valid Schema", nil
	}
	if r, ok := refusalOf(err); ok {
		return r.status, r.message, r.problems
	}
	if class := messages.ClassOf(err); class == messages.ClassTransient || class == messages.ClassOutage {
		return http.StatusServiceUnavailable, "Service Unavailable", []messages.Problem{{Message: err.Error()}}
	}
	// A bug: what went wrong (a panic's stack, say) is for the log, which
	// has it under the request's correlation id, not for the client.
	return http.StatusInternalServerError, "Internal Server Error",
		[]messages.Problem{{Message: "internal error; the service's log has the details under this request's X-Correlation-ID"}}
}

// newPayloadID is the id of a payload sent without an Idempotency-Key: a
// UUIDv7 (RFC 9562), whose leading bits are the time in milliseconds and
// which this process hands out in increasing order. Every index on payload
// ids (the outbox's, the SQLite ledger's) then grows at its end, where a
// random UUIDv4 dirtied one page of the index per row: in the ingest
// stage's outbox that was 5.5 WAL page writes per request, against 1.3.
func newPayloadID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("payload id: %w", err)
	}
	return id.String(), nil
}
