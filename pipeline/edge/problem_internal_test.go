package edge

import "testing"

func TestWantsProblem(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                             false,
		"*/*":                          false,
		"application/json":             false,
		"application/problem+json":     true,
		"Application/Problem+JSON":     true,
		"application/problem+json;q=0": false,
		"application/json, application/problem+json":             true,
		"application/json, application/problem+json;q=0.5":       false,
		"application/json;q=0.5, application/problem+json;q=0.8": true,
		"text/html, application/problem+json;q=0.9, */*;q=0.1":   true,
		"application/problem+json;q=nonsense":                    false,
	} {
		if got := wantsProblem(accept); got != want {
			t.Errorf("wantsProblem(%q) = %v, want %v", accept, got, want)
		}
	}
}
