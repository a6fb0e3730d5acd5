package outbox

import (
	"encoding/json"
	"testing"
)

func TestEncodeMetadataIsJSONMarshal(t *testing.T) {
	t.Parallel()
	cases := []map[string]string{
		nil,
		{},
		{"received_at": "2026-12-02T03:04:05.123456789Z", "correlation_id": "0b7e2c9e-1d0a-4c1e-9a51-6a3f0f3c2d11",
			"content_type": "application/json; charset=utf-8", "payload_hash": "9f86d081884c7d65", "backend": "billing"},
		{"a": `quote " and backslash \`},
		{"html": "<script>&</script>"},
		{"control": "tab\tnewline\n"},
		{"utf8": "café ✓", "bad": "\xff\xfe"},
		{"sep": "\u2028\u2029"},
		{"del": "\x7f", "key\"quoted": "v"},
		{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7", "h": "8"},
		{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7", "h": "8", "i": "9"},
		{"b": "2", "a": "1", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7", "h": "8", "i": "9", "j": "10"},
	}
	for _, m := range cases {
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeMetadata(m)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("encodeMetadata(%q) = %s, json.Marshal gives %s", m, got, want)
		}
	}
}

func TestEncodeMetadataOfPlainAttributesAllocatesOnce(t *testing.T) {
	m := map[string]string{"received_at": "2026-12-02T03:04:05.123456789Z", "correlation_id": "0b7e2c9e",
		"content_type": "application/json", "payload_hash": "9f86d081884c7d65"}
	if n := testing.AllocsPerRun(100, func() { _, _ = encodeMetadata(m) }); n != 1 {
		t.Errorf("encodeMetadata allocates %v times, want 1 (the string)", n)
	}
}

func FuzzEncodeMetadataIsJSONMarshal(f *testing.F) {
	f.Add("received_at", "2026-12-02T03:04:05Z", "k", "v\x00<")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		m := map[string]string{k1: v1, k2: v2}
		want, _ := json.Marshal(m)
		got, err := encodeMetadata(m)
		if err != nil || got != string(want) {
			t.Fatalf("encodeMetadata(%q) = %s, %v; json.Marshal gives %s", m, got, err, want)
		}
	})
}
