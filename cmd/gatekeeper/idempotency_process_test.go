package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two ingestion processes share no state, yet a retry with the same
// Idempotency-Key that reaches the other one is applied once: both derive
// the same payload id, and the apply stage's ledger makes the second copy a
// duplicate.
func TestIdempotencyKeyAcrossTwoIngestProcessesAppliesOnce(t *testing.T) {
	t.Parallel()
	host := os.Getenv("PUBSUB_EMULATOR_HOST")
	if host == "" {
		t.Skip("PUBSUB_EMULATOR_HOST is not set: two ingest processes need a Pub/Sub they share")
	}
	unique := fmt.Sprintf("idem-%d-%d", os.Getpid(), time.Now().UnixNano())
	shared := map[string]string{
		"PUBSUB_EMULATOR_HOST": host, "PUBSUB_EMBEDDED_ADDR": "",
		"TOPIC_ID": unique, "SUBSCRIPTION_ID": unique + "-sub",
		// Without BACKENDS_FILE, emulator mode will ask for authentication
		// to be turned off explicitly (the front door's secure default).
		"AUTH": "none",
	}
	with := func(extra map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range shared {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	applyDir := t.TempDir()
	apply := startService(t, applyDir, with(map[string]string{"STAGES": "apply"}))
	ingest := []*service{
		startService(t, t.TempDir(), with(map[string]string{"STAGES": "ingest"})),
		startService(t, t.TempDir(), with(map[string]string{"STAGES": "ingest"})),
	}

	body := `{"activities":[{"operation":"insert","table":"orders","col_names":["id"],"col_types":["INTEGER"],"col_values":[42]}]}`
	var ids []string
	for i, s := range ingest {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.addr+"/api/activities", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "order-42")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var answer struct{ ID string }
		if err := json.Unmarshal(raw, &answer); err != nil || resp.StatusCode != 200 {
			t.Fatalf("ingest %d: %d %s", i, resp.StatusCode, raw)
		}
		if resp.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("ingest %d replayed a key it never saw", i)
		}
		ids = append(ids, answer.ID)
	}
	if ids[0] != ids[1] {
		t.Fatalf("the two processes gave the key ids %q and %q", ids[0], ids[1])
	}

	// The ledger settles both copies: one applied, one duplicate.
	if !eventually(30*time.Second, 100*time.Millisecond, func() bool {
		return scrapeSum(t, apply.addr, `gatekeeper_payloads_total{backend="",outcome="applied"}`) == 1 &&
			scrapeSum(t, apply.addr, `gatekeeper_payloads_total{backend="",outcome="duplicate"}`) == 1
	}) {
		t.Fatalf("applied %v, duplicate %v; want 1 and 1",
			scrapeSum(t, apply.addr, `gatekeeper_payloads_total{backend="",outcome="applied"}`),
			scrapeSum(t, apply.addr, `gatekeeper_payloads_total{backend="",outcome="duplicate"}`))
	}
	wh := map[string]string{"WAREHOUSE": "sqlite:" + filepath.Join(applyDir, "warehouse.db")}
	if r := gk(t, applyDir, wh, "rows", "orders", "--direct"); r.code != 0 || r.stdout != "{\"id\":42}\n" {
		t.Fatalf("rows orders: exit %d, %q, stderr %q; want the row once", r.code, r.stdout, r.stderr)
	}
}
