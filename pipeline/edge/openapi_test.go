package edge_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/gatekeeper/gatekeeper/messages"
	"github.com/gatekeeper/gatekeeper/pipeline/edge"
)

// The document loads and validates as OpenAPI 3.1 (kin-openapi).
func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(edge.OpenAPIJSON())
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Every status the ingestion API answers is described.
	post := doc.Paths.Find("/api/activities").Post
	for _, code := range []int{200, 400, 401, 403, 408, 409, 413, 415, 422, 429, 500, 503} {
		if post.Responses.Status(code) == nil {
			t.Errorf("POST /api/activities: no response %d", code)
		}
	}
}

// The document's request schema is the gate's: messages/schema.json, its
// $defs made components named Payload_<def> and its $schema left to the
// document's dialect. After a change to schema.json, copy it over with
// the same rewrite (the failure prints what the component must be).
func TestOpenAPIPayloadIsTheGatesSchema(t *testing.T) {
	var gate map[string]any
	if err := json.Unmarshal(messages.SchemaJSON(), &gate); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{}
	for name, def := range gate["$defs"].(map[string]any) {
		want["Payload_"+name] = rewriteRefs(def)
	}
	delete(gate, "$defs")
	delete(gate, "$schema")
	want["Payload"] = rewriteRefs(gate)

	var doc struct {
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(edge.OpenAPIJSON(), &doc); err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		if got := doc.Components.Schemas[name]; !reflect.DeepEqual(got, w) {
			out, _ := json.MarshalIndent(w, "", "  ")
			t.Errorf("components/schemas/%s differs from messages/schema.json; want:\n%s", name, out)
		}
	}
	for name := range doc.Components.Schemas {
		if strings.HasPrefix(name, "Payload_") && want[name] == nil {
			t.Errorf("components/schemas/%s is not in messages/schema.json", name)
		}
	}
}

func rewriteRefs(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" && strings.HasPrefix(s, "#/$defs/") {
				out[k] = "#/components/schemas/Payload_" + strings.TrimPrefix(s, "#/$defs/")
				continue
			}
			out[k] = rewriteRefs(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = rewriteRefs(x)
		}
		return out
	}
	return v
}
