package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// The statuses of a payload, as GET /api/activities/{id} answers them.
const (
	StatusAccepted = "accepted" // published, not applied yet
	StatusApplied  = "applied"  // in the warehouse, with its ledger row
	StatusPoisoned = "poisoned" // on the poison topic, waiting for an operator
	StatusPurged   = "purged"   // dropped by an operator; never applied
	StatusUnknown  = "unknown"  // neither the service nor its warehouse knows it
)

// PayloadStatus is what the service knows of one payload.
type PayloadStatus struct {
	ID           string     `json:"id"`
	Status       string     `json:"status"`
	ReceivedAt   *time.Time `json:"received_at"`
	AppliedAt    *time.Time `json:"applied_at"`
	Tables       []string   `json:"tables"`
	RowsAffected *int64     `json:"rows_affected"`
	Error        *struct {
		Class  string `json:"class"`
		Reason string `json:"reason"`
	} `json:"error"`
	Replays int `json:"replays"`
}

// Status asks GET /api/activities/{id} once. An id the service does not
// know is not an error: its status is StatusUnknown.
func (c *Client) Status(ctx context.Context, id string) (PayloadStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/activities/"+url.PathEscape(id), nil)
	if err != nil {
		return PayloadStatus{}, err
	}
	req.Header.Set("Accept", "application/json")
	c.authorize(req)
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return PayloadStatus{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return PayloadStatus{}, fmt.Errorf("reading the status: %w", err)
	}
	var st PayloadStatus
	if (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound) && json.Unmarshal(raw, &st) == nil && st.Status != "" {
		return st, nil
	}
	return PayloadStatus{}, apiError(resp, answer{}, raw)
}

// NotAppliedError says a payload will not be applied unless an operator
// acts: it was poisoned (Status.Error says why) or purged.
type NotAppliedError struct {
	Status PayloadStatus
}

func (e *NotAppliedError) Error() string {
	if e.Status.Error != nil {
		return fmt.Sprintf("payload %s is %s (%s): %s", e.Status.ID, e.Status.Status, e.Status.Error.Class, e.Status.Error.Reason)
	}
	return fmt.Sprintf("payload %s is %s", e.Status.ID, e.Status.Status)
}

// WaitApplied polls the payload's status until it is applied, and
// returns it. A poisoned or purged payload is a *NotAppliedError; an
// answer to retry (503), or a status still unknown (the replica asked
// may not have heard of it yet), is polled again until ctx ends.
func (c *Client) WaitApplied(ctx context.Context, id string) (PayloadStatus, error) {
	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	for {
		st, err := c.Status(ctx, id)
		var apiErr *APIError
		switch {
		case err == nil && st.Status == StatusApplied:
			return st, nil
		case err == nil && (st.Status == StatusPoisoned || st.Status == StatusPurged):
			return st, &NotAppliedError{Status: st}
		case errors.As(err, &apiErr) && !apiErr.Retryable():
			return st, err
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("payload %s is still %s", id, st.Status)
			}
			return st, fmt.Errorf("%w: %w", ctx.Err(), err)
		case <-t.C:
		}
	}
}
