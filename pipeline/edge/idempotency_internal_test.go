package edge

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestKeyRecord_in_flight_then_done_then_expired(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := newKeyRecord(time.Hour, 10, c.now)
	state, _, claim := r.begin("a")
	if state != keyNew || claim == nil {
		t.Fatalf("first begin = %v, %v; want new with a claim", state, claim)
	}
	if state, _, claim := r.begin("a"); state != keyInFlight || claim != nil {
		t.Fatalf("begin while in flight = %v, %v; want in flight, no claim", state, claim)
	}
	r.finish(claim, "h1", true)
	if state, hash, _ := r.begin("a"); state != keyDone || hash != "h1" {
		t.Fatalf("begin after accepted = %v %q; want done h1", state, hash)
	}
	c.t = c.t.Add(time.Hour - time.Nanosecond)
	if state, _, _ := r.begin("a"); state != keyDone {
		t.Fatalf("begin just before the TTL = %v; want done", state)
	}
	c.t = c.t.Add(time.Nanosecond)
	if state, _, claim := r.begin("a"); state != keyNew || claim == nil {
		t.Fatalf("begin at the TTL = %v; want new: the key is forgotten", state)
	}
}

func TestKeyRecord_forgets_a_key_whose_request_failed_or_was_abandoned(t *testing.T) {
	r := newKeyRecord(time.Hour, 10, time.Now)
	_, _, claim := r.begin("a")
	r.finish(claim, "h1", false) // a 503: the client retries with the same key
	if state, _, c2 := r.begin("a"); state != keyNew {
		t.Fatalf("begin after a failure = %v; want new", state)
	} else {
		r.abandon(c2)
	}
	if state, _, c3 := r.begin("a"); state != keyNew {
		t.Fatalf("begin after abandon = %v; want new", state)
	} else {
		// A claim abandoned and taken again: the old claim's late verdict
		// must not settle the new request's entry.
		r.finish(claim, "stale", true)
		if state, _, _ := r.begin("a"); state != keyInFlight {
			t.Fatalf("a stale claim's verdict changed the new one's entry: %v", state)
		}
		r.finish(c3, "h3", true)
	}
	if _, hash, _ := r.begin("a"); hash != "h3" {
		t.Fatalf("hash %q, want h3", hash)
	}
}

func TestKeyRecord_keeps_at_most_max_done_keys_dropping_the_oldest(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := newKeyRecord(time.Hour, 3, c.now)
	for _, id := range []string{"a", "b", "c", "d"} {
		_, _, claim := r.begin(id)
		r.finish(claim, "h-"+id, true)
		c.t = c.t.Add(time.Second)
	}
	if n := r.len(); n != 3 {
		t.Fatalf("%d keys kept, want 3", n)
	}
	if state, _, claim := r.begin("a"); state != keyNew {
		t.Fatalf("oldest key a = %v, want forgotten", state)
	} else {
		r.abandon(claim)
	}
	for _, id := range []string{"b", "c", "d"} {
		if state, hash, _ := r.begin(id); state != keyDone || hash != "h-"+id {
			t.Fatalf("key %s = %v %q, want done", id, state, hash)
		}
	}
	// In-flight claims are not bounded by max: each is a request being served.
	for _, id := range []string{"x", "y", "z", "w"} {
		if state, _, _ := r.begin(id); state != keyNew {
			t.Fatalf("begin %s = %v", id, state)
		}
	}
	if n := r.len(); n != 7 {
		t.Fatalf("%d keys, want 3 done + 4 in flight", n)
	}
}

func TestParseIdempotencyKey(t *testing.T) {
	for _, c := range []struct {
		values  []string
		want    string
		problem string
	}{
		{nil, "", ""},
		{[]string{"k-1"}, "k-1", ""},
		{[]string{`"k-1"`}, "k-1", ""}, // the draft's Structured Field string is the same key
		{[]string{`"a\"b\\c"`}, `a"b\c`, ""},
		{[]string{"with space"}, "with space", ""},
		{[]string{strings.Repeat("k", 255)}, strings.Repeat("k", 255), ""},
		{[]string{""}, "", "must not be empty"},
		{[]string{`""`}, "", "must not be empty"},
		{[]string{strings.Repeat("k", 256)}, "", "at most 255 characters, got 256"},
		{[]string{"a", "b"}, "", "must be sent once"},
		{[]string{"caf\xc3\xa9"}, "", "printable ASCII; byte 3 is 0xc3"},
		{[]string{"tab\there"}, "", "printable ASCII; byte 3 is 0x09"},
		{[]string{`"a\nb"`}, "", "not a valid quoted string"},
		{[]string{`"a"b"`}, "", "not a valid quoted string"},
	} {
		got, err := parseIdempotencyKey(c.values)
		var ke *KeyError
		switch {
		case c.problem == "" && (err != nil || got != c.want):
			t.Errorf("parse(%q) = %q, %v; want %q", c.values, got, err, c.want)
		case c.problem != "" && (!errors.As(err, &ke) || !strings.Contains(err.Error(), c.problem)):
			t.Errorf("parse(%q) = %q, %v; want a KeyError saying %q", c.values, got, err, c.problem)
		}
	}
}

func TestIdempotentPayloadID_is_per_backend_and_key_and_stable(t *testing.T) {
	a := IdempotentPayloadID("billing", "k")
	if a != IdempotentPayloadID("billing", "k") {
		t.Fatal("not deterministic")
	}
	// Pinned: a change would give retries across an upgrade new ids.
	if a != "6d5e25a4-5bde-5346-8e7f-4d72d1a94aa9" {
		t.Fatalf("IdempotentPayloadID(billing, k) = %q: the namespace or the derivation changed", a)
	}
	for _, other := range []string{IdempotentPayloadID("shop", "k"), IdempotentPayloadID("billing", "k2"),
		IdempotentPayloadID("", "billingk"), IdempotentPayloadID("billing\x00", "k")} {
		if other == a {
			t.Errorf("%q collides with billing/k", other)
		}
	}
}

func TestRefusalOfAnAcceptedRequestAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = refusalOf(nil) }); n != 0 {
		t.Errorf("refusalOf(nil) allocates %v times, want 0: every accepted request pays it", n)
	}
}
