package edge

import "context"

type backendKey struct{}

// WithBackend returns ctx carrying the name of the backend that
// authenticated the request. The front door's authentication sets it; the
// edge, the idempotency record and the metrics read it.
func WithBackend(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, backendKey{}, name)
}

// BackendFrom is the authenticated backend's name, or "" when the request
// was not authenticated (no BACKENDS_FILE: embedded mode or AUTH=none).
func BackendFrom(ctx context.Context) string {
	name, _ := ctx.Value(backendKey{}).(string)
	return name
}
