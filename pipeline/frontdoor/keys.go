package frontdoor

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"

	"gopkg.in/yaml.v3"
)

// NewKey makes a fresh API key from crypto/rand: gk_, 8 visible hex
// digits, _ and 256 random bits. It returns the key, to give the backend
// once, and its file form.
func NewKey() (string, Key, error) {
	var id [4]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", Key{}, err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", Key{}, err
	}
	prefix := "gk_" + hex.EncodeToString(id[:])
	key := prefix + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(key))
	return key, Key{Prefix: prefix, SHA256: hex.EncodeToString(sum[:])}, nil
}

// EntryYAML is e as one item of the backends file's list, so that
// entries appended one after another make a valid file.
func EntryYAML(e Entry) ([]byte, error) {
	return yaml.Marshal([]Entry{e})
}
