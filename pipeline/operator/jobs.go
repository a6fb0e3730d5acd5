package operator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// ReplayJob is a replay the admin API runs in the background, for the page
// to follow: a replay of thousands at a rate takes minutes, longer than a
// request should wait.
type ReplayJob struct {
	ID string `json:"id"`
	// Cause is the cause the replay selected, if it selected one.
	Cause      string        `json:"cause,omitempty"`
	Total      int           `json:"total"`
	Done       int           `json:"done"`
	Rate       float64       `json:"rate"`
	StartedAt  time.Time     `json:"started_at"`
	Finished   bool          `json:"finished"`
	FinishedAt *time.Time    `json:"finished_at,omitempty"`
	Report     *ReplayReport `json:"report,omitempty"`
	Error      string        `json:"error,omitempty"`
}

// replayJobs holds this process's background replays; it forgets the
// oldest finished ones beyond keepJobs.
type replayJobs struct {
	mu   sync.Mutex
	jobs map[string]*ReplayJob
	// order is the ids, oldest first.
	order []string
}

const keepJobs = 50

func newReplayJobs() *replayJobs { return &replayJobs{jobs: map[string]*ReplayJob{}} }

// start runs replay in the background and returns its job as it starts.
func (j *replayJobs) start(cause string, total int, rate float64, replay func(progress func(done, total int)) (ReplayReport, error)) ReplayJob {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	job := &ReplayJob{ID: hex.EncodeToString(b), Cause: cause, Total: total, Rate: rate, StartedAt: time.Now().UTC()}
	j.mu.Lock()
	j.jobs[job.ID] = job
	j.order = append(j.order, job.ID)
	for len(j.order) > keepJobs {
		old := j.jobs[j.order[0]]
		if !old.Finished {
			break
		}
		delete(j.jobs, j.order[0])
		j.order = j.order[1:]
	}
	started := *job
	j.mu.Unlock()
	go func() {
		rep, err := replay(func(done, _ int) {
			j.mu.Lock()
			job.Done = done
			j.mu.Unlock()
		})
		now := time.Now().UTC()
		j.mu.Lock()
		defer j.mu.Unlock()
		job.Finished, job.FinishedAt, job.Report = true, &now, &rep
		job.Done = len(rep.Skipped) + len(rep.Refused) + rep.Replayed
		if err != nil {
			job.Error = err.Error()
		}
	}()
	return started
}

func (j *replayJobs) get(id string) (ReplayJob, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, ok := j.jobs[id]
	if !ok {
		return ReplayJob{}, false
	}
	return *job, true
}

// replayTimeout bounds a replay of n items at rate per second: twice the
// time the rate needs, and at least 10 minutes.
func replayTimeout(n int, rate float64) time.Duration {
	if rate <= 0 {
		rate = 100
	}
	return max(10*time.Minute, 2*time.Duration(float64(n)/rate*float64(time.Second)))
}

// backgroundContext is ctx without its cancellation, bounded: a replay
// outlives the request that started it.
func backgroundContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}
