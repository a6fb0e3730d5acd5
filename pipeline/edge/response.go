package edge

import (
	"bytes"
	"encoding/json"
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
	buf.WriteString(`{"status":`)
	buf.WriteString(strconv.Itoa(resp.Status))
	if resp.ID != "" {
		buf.WriteString(`,"id":`)
		if err := appendJSON(buf, resp.ID); err != nil {
			return err
		}
	}
	buf.WriteString(`,"payload":`)
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

// compactJSON appends body, which must be JSON, without the whitespace
// between its tokens.
func compactJSON(buf *bytes.Buffer, body []byte) {
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
			buf.Write(body[from:i])
			from = i + 1
		}
	}
	buf.Write(body[from:])
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
