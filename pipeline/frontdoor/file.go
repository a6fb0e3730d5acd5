// Package frontdoor is who may post what, and how fast: the backends file
// (BACKENDS_FILE), its API keys and per-backend quotas. It decides; the
// pipeline's HTTP middleware answers.
package frontdoor

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"golang.org/x/time/rate"
	"gopkg.in/yaml.v3"

	"github.com/gatekeeper/gatekeeper/messages"
)

// MaxKeysPerBackend is how many keys one entry may hold: two, the old and
// the new one while a key is rotated.
const MaxKeysPerBackend = 2

// Entry is one item of the backends file: a backend that posts payloads,
// or (Admin) the operators who open the admin API and page.
type Entry struct {
	// Name names the backend in metadata, metrics and logs. Required:
	// 1-64 of a-z, 0-9, '-' and '_'.
	Name string `yaml:"name" json:"name"`
	// Keys are the backend's API keys, hashed. Required: 1 or 2.
	Keys []Key `yaml:"keys" json:"keys"`
	// Admin makes the keys open the admin API instead of the ingestion
	// API. Optional.
	Admin bool `yaml:"admin,omitempty" json:"admin,omitempty"`
	// Rate is the payloads per second the backend may post. Optional,
	// default 0: no quota.
	Rate float64 `yaml:"rate,omitempty" json:"rate,omitempty"`
	// Burst is how many payloads it may post at once above Rate. Optional,
	// default the rate rounded up (at least 1); only with Rate.
	Burst int `yaml:"burst,omitempty" json:"burst,omitempty"`
	// Tables it may write: exact names, or prefixes ending in '*'.
	// Optional, default every table.
	Tables []string `yaml:"tables,omitempty" json:"tables,omitempty"`
}

// Key is one API key as the file keeps it: never in clear.
type Key struct {
	// Prefix is the key's visible start (gk_ and 8 hex digits), so that an
	// operator can tell keys apart in the file and in logs.
	Prefix string `yaml:"prefix" json:"prefix"`
	// SHA256 is the hex SHA-256 of the whole key.
	SHA256 string `yaml:"sha256" json:"sha256"`
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	prefixRE = regexp.MustCompile(`^gk_[0-9a-f]{8}$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Load reads and validates the backends file at path, reporting every
// problem at once, each with the file and the entry it is in.
func Load(path string) (*Set, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, raw)
}

// Parse is Load for a file already read; name is what errors call it.
func Parse(name string, raw []byte) (*Set, error) {
	var entries []Entry
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// A field of the wrong name or type is a yaml.TypeError, one line per
	// field, and the rest of the file is still decoded: reported together
	// with validate's problems, every one at once.
	var fieldErrs []error
	var typeErr *yaml.TypeError
	if err := dec.Decode(&entries); errors.As(err, &typeErr) {
		for _, e := range typeErr.Errors {
			fieldErrs = append(fieldErrs, fmt.Errorf("%s: %s", name, unknownField.ReplaceAllString(e, "unknown field $1 (want name, keys, admin, rate, burst, tables; a key: prefix, sha256)")))
		}
	} else if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w (want a list of backends: - name: …, keys: [{prefix, sha256}])", name, err)
	}
	if err := errors.Join(append(fieldErrs, validate(name, entries))...); err != nil {
		return nil, err
	}
	return newSet(entries), nil
}

// unknownField is how yaml.v3 words a field that KnownFields refuses.
var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

func validate(file string, entries []Entry) error {
	var errs []error
	names := map[string]int{}
	hashes := map[string]string{}
	for i, e := range entries {
		where := fmt.Sprintf("%s: entry %d", file, i+1)
		if e.Name != "" {
			where += " (" + e.Name + ")"
		}
		bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(where+": "+format, args...)) }
		if !nameRE.MatchString(e.Name) {
			bad("name %q: want 1-64 of a-z, 0-9, - and _", e.Name)
		} else if j, dup := names[e.Name]; dup {
			bad("name %q is already entry %d's", e.Name, j)
		} else {
			names[e.Name] = i + 1
		}
		if len(e.Keys) == 0 || len(e.Keys) > MaxKeysPerBackend {
			bad("%d keys: want 1 or %d (two while a key is rotated)", len(e.Keys), MaxKeysPerBackend)
		}
		for k, key := range e.Keys {
			if !prefixRE.MatchString(key.Prefix) {
				bad("key %d: prefix %q: want gk_ and 8 hex digits, as `gatekeeper keys new` prints it", k+1, key.Prefix)
			}
			if !sha256RE.MatchString(key.SHA256) {
				bad("key %d: sha256: want 64 lowercase hex digits", k+1)
				continue
			}
			if other, dup := hashes[key.SHA256]; dup {
				bad("key %d (%s) is also %s's: every key belongs to one entry", k+1, key.Prefix, other)
			}
			hashes[key.SHA256] = e.Name
		}
		switch {
		case e.Rate < 0:
			bad("rate %v must not be negative", e.Rate)
		case e.Rate > float64(rate.Inf):
			bad("rate %v is too large", e.Rate)
		}
		if e.Burst < 0 {
			bad("burst %d must not be negative", e.Burst)
		}
		if e.Burst != 0 && e.Rate == 0 {
			bad("burst needs a rate")
		}
		for _, t := range e.Tables {
			if !validTablePattern(t) {
				bad("table %q: want a table name, or a prefix of one followed by *", t)
			}
		}
		if e.Admin && (e.Rate != 0 || e.Burst != 0 || len(e.Tables) > 0) {
			bad("an admin entry opens the admin API only: rate, burst and tables do not apply")
		}
	}
	return errors.Join(errs...)
}

func validTablePattern(t string) bool {
	if p, ok := strings.CutSuffix(t, "*"); ok {
		return p == "" || messages.ValidIdentifier(p, 1024)
	}
	return messages.ValidIdentifier(t, 1024)
}

// hashOf decodes a validated hex SHA-256.
func hashOf(s string) (h [32]byte) {
	_, _ = hex.Decode(h[:], []byte(s))
	return h
}
