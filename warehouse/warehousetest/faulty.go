package warehousetest

import (
	"context"
	"errors"
	"sync"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/warehouse"
)

// ErrInjected is the error Faulty fails with when it is given none.
var ErrInjected = errors.New("injected warehouse failure")

// Faulty wraps a warehouse.Warehouse and fails Apply calls on demand, so
// end-to-end tests can drive the retry path with a real warehouse
// underneath. It passes the warehouse.EventLog methods through when the
// wrapped warehouse has them, and can fail AppendEvents calls too. It is a
// test double, so it lives beside the conformance suite rather than in the
// port itself. It is safe for concurrent use.
type Faulty struct {
	warehouse warehouse.Warehouse

	mu sync.Mutex
	// failBefore and failAfter count the Apply calls still to fail, before
	// and after passing them through; the first non-zero one applies.
	failBefore, failAfter int
	err                   error
	calls, failures       int
	// failAppends counts the AppendEvents calls still to fail.
	failAppends int
	appendErr   error
}

// ErrNoEventLog is what Faulty's EventLog methods return when the wrapped
// warehouse has no events log.
var ErrNoEventLog = errors.New("the wrapped warehouse has no events log")

// NewFaulty wraps w. It passes every call through until told otherwise.
func NewFaulty(w warehouse.Warehouse) *Faulty {
	return &Faulty{warehouse: w}
}

// FailNext makes the next n Apply calls return err without reaching the
// wrapped warehouse. A nil err means messages.Transient(ErrInjected).
func (f *Faulty) FailNext(n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failBefore, f.failAfter = n, 0
	f.err = defaultInjected(err)
}

// FailNextAfterApply makes the next n Apply calls pass through and then
// return err instead of their outcomes: the group committed but the caller
// cannot know it, as when a commit's reply is lost. Retrying must then find
// the payloads in the ledger. A nil err means messages.Transient(ErrInjected).
func (f *Faulty) FailNextAfterApply(n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failBefore, f.failAfter = 0, n
	f.err = defaultInjected(err)
}

// Calls returns how many Apply calls Faulty received, failed or not.
func (f *Faulty) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Failures returns how many Apply calls Faulty failed.
func (f *Faulty) Failures() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures
}

// Unwrap returns the wrapped warehouse, for reading what was applied.
func (f *Faulty) Unwrap() warehouse.Warehouse { return f.warehouse }

// Apply fails as configured, or passes the call through.
func (f *Faulty) Apply(ctx context.Context, group []warehouse.Payload) ([]warehouse.Outcome, error) {
	f.mu.Lock()
	f.calls++
	var failBefore, failAfter bool
	switch {
	case f.failBefore > 0:
		f.failBefore--
		failBefore = true
	case f.failAfter > 0:
		f.failAfter--
		failAfter = true
	}
	err := f.err
	if failBefore || failAfter {
		f.failures++
	}
	f.mu.Unlock()

	if failBefore {
		return nil, err
	}
	outcomes, applyErr := f.warehouse.Apply(ctx, group)
	if failAfter {
		return nil, err
	}
	return outcomes, applyErr
}

// FailNextAppends makes the next n AppendEvents calls return err without
// reaching the wrapped warehouse. A nil err means
// messages.Transient(ErrInjected).
func (f *Faulty) FailNextAppends(n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAppends = n
	f.appendErr = defaultInjected(err)
}

func (f *Faulty) eventLog() (warehouse.EventLog, error) {
	if log, ok := f.warehouse.(warehouse.EventLog); ok {
		return log, nil
	}
	return nil, messages.Permanent(ErrNoEventLog)
}

// AppendEvents fails as configured, or passes the call through.
func (f *Faulty) AppendEvents(ctx context.Context, events []warehouse.Event) error {
	f.mu.Lock()
	fail, err := f.failAppends > 0, f.appendErr
	if fail {
		f.failAppends--
	}
	f.mu.Unlock()
	if fail {
		return err
	}
	log, err := f.eventLog()
	if err != nil {
		return err
	}
	return log.AppendEvents(ctx, events)
}

// Entries passes through.
func (f *Faulty) Entries(ctx context.Context, filter warehouse.EventFilter) ([]warehouse.Entry, error) {
	log, err := f.eventLog()
	if err != nil {
		return nil, err
	}
	return log.Entries(ctx, filter)
}

// CountSelected passes through.
func (f *Faulty) CountSelected(ctx context.Context, filter warehouse.EventFilter) (int, error) {
	log, err := f.eventLog()
	if err != nil {
		return 0, err
	}
	return log.CountSelected(ctx, filter)
}

// FailureGroups passes through.
func (f *Faulty) FailureGroups(ctx context.Context, filter warehouse.EventFilter) ([]warehouse.FailureGroup, error) {
	log, err := f.eventLog()
	if err != nil {
		return nil, err
	}
	return log.FailureGroups(ctx, filter)
}

// History passes through.
func (f *Faulty) History(ctx context.Context, payloadID string) ([]warehouse.Event, error) {
	log, err := f.eventLog()
	if err != nil {
		return nil, err
	}
	return log.History(ctx, payloadID)
}

// CountEntries passes through.
func (f *Faulty) CountEntries(ctx context.Context) (map[warehouse.EventKind]warehouse.StateCount, error) {
	log, err := f.eventLog()
	if err != nil {
		return nil, err
	}
	return log.CountEntries(ctx)
}

// State passes through.
func (f *Faulty) State(ctx context.Context, payloadID string) (warehouse.PayloadState, error) {
	log, err := f.eventLog()
	if err != nil {
		return warehouse.PayloadState{}, err
	}
	return log.State(ctx, payloadID)
}

// AcknowledgeCause passes through.
func (f *Faulty) AcknowledgeCause(ctx context.Context, ack warehouse.CauseAck) error {
	log, err := f.eventLog()
	if err != nil {
		return err
	}
	return log.AcknowledgeCause(ctx, ack)
}

// CauseAcks passes through.
func (f *Faulty) CauseAcks(ctx context.Context) (map[string]warehouse.CauseAck, error) {
	log, err := f.eventLog()
	if err != nil {
		return nil, err
	}
	return log.CauseAcks(ctx)
}

// Ping passes through.
func (f *Faulty) Ping(ctx context.Context) error { return f.warehouse.Ping(ctx) }

// Close passes through.
func (f *Faulty) Close() error { return f.warehouse.Close() }

func defaultInjected(err error) error {
	if err == nil {
		return messages.Transient(ErrInjected)
	}
	return err
}
