package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"unicode/utf8"
)

// A reason's error is whatever a dependency said: a driver's message may
// carry control characters, a line separator or bytes that are not UTF-8.
// Both probes' bodies stay JSON that any client decodes, with each valid
// message intact (Go's %q quoting is not JSON: it writes \x01).
func TestProbeBodiesAreJSONWhateverTheReasonsSay(t *testing.T) {
	for _, msg := range []string{
		"control \x01 and \x1f and NUL \x00",
		"tab\tnewline\nreturn\r",
		"line separator \u2028 paragraph separator \u2029",
		"quote \" backslash \\ slash / <script>&",
		"not UTF-8: \xff\xfe",
		"emoji \U0001F600 and a BOM \ufeff",
	} {
		bad := errors.New(msg)
		m := newTestMonitor(t, Config{Ingest: true, BacklogFull: func() error { return bad }})
		m.Published("accepted", bad)

		for path, handler := range map[string]http.HandlerFunc{"/readyz": m.Readyz, "/healthz": m.Healthz} {
			rec := httptest.NewRecorder()
			handler(rec, httptest.NewRequest(http.MethodGet, path, nil).WithContext(context.Background()))
			body := rec.Body.Bytes()
			var a healthAnswer
			if err := json.Unmarshal(body, &a); err != nil {
				t.Errorf("%s with a reason %q: body is not JSON (%v): %s", path, msg, err, body)
				continue
			}
			if len(a.Reasons) == 0 {
				t.Errorf("%s with a reason %q: no reasons in %s", path, msg, body)
				continue
			}
			found := false
			for _, r := range a.Reasons {
				if !utf8.ValidString(msg) {
					found = found || r.Error != ""
					continue
				}
				found = found || r.Error == msg
			}
			if !found {
				t.Errorf("%s with a reason %q: no reason carries it intact: %s", path, msg, body)
			}
		}
	}
}
