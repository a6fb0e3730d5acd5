package messages

import (
	"context"
	"encoding/json"
	"testing"
)

// BenchmarkParse measures the whole gate on the contract's example payload
// (a delete and an insert).
func BenchmarkParse(b *testing.B) {
	body := []byte(examplePayload)
	if _, err := Parse(body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseInAHandlerGoroutine is Parse as the stages run it: in a
// goroutine of its own (Watermill's router starts one per message), below
// the middleware's frames (about 4 KB, simulated here). A goroutine starts
// with a small stack; a Parse whose frames do not fit in what is left pays
// for copying the stack, on every payload.
func BenchmarkParseInAHandlerGoroutine(b *testing.B) {
	body := []byte(examplePayload)
	b.ReportAllocs()
	done := make(chan error)
	for b.Loop() {
		go func() { done <- belowFrames(32, body) }()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// belowFrames calls Parse depth frames of about 128 bytes down.
//
//go:noinline
func belowFrames(depth int, body []byte) error {
	var pad [96]byte
	if depth > 0 {
		return belowFrames(depth-1-int(pad[depth%len(pad)]), body)
	}
	_, err := Parse(body)
	return err
}

// BenchmarkGate is the sequence handlers.Gate runs on every accepted
// payload before it publishes: Parse, ResolveOrderingKey, Tables,
// Canonical and PayloadHash. Parse is most of it, but not all: Canonical
// renders the whole payload again.
func BenchmarkGate(b *testing.B) {
	body := []byte(examplePayload)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		p, err := Parse(body)
		if err != nil {
			b.Fatal(err)
		}
		if p, err = ResolveOrderingKey(p, "customer-42"); err != nil {
			b.Fatal(err)
		}
		if len(p.Tables()) != 1 {
			b.Fatal("want one table")
		}
		if len(PayloadHash(p.Canonical())) != 64 {
			b.Fatal("want a hex SHA-256")
		}
	}
}

// BenchmarkParseParallel is BenchmarkParse from GOMAXPROCS goroutines, to
// show the gate does not serialise callers.
func BenchmarkParseParallel(b *testing.B) {
	body := []byte(examplePayload)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := Parse(body); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkParseStages splits BenchmarkParse into its stages, to show what
// the schema validator costs next to the rest.
func BenchmarkParseStages(b *testing.B) {
	body := []byte(examplePayload)
	g, err := loadGate()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode-generic", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var doc any
			_ = json.Unmarshal(body, &doc)
		}
	})
	b.Run("decode-for-schema", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeForSchema(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("schema", func(b *testing.B) {
		var doc any
		_ = json.Unmarshal(body, &doc)
		b.ReportAllocs()
		for b.Loop() {
			if errs := *g.root.Validate(context.Background(), doc).Errs; len(errs) != 0 {
				b.Fatal(errs)
			}
		}
	})
	b.Run("decode-wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w WirePayload
			_ = json.Unmarshal(body, &w)
		}
	})
	b.Run("semantic", func(b *testing.B) {
		var w WirePayload
		_ = json.Unmarshal(body, &w)
		b.ReportAllocs()
		for b.Loop() {
			if _, problems := fromWire(w); len(problems) != 0 {
				b.Fatal(problems)
			}
		}
	})
	b.Run("canonical", func(b *testing.B) {
		p, _ := Parse(body)
		b.ReportAllocs()
		for b.Loop() {
			_ = p.Canonical()
		}
	})
}
