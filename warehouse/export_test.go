package warehouse

// pendingCount reports how many submissions are enqueued and not yet
// started. Tests poll it to know their submitters have arrived, instead of
// sleeping and hoping they have.
func (c *GroupCommitter) pendingCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// PendingCount exports pendingCount to package warehouse_test.
var PendingCount = (*GroupCommitter).pendingCount
