package bigquery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"sync"
)

// jobIDPrefix starts every job id, so operators can find gatekeeper's jobs.
const jobIDPrefix = "gatekeeper_"

// jobKey names the job that applies payloads ids, in order, to one
// dataset. The same payloads give the same key, so a job submitted again
// after its reply was lost gets the same id, BigQuery refuses it as a
// duplicate, and the adapter waits for the first one instead of applying
// twice.
func jobKey(projectID, datasetID string, ids []string) string {
	h := sha256.New()
	h.Write([]byte(projectID))
	h.Write([]byte{0})
	h.Write([]byte(datasetID))
	for _, id := range ids {
		h.Write([]byte{0})
		h.Write([]byte(id))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// maxTrackedKeys bounds jobAttempts. Forgetting a key only costs a retry
// one attach to the failed job it replaces.
const maxTrackedKeys = 10_000

// jobAttempts numbers the attempts at each job key. A job id is retired
// once its job is known to have failed, since BigQuery never reuses ids;
// it is kept while the job's fate is unknown, so the retry finds the job.
// After a restart numbering starts again at 0: a failed job found under a
// reused id is seen to have failed, and the next attempt moves on.
type jobAttempts struct {
	mu       sync.Mutex
	attempts map[string]int
}

func newJobAttempts() *jobAttempts { return &jobAttempts{attempts: map[string]int{}} }

// id returns the job id of the current attempt at key.
func (a *jobAttempts) id(key string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return jobIDPrefix + key + "_" + strconv.Itoa(a.attempts[key])
}

// failed retires the current attempt's id after its job failed.
func (a *jobAttempts) failed(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.attempts[key]; !ok && len(a.attempts) >= maxTrackedKeys {
		for k := range a.attempts {
			delete(a.attempts, k)
			break
		}
	}
	a.attempts[key]++
}

// succeeded forgets key: its payloads are in the ledger now.
func (a *jobAttempts) succeeded(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.attempts, key)
}

// idLocks keeps two Apply calls of one process from working on the same
// payload id at once, so the second one reads the ledger after the first
// committed and finds the payload Duplicate instead of racing it.
type idLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

func newIDLocks() *idLocks { return &idLocks{held: map[string]chan struct{}{}} }

// acquire waits until none of ids is held, then holds them all. Taking
// them all at once cannot deadlock.
func (l *idLocks) acquire(ctx context.Context, ids []string) (release func(), err error) {
	for {
		l.mu.Lock()
		var busy chan struct{}
		for _, id := range ids {
			if ch, ok := l.held[id]; ok {
				busy = ch
				break
			}
		}
		if busy == nil {
			done := make(chan struct{})
			for _, id := range ids {
				l.held[id] = done
			}
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				for _, id := range ids {
					if l.held[id] == done {
						delete(l.held, id)
					}
				}
				l.mu.Unlock()
				close(done)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
