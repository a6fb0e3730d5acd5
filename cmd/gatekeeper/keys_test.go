package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const keysPayload = `{"activities":[{"operation":"insert","table":"t1","col_names":["a"],"col_types":["TEXT"],"col_values":["x"]}]}`

// newKey runs `gatekeeper keys new` and returns its stdout (the entry)
// and the key, which must be stderr's last line.
func newKey(t *testing.T, dir string, args ...string) (entry, key string) {
	t.Helper()
	r := gk(t, dir, nil, append([]string{"keys", "new"}, args...)...)
	ls := lines(r.stderr)
	if r.code != 0 || len(ls) == 0 || !strings.HasPrefix(ls[len(ls)-1], "gk_") {
		t.Fatalf("keys new %v: exit %d, stderr %q", args, r.code, r.stderr)
	}
	key = ls[len(ls)-1]
	if strings.Contains(r.stdout, key) {
		t.Fatal("the key is in the entry: it must only be on stderr")
	}
	return r.stdout, key
}

func postWithKey(t *testing.T, addr, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/activities", strings.NewReader(keysPayload))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// `gatekeeper keys new B >> backends.yaml`, twice, makes a file the
// service loads; SIGHUP reloads it without a restart: a new key works, a
// removed key stops working, and a broken file keeps the one before.
func TestKeysNewAndReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "backends.yaml")
	billingEntry, billing := newKey(t, dir, "billing", "--tables", "t1,orders_*")
	opsEntry, _ := newKey(t, dir, "ops", "--admin")
	appendFile(t, file, billingEntry)
	appendFile(t, file, opsEntry)
	s := startService(t, dir, map[string]string{"BACKENDS_FILE": file})
	if code := postWithKey(t, s.addr, billing); code != 200 {
		t.Fatalf("billing's key: %d", code)
	}
	if code := postWithKey(t, s.addr, ""); code != 401 {
		t.Fatalf("no key: %d", code)
	}

	// Rotate: shop is added, billing removed.
	shopEntry, shop := newKey(t, dir, "shop")
	if err := os.WriteFile(file, []byte(opsEntry+shopEntry), 0o600); err != nil {
		t.Fatal(err)
	}
	reloads := func(msg string) func(string) bool {
		return func(l string) bool { return strings.Contains(l, msg) }
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.waitLog(t, 10*time.Second, reloads(`"msg":"Backends file reloaded"`))
	if code := postWithKey(t, s.addr, shop); code != 200 {
		t.Errorf("the new key after SIGHUP: %d", code)
	}
	if code := postWithKey(t, s.addr, billing); code != 401 {
		t.Errorf("the removed key after SIGHUP: %d", code)
	}

	// A broken file is logged and changes nothing.
	if err := os.WriteFile(file, []byte(shopEntry+"- name: Bad Name\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	line := s.waitLog(t, 10*time.Second, reloads(`"msg":"Backends file not reloaded"`))
	if !strings.Contains(line, `entry 2 (Bad Name)`) {
		t.Errorf("the reload error does not name the entry: %s", line)
	}
	if code := postWithKey(t, s.addr, shop); code != 200 {
		t.Errorf("the key in force after a broken reload: %d", code)
	}
	if code := s.terminate(t); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// Secure by default: on the emulator, without BACKENDS_FILE or AUTH=none,
// the binary refuses to start and says how to make keys.
func TestServeRefusesEmulatorWithoutKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := serviceEnv(dir)
	env["PUBSUB_EMULATOR_HOST"] = freeAddr(t)
	r := gk(t, dir, env, "serve")
	if r.code == 0 || !strings.Contains(r.stderr, "gatekeeper keys new BACKEND >> backends.yaml") ||
		!strings.Contains(r.stderr, "BACKENDS_FILE") || !strings.Contains(r.stderr, "AUTH=none") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// A service with keys: the commands that ask it send the admin key from
// GATEKEEPER_ADMIN_KEY or --admin-key; without one, or with a backend's,
// they fail saying which key they need.
func TestCommandsSendTheAdminKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "backends.yaml")
	billingEntry, billing := newKey(t, dir, "billing")
	opsEntry, ops := newKey(t, dir, "ops", "--admin")
	appendFile(t, file, billingEntry)
	appendFile(t, file, opsEntry)
	s := startService(t, dir, map[string]string{"BACKENDS_FILE": file})
	env := map[string]string{"ADMIN_ADDR": s.adminAddr}

	if r := gk(t, dir, env, "tables"); r.code != 1 ||
		!strings.HasPrefix(r.stderr, "gatekeeper: the service on "+s.adminAddr+" wants an admin key: set GATEKEEPER_ADMIN_KEY or --admin-key") {
		t.Errorf("no key: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := gk(t, dir, env, "poison", "list", "--admin-key", billing); r.code != 1 ||
		!strings.Contains(r.stderr, "it needs an admin key (admin: true in BACKENDS_FILE), not a backend's") {
		t.Errorf("a backend's key: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := gk(t, dir, env, "poison", "list", "--admin-key", ops); r.code != 0 || r.stderr != "no payloads in state poisoned match\n" {
		t.Errorf("--admin-key: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	env["GATEKEEPER_ADMIN_KEY"] = ops
	if r := gk(t, dir, env, "tables"); r.code != 0 || r.stderr != "" {
		t.Errorf("GATEKEEPER_ADMIN_KEY: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
