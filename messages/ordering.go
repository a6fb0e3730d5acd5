package messages

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// OrderingKeyHeader is the HTTP header that gives a payload its ordering
// key, as the body's ordering_key does.
const OrderingKeyHeader = "X-Ordering-Key"

// MaxOrderingKeyLen bounds an ordering key, in characters, as schema.json
// does: 256 characters of at most 4 UTF-8 bytes fit Pub/Sub's 1024-byte
// ordering key.
const MaxOrderingKeyLen = 256

// CheckOrderingKeyHeader returns the problem with an X-Ordering-Key header
// value, or "" when it is a valid key. The body's ordering_key is checked
// by the schema; a header has the same bounds, and must be UTF-8 because it
// travels as a Pub/Sub ordering key and in the canonical JSON.
func CheckOrderingKeyHeader(value string) string {
	switch n := utf8.RuneCountInString(value); {
	case !utf8.ValidString(value):
		return OrderingKeyHeader + " must be UTF-8"
	case n == 0:
		return OrderingKeyHeader + " must not be empty; leave the header out for a payload without an ordering key"
	case n > MaxOrderingKeyLen:
		return fmt.Sprintf("%s has %d characters; at most %d are allowed", OrderingKeyHeader, n, MaxOrderingKeyLen)
	}
	return ""
}

// ResolveOrderingKey returns p with the ordering key of its request: the
// header's (already checked by CheckOrderingKeyHeader; "" when none was
// given) or the body's. Given both, they must be equal, else a
// *ValidationError: a payload must not be ordered by a key its sender did
// not mean.
func ResolveOrderingKey(p Payload, header string) (Payload, error) {
	if header == "" || header == p.OrderingKey {
		return p, nil
	}
	if p.OrderingKey != "" {
		return Payload{}, newValidationError([]Problem{{
			Path: "/ordering_key",
			Message: fmt.Sprintf("ordering_key %s differs from the %s header %s; give one, or the same key in both",
				strconv.Quote(p.OrderingKey), OrderingKeyHeader, strconv.Quote(header)),
			Rule: RuleSchema,
		}})
	}
	p.OrderingKey = header
	return p, nil
}
