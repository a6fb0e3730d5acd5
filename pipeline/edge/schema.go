package edge

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/gatekeeper/gatekeeper/messages"
)

// SchemaPath serves the JSON Schema the gate checks a payload's shape
// against, so that a client can validate before it posts.
const SchemaPath = "/api/schema"

// SchemaHandler serves messages.SchemaJSON with an ETag, so that a client
// that caches it revalidates cheaply.
func SchemaHandler() http.Handler {
	schema := messages.SchemaJSON()
	sum := sha256.Sum256(schema)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/schema+json")
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(schema))
	})
}
