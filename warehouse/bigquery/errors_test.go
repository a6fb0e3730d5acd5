package bigquery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		class    messages.Class
		sentinel error
	}{
		// Transient: contention for that payload's table, or a job of
		// its own that timed out.
		{"concurrent update", &bigquery.Error{Reason: "invalidQuery",
			Message: "Transaction is aborted due to concurrent update against table proj:ds.t. Transaction ID: 123"}, messages.ClassTransient, nil},
		{"serialization", &bigquery.Error{Reason: "invalidQuery",
			Message: "Could not serialize access to table proj:ds.t due to concurrent update"}, messages.ClassTransient, nil},
		{"too many DML", apiError(400, "invalid",
			"Resources exceeded during query execution: Too many DML statements outstanding against table proj:ds.t, limit is 20."), messages.ClassTransient, nil},
		{"deadline", fmt.Errorf("wait for job: %w", context.DeadlineExceeded), messages.ClassTransient, nil},
		{"canceled", context.Canceled, messages.ClassTransient, nil},
		{"deadline on the way", &url.Error{Op: "Post", URL: "https://bigquery.googleapis.com", Err: context.DeadlineExceeded}, messages.ClassTransient, nil},
		{"ledger conflict", &bigquery.Error{Reason: "invalidQuery", Message: ledgerConflictMarker + ": payload p1 is already in the ledger"}, messages.ClassTransient, nil},
		{"precondition", apiError(412, "conditionNotMet", "Precondition check failed."), messages.ClassTransient, nil},
		{"job timeout", &bigquery.Error{Reason: "timeout", Message: "Query exceeded the job's timeout"}, messages.ClassTransient, nil},
		{"unknown", errors.New("something odd"), messages.ClassTransient, nil},

		// Outage: BigQuery down, out of reach, rate limited or out of
		// quota, or the deployment broken: every payload alike.
		{"rate limit", apiError(403, "rateLimitExceeded", "Exceeded rate limits: too many table update operations for this table"), messages.ClassOutage, nil},
		{"rate limit, job", &bigquery.Error{Reason: "jobRateLimitExceeded", Message: "Exceeded rate limits: too many concurrent queries"}, messages.ClassOutage, nil},
		{"quota", apiError(403, "quotaExceeded", "Quota exceeded: Your project exceeded quota for query usage"), messages.ClassOutage, nil},
		{"HTTP 429", apiError(429, "", "too many requests"), messages.ClassOutage, nil},
		{"backend error", &bigquery.Error{Reason: "backendError", Message: "Backend error. Job aborted."}, messages.ClassOutage, nil},
		{"internal error", &bigquery.Error{Reason: "internalError", Message: "An internal error occurred"}, messages.ClassOutage, nil},
		{"HTTP 500", apiError(500, "", "internal error"), messages.ClassOutage, nil},
		{"HTTP 503", apiError(503, "", "service unavailable"), messages.ClassOutage, nil},
		{"connection refused", &url.Error{Op: "Post", URL: "https://bigquery.googleapis.com", Err: errors.New("connection refused")}, messages.ClassOutage, nil},
		{"dial", fmt.Errorf("insert rows: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), messages.ClassOutage, nil},
		{"dns", &net.DNSError{Err: "no such host", Name: "bigquery.googleapis.com"}, messages.ClassOutage, nil},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), messages.ClassOutage, nil},
		{"missing dataset", apiError(404, "notFound", "Not found: Dataset proj:ds"), messages.ClassOutage, nil},
		{"missing ledger", &bigquery.Error{Reason: "notFound", Message: "Not found: Table proj:ds._gatekeeper_ledger was not found in location US"}, messages.ClassOutage, nil},
		{"access denied", apiError(403, "accessDenied", "Access Denied: Table proj:ds.t"), messages.ClassOutage, nil},

		// Permanent: the payload's fault.
		{"missing table", &bigquery.Error{Reason: "notFound", Message: "Not found: Table proj:ds.t was not found in location US"},
			messages.ClassPermanent, warehouse.ErrTableNotFound},
		{"missing table, HTTP", apiError(404, "notFound", "Not found: Table proj:ds.t"), messages.ClassPermanent, warehouse.ErrTableNotFound},
		{"no such field", &bigquery.Error{Reason: "invalid", Message: "No such field: zz."}, messages.ClassPermanent, warehouse.ErrColumnNotFound},
		{"unrecognized name", &bigquery.Error{Reason: "invalidQuery", Message: "Unrecognized name: zz at [5:3]"}, messages.ClassPermanent, warehouse.ErrColumnNotFound},
		{"type mismatch", &bigquery.Error{Reason: "invalidQuery",
			Message: "Value has type STRING which cannot be inserted into column a, which has type INT64 at [4:9]"}, messages.ClassPermanent, warehouse.ErrTypeConflict},
		{"operator mismatch", &bigquery.Error{Reason: "invalid",
			Message: "No matching signature for operator = for argument types: INT64, STRING"}, messages.ClassPermanent, warehouse.ErrTypeConflict},
		{"invalid value", &bigquery.Error{Reason: "invalid", Message: "Invalid NUMERIC value: 1e400"}, messages.ClassPermanent, nil},
		{"too complex", &bigquery.Error{Reason: "resourcesExceeded", Message: "The query is too complex"}, messages.ClassPermanent, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			if c := messages.ClassOf(got); c != tc.class {
				t.Fatalf("classify(%v) is %s, want %s", tc.err, c, tc.class)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("classify(%v) lost the original error", tc.err)
			}
			if tc.sentinel != nil && !errors.Is(got, tc.sentinel) {
				t.Errorf("classify(%v) = %v, want it to wrap %v", tc.err, got, tc.sentinel)
			}
			for _, other := range []error{warehouse.ErrTableNotFound, warehouse.ErrColumnNotFound, warehouse.ErrTypeConflict} {
				if other != tc.sentinel && errors.Is(got, other) {
					t.Errorf("classify(%v) wraps %v", tc.err, other)
				}
			}
		})
	}
	if classify(nil) != nil {
		t.Error("classify(nil) != nil")
	}
}

func TestClassifyReadsWrappedAndMultiErrors(t *testing.T) {
	multi := bigquery.MultiError{&bigquery.Error{Reason: "notFound", Message: "Not found: Table proj:ds.t"}}
	if got := classify(fmt.Errorf("job: %w", multi)); messages.ClassOf(got) != messages.ClassPermanent {
		t.Fatalf("MultiError: %v is %s", got, messages.ClassOf(got))
	}
	wrapped := &jobFailedError{err: &googleapi.Error{Code: 400, Errors: []googleapi.ErrorItem{{Reason: "invalidQuery", Message: "Unrecognized name: x"}}}}
	if got := classify(wrapped); !errors.Is(got, warehouse.ErrColumnNotFound) {
		t.Fatalf("jobFailedError: %v", got)
	}
}

func TestShortenBoundsMessagesAndKeepsTheChain(t *testing.T) {
	long := &bigquery.Error{Reason: "invalidQuery", Message: strings.Repeat("x", 5000)}
	got := shorten(long)
	if len(got.Error()) > 2100 {
		t.Fatalf("shortened to %d bytes", len(got.Error()))
	}
	var be *bigquery.Error
	if !errors.As(got, &be) {
		t.Fatal("shorten lost the error chain")
	}
	short := errors.New("short")
	if shorten(short) != short {
		t.Fatal("shorten changed a short error")
	}
}

// An outage that ends a whole Apply stays an outage, with its reason; a
// permanent error there becomes transient (the payload-level ones were
// taken out before).
func TestGroupErrorKeepsOutagesAndTheirReason(t *testing.T) {
	err := groupError("commit", apiError(503, "backendError", "Backend error"))
	if messages.ClassOf(err) != messages.ClassOutage || warehouse.Reason(err) != warehouse.ReasonUnavailable {
		t.Fatalf("groupError(503) = %v (class %s, reason %s), want an outage, unavailable", err, messages.ClassOf(err), warehouse.Reason(err))
	}
	err = groupError("read the ledger", &url.Error{Op: "Post", URL: "https://bigquery.googleapis.com", Err: errors.New("connection refused")})
	if messages.ClassOf(err) != messages.ClassOutage || warehouse.Reason(err) != warehouse.ReasonUnavailable {
		t.Fatalf("groupError(unreachable) = %v (class %s, reason %s), want an outage, unavailable", err, messages.ClassOf(err), warehouse.Reason(err))
	}
	err = groupError("commit", apiError(403, "quotaExceeded", "Quota exceeded"))
	if messages.ClassOf(err) != messages.ClassOutage || warehouse.Reason(err) != warehouse.ReasonRateLimited {
		t.Fatalf("groupError(quota) = %v (class %s, reason %s), want an outage, rate_limited", err, messages.ClassOf(err), warehouse.Reason(err))
	}
	if err := groupError("commit", &bigquery.Error{Reason: "invalidQuery", Message: "Syntax error"}); messages.ClassOf(err) != messages.ClassTransient {
		t.Fatalf("groupError(invalid) = %v (class %s), want transient", err, messages.ClassOf(err))
	}
}
