package edge

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

// OpenAPIPath serves the ingestion API's OpenAPI 3.1 document, from which
// a backend team can generate a client.
const OpenAPIPath = "/api/openapi.json"

// openAPI is the document. Its components/schemas/Payload* are
// messages/schema.json with its $defs made components
// (TestOpenAPIPayloadIsTheGatesSchema holds them equal), and every answer
// the pipeline's tests receive validates against it (pipeline's
// TestMain).
//
//go:embed openapi.json
var openAPI []byte

// OpenAPIJSON returns the OpenAPI document.
func OpenAPIJSON() []byte { return bytes.Clone(openAPI) }

// OpenAPIHandler serves the OpenAPI document with an ETag.
func OpenAPIHandler() http.Handler {
	sum := sha256.Sum256(openAPI)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(openAPI))
	})
}
