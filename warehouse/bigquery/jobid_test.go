package bigquery

import (
	"context"
	"regexp"
	"sync"
	"testing"
	"time"
)

func TestJobKeyIsDeterministic(t *testing.T) {
	k := jobKey("proj", "ds", []string{"a", "b"})
	if again := jobKey("proj", "ds", []string{"a", "b"}); again != k {
		t.Fatalf("same payloads, keys %s and %s", k, again)
	}
	for name, other := range map[string]string{
		"order":     jobKey("proj", "ds", []string{"b", "a"}),
		"ids":       jobKey("proj", "ds", []string{"a", "c"}),
		"dataset":   jobKey("proj", "ds2", []string{"a", "b"}),
		"project":   jobKey("proj2", "ds", []string{"a", "b"}),
		"splitting": jobKey("proj", "ds", []string{"ab"}),
	} {
		if other == k {
			t.Errorf("a different %s gives the same key", name)
		}
	}
}

func TestJobIDsNumberAttempts(t *testing.T) {
	a := newJobAttempts()
	key := jobKey("proj", "ds", []string{"a"})
	first := a.id(key)
	// BigQuery job ids: letters, digits, dashes, underscores, at most 1024.
	if !regexp.MustCompile(`^gatekeeper_[0-9a-f]{32}_0$`).MatchString(first) {
		t.Fatalf("job id %q", first)
	}
	if a.id(key) != first {
		t.Fatal("the id changed without a failure: a resubmission would not find the job")
	}
	a.failed(key)
	second := a.id(key)
	if second == first || second[:len(second)-1] != first[:len(first)-1] {
		t.Fatalf("after a failure: %q, then %q", first, second)
	}
	a.succeeded(key)
	if a.id(key) != first {
		t.Fatal("succeeded did not forget the key")
	}
}

func TestJobAttemptsStayBounded(t *testing.T) {
	a := newJobAttempts()
	for i := range maxTrackedKeys + 10 {
		a.failed(jobKey("p", "d", []string{string(rune(i))}))
	}
	if n := len(a.attempts); n > maxTrackedKeys {
		t.Fatalf("%d keys tracked, at most %d wanted", n, maxTrackedKeys)
	}
}

func TestIDLocksSerializeSharedIDs(t *testing.T) {
	l := newIDLocks()
	ctx := context.Background()
	release, err := l.acquire(ctx, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	// A disjoint set does not wait.
	other, err := l.acquire(ctx, []string{"c"})
	if err != nil {
		t.Fatal(err)
	}
	other()

	var wg sync.WaitGroup
	acquired := make(chan struct{})
	wg.Go(func() {
		r, err := l.acquire(ctx, []string{"b", "d"})
		if err != nil {
			t.Error(err)
			return
		}
		close(acquired)
		r()
	})
	select {
	case <-acquired:
		t.Fatal("acquired b while it was held")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	wg.Wait()

	release, _ = l.acquire(ctx, []string{"x"})
	defer release()
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := l.acquire(short, []string{"x"}); err == nil {
		t.Fatal("acquire of a held id returned before its context ended")
	}
}
