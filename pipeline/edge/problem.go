package edge

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gatekeeper/gatekeeper/messages"
)

// ProblemType is the media type of an RFC 9457 problem document. A client
// that lists it in Accept (at least as high as application/json, or
// without it) gets its errors in that shape; every other client gets the
// replaced service's body, which its existing code reads.
const ProblemType = "application/problem+json"

// Problem is an error answer in the RFC 9457 shape. Type is always
// "about:blank" (the status says it all), so Title is the status's
// phrase; Message keeps the replaced service's finer message
// ("Invalid Schema", "Invalid JSON"), and Errors its problems with their
// JSON pointers.
type Problem struct {
	Type          string             `json:"type"`
	Title         string             `json:"title"`
	Status        int                `json:"status"`
	Detail        string             `json:"detail"`
	Message       string             `json:"message"`
	Errors        []messages.Problem `json:"errors"`
	CorrelationID string             `json:"correlation_id,omitempty"`
}

// wantsProblem reports whether accept ranks application/problem+json at
// least as high as application/json: a client that names both at the same
// q has said it understands problems, so it gets the richer body. Only an
// explicit mention counts: "*/*", and no Accept at all, keep the default
// body.
func wantsProblem(accept string) bool {
	if accept == "" || !strings.Contains(strings.ToLower(accept), "problem+json") {
		return false
	}
	problemQ, jsonQ := -1.0, -1.0
	for _, part := range strings.Split(accept, ",") {
		mediaType, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		switch mediaType {
		case ProblemType:
			problemQ = max(problemQ, q)
		case "application/json":
			jsonQ = max(jsonQ, q)
		}
	}
	return problemQ > 0 && problemQ >= jsonQ
}

// writeProblem answers status in the RFC 9457 shape.
func writeProblem(w http.ResponseWriter, status int, message string, problems []messages.Problem) {
	p := Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Message: message,
		Errors: problems, CorrelationID: w.Header().Get("X-Correlation-ID")}
	if p.Errors == nil {
		p.Errors = []messages.Problem{}
	}
	details := make([]string, len(problems))
	for i, pr := range problems {
		details[i] = pr.Message
	}
	p.Detail = strings.Join(details, "; ")
	body, err := json.Marshal(p)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", ProblemType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// WriteError answers an error on the ingestion listener in the ingestion
// API's shape: the replaced service's body, or an RFC 9457 problem when
// the request's Accept asks for one.
func WriteError(w http.ResponseWriter, r *http.Request, status int, message string, problems []messages.Problem) {
	if r != nil && wantsProblem(r.Header.Get("Accept")) {
		writeProblem(w, status, message, problems)
		return
	}
	body, err := json.Marshal(Response{Status: status, Payload: json.RawMessage("null"), Message: message, Error: problems})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// RouteErrors answers the requests mux has no route for in the ingestion
// API's error shape: 404 for an unknown path, 405 (with the mux's Allow)
// for a known path and another method. net/http answers both in plain
// text, the only errors of the listener that were not JSON.
func RouteErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// The mux's own answer decides 404 or 405 and sets Allow; its
		// plain-text body is dropped.
		held := &routeMiss{header: http.Header{}}
		mux.ServeHTTP(held, r)
		if allow := held.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		switch held.status {
		case http.StatusMethodNotAllowed:
			WriteError(w, r, held.status, "Method Not Allowed", []messages.Problem{{
				Message: fmt.Sprintf("%s does not answer %s; it answers %s", r.URL.Path, r.Method, held.header.Get("Allow"))}})
		case http.StatusNotFound:
			WriteError(w, r, held.status, "Not Found", []messages.Problem{{
				Message: fmt.Sprintf("no endpoint at %s; the ingestion API is POST %s", r.URL.Path, "/api/activities")}})
		default:
			// Not a miss after all (a redirect): pass the mux's answer on.
			for k, v := range held.header {
				w.Header()[k] = v
			}
			w.WriteHeader(held.status)
			_, _ = w.Write(held.body)
		}
	})
}

// routeMiss holds the mux's answer to a request it has no route for.
type routeMiss struct {
	header http.Header
	status int
	body   []byte
}

func (m *routeMiss) Header() http.Header { return m.header }
func (m *routeMiss) WriteHeader(code int) {
	if m.status == 0 {
		m.status = code
	}
}
func (m *routeMiss) Write(b []byte) (int, error) {
	if m.status == 0 {
		m.status = http.StatusOK
	}
	m.body = append(m.body, b...)
	return len(b), nil
}

// ErrorShape answers the errors of next, a handler shared with the admin
// listener that writes them as {"error": "..."} (the status API), in the
// ingestion API's shape, so that a backend meets one error shape on the
// ingestion listener. A 404 is left alone: the status API's 404 is a
// payload status ("unknown"), not an error body.
func ErrorShape(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hw := &heldError{ResponseWriter: w}
		next.ServeHTTP(hw, r)
		if !hw.held {
			return
		}
		var body struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(hw.body, &body) != nil || body.Error == "" {
			// Not the admin shape: pass it on as written.
			w.WriteHeader(hw.status)
			_, _ = w.Write(hw.body)
			return
		}
		w.Header().Del("Content-Length")
		WriteError(w, r, hw.status, http.StatusText(hw.status), []messages.Problem{{Message: body.Error}})
	})
}

// heldError holds back an error answer (400 and above, but 404) for
// ErrorShape to write again.
type heldError struct {
	http.ResponseWriter
	held, wrote bool
	status      int
	body        []byte
}

func (h *heldError) WriteHeader(code int) {
	if h.wrote || h.held {
		return
	}
	if code >= 400 && code != http.StatusNotFound {
		h.held, h.status = true, code
		return
	}
	h.wrote = true
	h.ResponseWriter.WriteHeader(code)
}

func (h *heldError) Write(b []byte) (int, error) {
	if !h.held && !h.wrote {
		h.WriteHeader(http.StatusOK)
	}
	if h.held {
		h.body = append(h.body, b...)
		return len(b), nil
	}
	return h.ResponseWriter.Write(b)
}
