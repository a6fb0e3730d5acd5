package messages

import (
	"strings"
	"testing"
)

func TestOrderingKeyInTheBody(t *testing.T) {
	valid := insertJSON(`"t"`, `["a"]`, `["INTEGER"]`, `[1]`)
	withKey := func(key string) string { return `{"activities":[` + valid + `],"ordering_key":` + key + `}` }

	p, err := Parse([]byte(withKey(`"order-42"`)))
	if err != nil {
		t.Fatal(err)
	}
	if p.OrderingKey != "order-42" {
		t.Fatalf("OrderingKey = %q, want order-42", p.OrderingKey)
	}
	// The key survives the canonical form, so a replayed or re-POSTed
	// payload keeps its place in its key's order.
	again, err := Parse(p.Canonical())
	if err != nil || again.OrderingKey != "order-42" {
		t.Fatalf("after Canonical: %q, %v (%s)", again.OrderingKey, err, p.Canonical())
	}
	if !strings.Contains(string(p.Canonical()), `"ordering_key":"order-42"`) {
		t.Fatalf("canonical form lacks the key: %s", p.Canonical())
	}
	// Without a key the canonical form is what it was before keys existed.
	plain, err := Parse([]byte(payloadJSON(valid)))
	if err != nil || strings.Contains(string(plain.Canonical()), "ordering_key") {
		t.Fatalf("keyless canonical form: %s, %v", plain.Canonical(), err)
	}
	// 256 characters of 4 bytes each: the most a key may hold.
	if _, err := Parse([]byte(withKey(`"` + strings.Repeat("𝄞", MaxOrderingKeyLen) + `"`))); err != nil {
		t.Fatalf("a key of %d characters: %v", MaxOrderingKeyLen, err)
	}

	for _, tt := range []struct{ name, key, fragment string }{
		{"empty", `""`, "must not be empty"},
		{"too long", `"` + strings.Repeat("k", MaxOrderingKeyLen+1) + `"`, "at most 256"},
		{"a number", `42`, "must be a string"},
		{"null", `null`, "must be a string"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			problems := mustInvalid(t, withKey(tt.key))
			if !hasProblem(problems, "/ordering_key", tt.fragment) {
				t.Fatalf("want a problem at /ordering_key mentioning %q, got %+v", tt.fragment, problems)
			}
		})
	}
}

func TestCheckOrderingKeyHeader(t *testing.T) {
	for _, tt := range []struct{ value, fragment string }{
		{"order-42", ""},
		{strings.Repeat("é", MaxOrderingKeyLen), ""},
		{"", "must not be empty"},
		{strings.Repeat("k", MaxOrderingKeyLen+1), "has 257 characters; at most 256"},
		{"\xff", "must be UTF-8"},
	} {
		got := CheckOrderingKeyHeader(tt.value)
		if (tt.fragment == "") != (got == "") || !strings.Contains(got, tt.fragment) {
			t.Errorf("CheckOrderingKeyHeader(%.20q) = %q, want %q", tt.value, got, tt.fragment)
		}
	}
}

func TestResolveOrderingKey(t *testing.T) {
	for _, tt := range []struct{ name, body, header, want, fragment string }{
		{"neither", "", "", "", ""},
		{"header only", "", "h", "h", ""},
		{"body only", "b", "", "b", ""},
		{"both, equal", "k", "k", "k", ""},
		{"both, different", "b", "h", "", `ordering_key "b" differs from the X-Ordering-Key header "h"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ResolveOrderingKey(Payload{OrderingKey: tt.body}, tt.header)
			if tt.fragment == "" {
				if err != nil || p.OrderingKey != tt.want {
					t.Fatalf("got %q, %v; want %q", p.OrderingKey, err, tt.want)
				}
				return
			}
			if ClassOf(err) != ClassInvalid || !strings.Contains(err.Error(), tt.fragment) {
				t.Fatalf("got %v, want an invalid payload mentioning %q", err, tt.fragment)
			}
		})
	}
}
