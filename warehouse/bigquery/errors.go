package bigquery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// ErrClosed is returned, classified transient, by calls after Close.
var ErrClosed = errors.New("bigquery warehouse closed")

// Messages BigQuery gives for contention that passes on its own: another
// job touched the same table. They are matched on the message because
// BigQuery reports them under reasons (invalidQuery, invalid) that
// otherwise mean a bad query. Contention is the payload's lot, not the
// backend's state: retried, and poisoned if it persists for that payload
// while others apply.
var transientMessages = []string{
	"transaction is aborted due to concurrent update",
	"could not serialize access",
	"too many dml statements outstanding",
	ledgerConflictMarker,
}

// Messages of BigQuery's rate limits, which hold for every payload alike.
var outageMessages = []string{
	"exceeded rate limits",
}

// Reasons (googleapi.ErrorItem.Reason, bigquery.Error.Reason) that are
// BigQuery's own state, the project's quotas or its access: every payload
// fails alike until they pass or an operator acts, so the apply stage
// pauses rather than retrying each payload towards poison.
var outageReasons = map[string]bool{
	"backendError":         true,
	"internalError":        true,
	"jobBackendError":      true,
	"jobInternalError":     true,
	"rateLimitExceeded":    true,
	"jobRateLimitExceeded": true,
	"quotaExceeded":        true,
	"tableUnavailable":     true,
	"accessDenied":         true, // an operator grants it; poisoning the payloads helps nobody
	"billingNotEnabled":    true,
}

// Reasons worth retrying that may be this job's own: a timeout, a job
// stopped, a resource busy, a query over its billing tier.
var transientReasons = map[string]bool{
	"timeout":                  true,
	"stopped":                  true,
	"resourceInUse":            true,
	"billingTierLimitExceeded": true,
}

// Reasons that mean the query itself cannot succeed.
var permanentReasons = map[string]bool{
	"notFound":          true,
	"invalid":           true,
	"invalidQuery":      true,
	"duplicate":         true,
	"resourcesExceeded": true, // the job is too big or complex: a smaller one may pass
	"responseTooLarge":  true,
}

// classify marks err for the apply stage, from BigQuery's error reason,
// HTTP status and message: an outage when BigQuery or the way to it is
// down, rate limited or out of quota (the apply stage pauses); transient
// for contention and timeouts (retried); permanent for what the payload
// asked (poisoned). Permanent errors that name a missing table or column,
// or a type mismatch, also wrap the matching warehouse error. Anything not
// recognised is transient: retrying is harmless because the ledger makes
// every apply idempotent.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return messages.Transient(err)
	}
	reason, message, code := errorDetails(err)
	lower := strings.ToLower(message)
	re := &warehouse.ReasonError{Reason: metricReason(reason, lower, code), Err: err}
	if code == 0 && unreachable(err) {
		re.Reason = warehouse.ReasonUnavailable
	}
	err = re
	for _, m := range transientMessages {
		if strings.Contains(lower, m) {
			return messages.Transient(err)
		}
	}
	for _, m := range outageMessages {
		if strings.Contains(lower, m) {
			return messages.Outage(err)
		}
	}
	switch {
	case code >= 500, code == http.StatusTooManyRequests, outageReasons[reason]:
		return messages.Outage(err)
	case re.Reason == warehouse.ReasonUnavailable && code == 0 && reason == "":
		// Unreachable: no answer came.
		return messages.Outage(err)
	case code == http.StatusPreconditionFailed, transientReasons[reason]:
		return messages.Transient(err)
	case reason == "notFound" && !strings.Contains(lower, "table"):
		// A missing dataset, job or project is the deployment's problem.
		return messages.Outage(err)
	case reason == "notFound" && strings.Contains(lower, strings.ToLower(warehouse.LedgerTable)):
		return messages.Outage(err)
	case permanentReasons[reason], code == http.StatusBadRequest, code == http.StatusNotFound:
		if sentinel := sentinelFor(reason, lower); sentinel != nil {
			return messages.Permanent(fmt.Errorf("%w: %w", sentinel, err))
		}
		return messages.Permanent(err)
	}
	return messages.Transient(err)
}

// unreachable reports whether err is a failure to reach BigQuery at all: a
// network error (a refused or reset connection, a failed dial or DNS
// lookup) or a gRPC Unavailable, rather than an answer.
func unreachable(err error) bool {
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &opErr), errors.As(err, &dnsErr), errors.As(err, &netErr):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case status.Code(err) == codes.Unavailable:
		return true
	}
	return false
}

// metricReason maps BigQuery's open-ended reasons onto warehouse's fixed
// set, so that a metric label never takes a value BigQuery invents.
func metricReason(reason, lower string, code int) string {
	switch {
	case strings.Contains(lower, "concurrent update"), strings.Contains(lower, "could not serialize access"):
		return warehouse.ReasonConcurrent
	case strings.Contains(lower, "rate limit"), strings.Contains(lower, "too many dml"),
		reason == "rateLimitExceeded", reason == "jobRateLimitExceeded", reason == "quotaExceeded", code == http.StatusTooManyRequests:
		return warehouse.ReasonRateLimited
	case reason == "accessDenied", code == http.StatusForbidden, code == http.StatusUnauthorized:
		return warehouse.ReasonPermission
	case (reason == "notFound" || code == http.StatusNotFound) && strings.Contains(lower, "table"):
		return warehouse.ReasonTableNotFound
	case reason == "invalid", reason == "invalidQuery", reason == "duplicate", reason == "resourcesExceeded",
		reason == "responseTooLarge", code == http.StatusBadRequest:
		return warehouse.ReasonInvalid
	case outageReasons[reason], transientReasons[reason], code >= 500:
		return warehouse.ReasonUnavailable
	}
	return warehouse.ReasonOther
}

// sentinelFor recognises the warehouse error a permanent BigQuery error
// amounts to, from messages such as "Not found: Table p:d.t was not found",
// "Unrecognized name: x", "No such field: x", "Column x is not present in
// table t", "Value has type STRING which cannot be inserted into column a,
// which has type INT64" and "No matching signature for operator =".
func sentinelFor(reason, lower string) error {
	switch {
	case reason == "notFound" || strings.Contains(lower, "not found: table") || strings.Contains(lower, "table not found"):
		return warehouse.ErrTableNotFound
	case strings.Contains(lower, "unrecognized name"), strings.Contains(lower, "no such field"),
		strings.Contains(lower, "is not present in table"):
		return warehouse.ErrColumnNotFound
	case strings.Contains(lower, "cannot be inserted into column"), strings.Contains(lower, "no matching signature"),
		strings.Contains(lower, "has type") && strings.Contains(lower, "which has type"):
		return warehouse.ErrTypeConflict
	}
	return nil
}

// errorDetails digs the reason, message and HTTP status out of the errors
// the client library returns: *googleapi.Error from API calls,
// *bigquery.Error (or a MultiError of them) from a job's status.
func errorDetails(err error) (reason, message string, code int) {
	message = err.Error()
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		code = ge.Code
		for _, item := range ge.Errors {
			if reason == "" {
				reason = item.Reason
			}
			message += " " + item.Message
		}
		return reason, message, code
	}
	var be *bigquery.Error
	if errors.As(err, &be) {
		return be.Reason, message, 0
	}
	var me bigquery.MultiError
	if errors.As(err, &me) {
		for _, e := range me {
			var be *bigquery.Error
			if errors.As(e, &be) && reason == "" {
				reason = be.Reason
			}
		}
	}
	return reason, message, 0
}

// shorten bounds an error's text for outcomes and logs: the emulator
// echoes whole translated scripts in its messages.
func shorten(err error) error {
	const max = 2000
	if err == nil || len(err.Error()) <= max {
		return err
	}
	return &shortError{err: err, text: err.Error()[:max] + "…"}
}

type shortError struct {
	err  error
	text string
}

func (e *shortError) Error() string { return e.text }
func (e *shortError) Unwrap() error { return e.err }
