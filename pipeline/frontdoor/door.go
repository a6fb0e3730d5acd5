package frontdoor

import (
	"fmt"
	"sync/atomic"
)

// Door holds the backends file in force. Requests read it with one atomic
// load; Reload swaps in a new one, so no request waits for a reload or
// sees half of one.
type Door struct {
	path string
	set  atomic.Pointer[Set]
}

// Open loads the backends file at path.
func Open(path string) (*Door, error) {
	s, err := Load(path)
	if err != nil {
		return nil, err
	}
	d := &Door{path: path}
	d.set.Store(s)
	return d, nil
}

// Current is the set in force.
func (d *Door) Current() *Set { return d.set.Load() }

// Path is the backends file.
func (d *Door) Path() string { return d.path }

// Reload reads the file again. A file that does not load leaves the set
// in force as it was, and its error is returned.
func (d *Door) Reload() (*Set, error) {
	s, err := Load(d.path)
	if err != nil {
		return nil, fmt.Errorf("kept the backends loaded before: %w", err)
	}
	s.keepBuckets(d.set.Load())
	d.set.Store(s)
	return s, nil
}
