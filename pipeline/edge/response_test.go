package edge

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/gatekeeper/gatekeeper/messages"
)

// TestEncodeResponse holds encodeResponse to the bytes json.Marshal wrote
// before it: clients of the replaced service compare answers byte for byte
// in their tests.
func TestEncodeResponse(t *testing.T) {
	problems := []messages.Problem{{Path: "/activities/0/table", Message: "a <table> & \u2028 \"quoted\"", Rule: messages.RuleSchema}}
	bodies := []string{
		`{"activities":[{"operation":"insert","table":"t","col_names":["a"],"col_types":["TEXT"],"col_values":["x"]}]}`,
		"{\n  \"activities\" : [ 1, 2.50, \"<b>&amp;</b>\", \"\u2028\u2029\" ] }\n",
		`{"a":"\u003c already escaped \u0026"}`,
		"[\"a \\\" quote\\\\\", \"tab\\t\" ,\t\"sp ace\" ]",
		`not json`,
		`{"unterminated":`,
		``,
		`null`,
		`"just a string with <html>"`,
	}
	responses := []Response{
		{Status: 200, ID: "0b6c8bbd-5c1e-4e6b-9a84-4a0f1e0e2b5f", Message: "Payload accepted"},
		{Status: 400, Message: "payload rejected <because> & so on", Error: problems},
		{Status: 503, Message: ""},
	}
	for _, body := range append(bodies, "\x00nil") {
		for _, resp := range responses {
			var in []byte
			if body != "\x00nil" {
				in = []byte(body)
			}
			want := resp
			if in != nil && json.Valid(in) {
				var c bytes.Buffer
				if err := json.Compact(&c, in); err != nil {
					t.Fatal(err)
				}
				want.Payload = c.Bytes()
			} else {
				want.Payload = json.RawMessage("null")
			}
			wantBytes, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			wantBytes = append(wantBytes, '\n')
			var got bytes.Buffer
			got.WriteString("left over from the pool")
			got.Reset()
			for _, known := range []bool{false, true} {
				if known && !json.Valid(in) {
					continue // the gate never calls a body JSON that is not
				}
				got.Reset()
				if err := encodeResponse(&got, resp, in, known); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), wantBytes) {
					t.Errorf("body %q, status %d, known JSON %v:\n got %s\nwant %s", body, resp.Status, known, got.Bytes(), wantBytes)
				}
				if !streamable(in, known) {
					continue
				}
				// The answer render streams, without copying the body,
				// is the same bytes, of the length it announces.
				var head, tail, streamed bytes.Buffer
				if err := encodeHead(&head, resp); err != nil {
					t.Fatal(err)
				}
				if err := encodeTail(&tail, resp); err != nil {
					t.Fatal(err)
				}
				if err := writeStreamed(&streamed, head.Bytes(), tail.Bytes(), in); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(streamed.Bytes(), wantBytes) || head.Len()+compactLen(in)+tail.Len() != len(wantBytes) {
					t.Errorf("streamed: body %q, status %d: length %d:\n got %s\nwant %s", body, resp.Status,
						head.Len()+compactLen(in)+tail.Len(), streamed.Bytes(), wantBytes)
				}
			}
		}
	}
}

// BenchmarkEncodeResponse is the 200 answer to the contract's example
// payload, which every accepted request pays for.
func BenchmarkEncodeResponse(b *testing.B) {
	body := []byte(`{"activities":[{"operation":"delete","table":"table1","value_to_delete":{"col_names":["a","c","e"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[3,"2019-04-28 10:24:30.183414","something"]}},{"operation":"insert","table":"table1","col_names":["a","b","c"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[1,"Backup and Restore","2018-03-27 11:58:28.988414"]}]}`)
	resp := Response{Status: 200, ID: "0b6c8bbd-5c1e-4e6b-9a84-4a0f1e0e2b5f", Message: "Payload accepted"}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := resp
			if json.Valid(body) {
				var c bytes.Buffer
				_ = json.Compact(&c, body)
				r.Payload = c.Bytes()
			}
			out, _ := json.Marshal(r)
			_ = append(out, '\n')
		}
	})
	b.Run("encodeResponse", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			_ = encodeResponse(&buf, resp, body, true)
		}
	})
}
