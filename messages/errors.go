package messages

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Class is what kind of failure an error is. It is decided once, by ClassOf,
// and the class alone decides the HTTP status at the ingestion edge and
// retry-versus-poison in the apply stage.
type Class string

const (
	// ClassInvalid: the payload breaks the contract. HTTP 400; never published.
	ClassInvalid Class = "invalid"
	// ClassRefused: the front door refused the request for who sent it or
	// how often, not for what it holds: no or unknown API key (401), a
	// table the backend may not write (403), over its quota (429). Never
	// published; the refusal's own type gives the status. Neither the
	// payload's fault (invalid) nor the service's (transient, outage).
	ClassRefused Class = "refused"
	// ClassTransient: trying again later may succeed (unavailable, busy,
	// timeout, concurrent update). HTTP 503; retried with backoff, then poisoned.
	ClassTransient Class = "transient"
	// ClassPermanent: the payload cannot be applied as it is (missing table or
	// column on a delete, type conflict, malformed message). Poisoned at once.
	ClassPermanent Class = "permanent"
	// ClassOutage: the infrastructure under the payload is broken, not the
	// payload: the warehouse is corrupt, full, read-only, failing I/O,
	// locked past its timeout or unreachable, or BigQuery answers 5xx or
	// rate limits. HTTP 503; the apply stage pauses and holds the payload
	// until the warehouse answers again, counting no attempt: an outage
	// never poisons a payload.
	ClassOutage Class = "outage"
)

// ClassUnknown is the class of a poisoned payload that reached the poison
// topic without gatekeeper's metadata: Pub/Sub's own dead-letter policy
// moved it there (DEAD_LETTER_MAX_ATTEMPTS), or someone published it.
// ClassOf never returns it: no error of gatekeeper's is of this class.
const ClassUnknown Class = "unknown"

// ClassError attaches a Class to an error. Adapters and handlers wrap the
// errors they understand with Transient or Permanent; ClassOf unwraps them.
type ClassError struct {
	Class Class
	Err   error
}

func (e *ClassError) Error() string { return e.Err.Error() }
func (e *ClassError) Unwrap() error { return e.Err }

// Transient marks err as worth retrying. Transient(nil) is nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &ClassError{Class: ClassTransient, Err: err}
}

// Permanent marks err as one no retry can fix. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &ClassError{Class: ClassPermanent, Err: err}
}

// Refused marks err as a front-door refusal. Refused(nil) is nil.
func Refused(err error) error {
	if err == nil {
		return nil
	}
	return &ClassError{Class: ClassRefused, Err: err}
}

// Outage marks err as a fault of the infrastructure, not of the payload
// being handled. Outage(nil) is nil.
func Outage(err error) error {
	if err == nil {
		return nil
	}
	return &ClassError{Class: ClassOutage, Err: err}
}

// ClassOf classifies err. The outermost ClassError wins, so a caller can
// re-classify what it wraps. Deadlines and cancellations are transient. Any other error that
// nobody classified is a bug, and a bug is permanent: retrying it only
// repeats it, so the edge answers 500 and the apply stage poisons it at once.
// Code that knows an error is worth retrying says so with Transient.
func ClassOf(err error) Class {
	if err == nil {
		return ""
	}
	var ce *ClassError
	if errors.As(err, &ce) {
		return ce.Class
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ClassInvalid
	}
	var se *SyntaxError
	if errors.As(err, &se) {
		return ClassInvalid
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// A deadline may be met next time; a cancellation (a shutdown, a
		// client that left) says nothing about the payload.
		return ClassTransient
	}
	return ClassPermanent
}

// Problem is one reason a payload was rejected, located by a JSON Pointer
// into the payload ("" for the whole document).
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
	// Rule is the gate rule the problem breaks, for metrics; clients read
	// the message.
	Rule Rule `json:"-"`
}

// Rule names a gate rule, from a small fixed set, so that rejections can be
// counted by rule without free text.
type Rule string

const (
	RuleSchema          Rule = "schema"           // the JSON Schema (shape, types, required and unknown properties)
	RuleLengthMismatch  Rule = "length_mismatch"  // col_names, col_types, col_values of different lengths
	RuleIdentifier      Rule = "identifier"       // a table or column name BigQuery would refuse
	RuleDuplicateColumn Rule = "duplicate_column" // a column named twice in one activity
	RuleUnknownType     Rule = "unknown_type"     // a column type the gate does not know
	RuleValueType       Rule = "value_type"       // a value that does not fit its declared type
	RuleLimits          Rule = "limits"           // too many activities, tables or properties
	// The rules the edge applies before the gate sees a body.
	RuleNotJSON              Rule = "not_json"
	RuleTooLarge             Rule = "too_large"
	RuleUnsupportedMediaType Rule = "unsupported_media_type"
	// The Idempotency-Key rules: a malformed key (400), a key whose first
	// request is still being published (409), a key sent again with a
	// different payload (422).
	RuleIdempotencyKey      Rule = "idempotency_key"
	RuleIdempotencyInFlight Rule = "idempotency_in_flight"
	RuleIdempotencyMismatch Rule = "idempotency_mismatch"
)

// Rules lists every Rule, in a fixed order.
var Rules = []Rule{RuleSchema, RuleLengthMismatch, RuleIdentifier, RuleDuplicateColumn, RuleUnknownType,
	RuleValueType, RuleLimits, RuleNotJSON, RuleTooLarge, RuleUnsupportedMediaType,
	RuleIdempotencyKey, RuleIdempotencyInFlight, RuleIdempotencyMismatch}

// ValidationError lists every problem the gate found in one payload.
type ValidationError struct {
	Problems []Problem
	// Rules are the distinct rules the payload broke, in Rules' order,
	// including those of problems left out of a long list.
	Rules []Rule
}

func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		if p.Path == "" {
			parts = append(parts, p.Message)
			continue
		}
		parts = append(parts, p.Path+": "+p.Message)
	}
	return "invalid payload: " + strings.Join(parts, "; ")
}

// SyntaxError means the body is not a JSON document (or not valid UTF-8),
// or is one the gate refuses to read: an object key that appears twice, or
// a lone UTF-16 surrogate escape.
type SyntaxError struct {
	Err error
	// Path locates a duplicate key or a lone surrogate by JSON Pointer; it
	// is "" for the other syntax errors, which have only a byte offset.
	Path string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("invalid JSON: %v", e.Err) }
func (e *SyntaxError) Unwrap() error { return e.Err }
