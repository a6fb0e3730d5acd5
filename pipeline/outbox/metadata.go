package outbox

import (
	"encoding/json"
	"slices"
	"strings"
)

// encodeMetadata is json.Marshal of metadata, byte for byte. Every append
// encodes one, and json.Marshal's reflection over a map cost about a dozen
// allocations per payload; attributes (ids, timestamps, hashes) need no
// escaping, so they are written directly, and anything else goes through
// json.Marshal.
func encodeMetadata(metadata map[string]string) (string, error) {
	if metadata == nil {
		return "null", nil
	}
	var sorted [8]string
	keys := sorted[:0]
	size := 2
	for k, v := range metadata {
		if !plainJSON(k) || !plainJSON(v) {
			b, err := json.Marshal(metadata)
			return string(b), err
		}
		keys = append(keys, k)
		size += len(k) + len(v) + 6
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(size)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(k)
		b.WriteString(`":"`)
		b.WriteString(metadata[k])
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}

// plainJSON reports whether json.Marshal writes s unchanged between its
// quotes: printable ASCII without the characters it escapes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
