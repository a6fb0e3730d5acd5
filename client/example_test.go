package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/gatekeeper/gatekeeper/client"
)

// Post a payload and wait until it is applied. docs/api.md shows this
// function's body (TestDocsShowTheExample holds them equal).
func Example() {
	c, err := client.New(client.Config{
		BaseURL: "http://127.0.0.1:8080",
		APIKey:  os.Getenv("GATEKEEPER_KEY"), // "" without BACKENDS_FILE
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	payload := map[string]any{"activities": []map[string]any{{
		"operation": "insert", "table": "orders",
		"col_names": []string{"id"}, "col_types": []string{"INTEGER"}, "col_values": []any{42},
	}}}
	// The same key on every attempt, and after a restart of this program:
	// the payload is applied once.
	res, err := c.Post(ctx, payload, client.WithIdempotencyKey("order-42"))
	var refused *client.APIError
	if errors.As(err, &refused) {
		log.Fatalf("refused, fix the payload: %v", refused) // 400, 403, 413, 415, 422...
	} else if err != nil {
		log.Fatalf("not accepted within the deadline: %v", err) // 503s, transport errors
	}
	st, err := c.WaitApplied(ctx, res.ID)
	if err != nil {
		log.Fatal(err) // poisoned or purged (*client.NotAppliedError), or ctx ended
	}
	fmt.Println(res.ID, st.Status, *st.RowsAffected)
}
