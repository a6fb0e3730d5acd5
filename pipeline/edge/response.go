package edge

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"sync"

	"github.com/gatekeeper/gatekeeper/messages"
)

// Response is the body of every ingestion response, as the replaced service
// wrote it, plus the payload id.
type Response struct {
	Status  int                `json:"status"`
	ID      string             `json:"id,omitempty"`
	Payload json.RawMessage    `json:"payload"`
	Message string             `json:"message"`
	Error   []messages.Problem `json:"error"`
}

// responseBuffers are reused across answers: every accepted payload is
// echoed back, so an answer is as large as the request.
var responseBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encodeResponse appends to buf exactly what json.Marshal(resp) followed by
// a newline writes, with body as the payload when it is JSON (else null).
//
// Why not json.Marshal: it re-validates and re-compacts a RawMessage, so the
// echoed body was scanned three times (Valid, Compact, Marshal), which was
// 6 % of the ingest process's CPU under load. Here it is compacted once. A
// body the gate accepted (bodyIsJSON) is known to be JSON, so compacting
// is only dropping whitespace outside strings; any other body goes through
// json.Compact, whose error is the validity check. TestEncodeResponse holds
// the bytes equal to json.Marshal's.
func encodeResponse(buf *bytes.Buffer, resp Response, body []byte, bodyIsJSON bool) error {
	if err := encodeHead(buf, resp); err != nil {
		return err
	}
	start := buf.Len()
	switch {
	case body == nil:
		buf.WriteString("null")
	case bodyIsJSON:
		compactJSON(buf, body)
	case json.Compact(buf, body) != nil:
		buf.Truncate(start)
		buf.WriteString("null")
	}
	if compact := buf.Bytes()[start:]; body != nil && needsHTMLEscape(compact) {
		// json.Marshal escapes <, > and & (and U+2028, U+2029) inside a
		// RawMessage too; an answer must not change with this encoder.
		var escaped bytes.Buffer
		json.HTMLEscape(&escaped, compact)
		buf.Truncate(start)
		buf.Write(escaped.Bytes())
	}
	return encodeTail(buf, resp)
}

// encodeHead appends the answer up to its payload.
func encodeHead(buf *bytes.Buffer, resp Response) error {
	buf.WriteString(`{"status":`)
	buf.WriteString(strconv.Itoa(resp.Status))
	if resp.ID != "" {
		buf.WriteString(`,"id":`)
		if err := appendJSON(buf, resp.ID); err != nil {
			return err
		}
	}
	buf.WriteString(`,"payload":`)
	return nil
}

// encodeTail appends the answer after its payload.
func encodeTail(buf *bytes.Buffer, resp Response) error {
	buf.WriteString(`,"message":`)
	if err := appendJSON(buf, resp.Message); err != nil {
		return err
	}
	buf.WriteString(`,"error":`)
	if err := appendJSON(buf, resp.Error); err != nil {
		return err
	}
	buf.WriteString("}\n")
	return nil
}

// streamable says whether an answer can echo body without copying it
// into the answer's buffer: body is known to be JSON and has nothing
// json.Marshal would escape, so the payload is body compacted, written
// straight to the connection (see writeStreamed). For a 1 MiB payload
// that is 1 MiB less held per request in flight, and as much less
// allocated (the buffer grew by doubling and was not pooled past 1 MiB).
func streamable(body []byte, bodyIsJSON bool) bool {
	return body != nil && bodyIsJSON && !needsHTMLEscape(body)
}

// writeStreamed writes head, body compacted, and tail to w: the
// len(head)+compactLen(body)+len(tail) bytes encodeResponse would have
// buffered.
func writeStreamed(w io.Writer, head, tail, body []byte) error {
	if _, err := w.Write(head); err != nil {
		return err
	}
	if err := compactJSON(w, body); err != nil {
		return err
	}
	_, err := w.Write(tail)
	return err
}

// compactLen is how many bytes compactJSON writes for body.
func compactLen(body []byte) int {
	n, inString := len(body), false
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			n--
		}
	}
	return n
}

// compactJSON writes body, which must be JSON, without the whitespace
// between its tokens. Keep it in step with compactLen.
func compactJSON(w io.Writer, body []byte) error {
	inString := false
	from := 0
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			if from < i {
				if _, err := w.Write(body[from:i]); err != nil {
					return err
				}
			}
			from = i + 1
		}
	}
	_, err := w.Write(body[from:])
	return err
}

func appendJSON(buf *bytes.Buffer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf.Write(b)
	return nil
}

func needsHTMLEscape(b []byte) bool {
	return bytes.ContainsAny(b, "<>&") || bytes.Contains(b, []byte("\u2028")) || bytes.Contains(b, []byte("\u2029"))
}
