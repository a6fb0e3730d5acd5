package messages

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestClassOf(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ""},
		{"transient", Transient(errors.New("busy")), ClassTransient},
		{"permanent", Permanent(errors.New("no table")), ClassPermanent},
		{"outermost wins", Permanent(fmt.Errorf("give up: %w", Transient(errors.New("busy")))), ClassPermanent},
		{"validation", fmt.Errorf("gate: %w", &ValidationError{}), ClassInvalid},
		{"syntax", &SyntaxError{Err: errors.New("eof")}, ClassInvalid},
		{"deadline", fmt.Errorf("apply: %w", context.DeadlineExceeded), ClassTransient},
		// Nobody said it is worth retrying: it is a bug, not "retry".
		{"unclassified", errors.New("nil map"), ClassPermanent},
	}
	for _, c := range cases {
		if got := ClassOf(c.err); got != c.want {
			t.Errorf("%s: ClassOf(%v) = %q, want %q", c.name, c.err, got, c.want)
		}
	}
}
