package operator

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gatekeeper/gatekeeper/warehouse"
)

// A cursor is the key of the last entry of a page (warehouse.EntryKey),
// opaque to clients: the next page starts after it. Keys never change, so a
// walk reads each payload once while others arrive.

// Cursor encodes k as the API's cursor.
func Cursor(k warehouse.EntryKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(k.FirstAt.UnixNano(), 10) + "/" + k.PayloadID))
}

// ParseCursor decodes a cursor that Cursor made.
func ParseCursor(s string) (warehouse.EntryKey, error) {
	bad := fmt.Errorf("cursor %q: not a cursor this API gave (pass the \"next\" of the previous page)", s)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return warehouse.EntryKey{}, bad
	}
	at, id, ok := strings.Cut(string(raw), "/")
	n, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" {
		return warehouse.EntryKey{}, bad
	}
	return warehouse.EntryKey{FirstAt: time.Unix(0, n).UTC(), PayloadID: id}, nil
}

// CauseOf names a cause of failure: the error class, the tables and the
// reason without its values (ReasonPattern). Payloads that failed alike
// share it, and it stays the same while they keep failing so.
func CauseOf(p warehouse.Event) string {
	h := sha256.Sum256([]byte(p.ErrorClass + "\x00" + strings.Join(p.Tables, ",") + "\x00" + ReasonPattern(p.Reason)))
	return hex.EncodeToString(h[:6])
}

// causeMemo is CauseOf for many entries: thousands of payloads share a
// few reasons, and the reason's pattern is regular expressions.
type causeMemo map[[3]string]string

func (m *causeMemo) of(p warehouse.Event) string {
	if *m == nil {
		*m = causeMemo{}
	}
	k := [3]string{p.ErrorClass, strings.Join(p.Tables, ","), p.Reason}
	c, ok := (*m)[k]
	if !ok {
		c = CauseOf(p)
		(*m)[k] = c
	}
	return c
}

// PoisonPage is one page of the list: its records, how many the filter
// selects in all, and the cursor of the next page ("" after the last).
type PoisonPage struct {
	Items []PoisonRecord `json:"items"`
	Count int            `json:"count"`
	Total int            `json:"total"`
	Next  string         `json:"next,omitempty"`
}

// Page returns the page of entries f selects after f.After, of up to
// f.Limit records (all when <= 0), narrowed to one cause when cause is not
// empty. The cause is a pattern of the reason, matched here rather than in
// the warehouse: its entries are read whole and paged in the same order.
func (c *Console) Page(ctx context.Context, f warehouse.EventFilter, cause string) (PoisonPage, error) {
	page := PoisonPage{Items: []PoisonRecord{}}
	var entries []warehouse.Entry
	if cause == "" {
		// The total and the page are two reads; side by side, the page
		// waits for the slower one only.
		counted := make(chan error, 1)
		go func() {
			var err error
			page.Total, err = c.store.CountSelected(ctx, f)
			counted <- err
		}()
		g := f
		if g.Limit > 0 {
			g.Limit++ // one more says whether a next page exists
		}
		var err error
		entries, err = c.store.Entries(ctx, g)
		if cerr := <-counted; err == nil {
			err = cerr
		}
		if err != nil {
			return page, fmt.Errorf("read the poison index: %w", err)
		}
	} else {
		// The cause's entries are found without their payloads, and the
		// page's read again whole.
		brief := f
		brief.Brief = true
		all, err := c.causeEntries(ctx, brief, cause)
		if err != nil {
			return page, err
		}
		page.Total = len(all)
		var ids []string
		for _, e := range all {
			if !f.After.IsZero() && !keyAfter(e.Key(), f.After) {
				continue
			}
			ids = append(ids, e.Latest.PayloadID)
			if f.Limit > 0 && len(ids) > f.Limit {
				break
			}
		}
		if len(ids) > 0 {
			whole := f
			whole.PayloadIDs, whole.After, whole.Limit = ids, warehouse.EntryKey{}, 0
			if entries, err = c.store.Entries(ctx, whole); err != nil {
				return page, fmt.Errorf("read the poison index: %w", err)
			}
		}
	}
	if f.Limit > 0 && len(entries) > f.Limit {
		entries = entries[:f.Limit]
		page.Next = Cursor(entries[len(entries)-1].Key())
	}
	for _, e := range entries {
		page.Items = append(page.Items, recordOf(e))
	}
	page.Count = len(page.Items)
	return page, nil
}

// causeEntries are the entries f selects (ignoring After and Limit) whose
// cause is cause, in the order of Entries.
func (c *Console) causeEntries(ctx context.Context, f warehouse.EventFilter, cause string) ([]warehouse.Entry, error) {
	f.After, f.Limit = warehouse.EntryKey{}, 0
	all, err := c.store.Entries(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("read the poison index: %w", err)
	}
	out := all[:0]
	var causes causeMemo
	for _, e := range all {
		if causes.of(e.Poisoned) == cause {
			out = append(out, e)
		}
	}
	return out, nil
}

// keyAfter reports whether k comes after after in the order of Entries.
func keyAfter(k, after warehouse.EntryKey) bool {
	return cmp.Or(after.FirstAt.Compare(k.FirstAt), cmp.Compare(k.PayloadID, after.PayloadID)) > 0
}
