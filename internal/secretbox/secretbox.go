// Package secretbox owns encryption at rest of payrail's secrets (client secrets,
// callback secrets, stored responses that contain one) with AES-256-GCM and a
// keyring that rotates: the first key encrypts, every key decrypts.
//
// It never logs, prints or returns key material, not even inside an error: a
// misconfigured PAYRAIL_ENCRYPTION_KEYS must not end up in a log line.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size in bytes of every key: AES-256.
const KeySize = 32

const maxIDLen = 32

// ErrUnknownKey is returned by Decrypt when the ciphertext names a key id the
// keyring does not hold (the key was retired before the data was re-encrypted).
var ErrUnknownKey = errors.New("secretbox: unknown key id")

// ErrDecrypt is returned by Decrypt when the ciphertext is malformed, was
// tampered with, or was sealed with other associated data. It deliberately does
// not say which.
var ErrDecrypt = errors.New("secretbox: message authentication failed")

// Keyring holds the keys from PAYRAIL_ENCRYPTION_KEYS. It is safe for concurrent
// use.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
	ids     []string // in configuration order; ids[0] == primary
}

// ParseKeys parses PAYRAIL_ENCRYPTION_KEYS: "id:base64key[,id:base64key…]".
// Each key must decode (standard base64, padded or not) to exactly 32 bytes;
// ids are 1–32 of [A-Za-z0-9_-] and unique. Whitespace around entries is
// ignored. The first key encrypts; all keys decrypt.
//
// Errors name the entry by position and id and the problem, never the key.
func ParseKeys(s string) (*Keyring, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("secretbox: no encryption keys configured")
	}
	k := &Keyring{aeads: make(map[string]cipher.AEAD)}
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		pos := i + 1
		if entry == "" {
			return nil, fmt.Errorf("secretbox: key entry %d is empty", pos)
		}
		id, enc, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, fmt.Errorf("secretbox: key entry %d: want id:base64key", pos)
		}
		if !validID(id) {
			// The id is not echoed either: a pasted key without an id would land here.
			return nil, fmt.Errorf("secretbox: key entry %d: id must be 1-%d characters of [A-Za-z0-9_-]", pos, maxIDLen)
		}
		if _, dup := k.aeads[id]; dup {
			return nil, fmt.Errorf("secretbox: key entry %d: duplicate key id %q", pos, id)
		}
		key, err := decodeKey(enc)
		if err != nil {
			return nil, fmt.Errorf("secretbox: key %q: not valid base64", id)
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("secretbox: key %q: decodes to %d bytes, want %d", id, len(key), KeySize)
		}
		// An all-zero key is an example value (base64 "AAAA…="), never a
		// generated one: anyone who read the example can decrypt.
		var or byte
		for _, b := range key {
			or |= b
		}
		if or == 0 {
			return nil, fmt.Errorf("secretbox: key %q: is all zero bytes; generate one (openssl rand -base64 32)", id)
		}
		aead, err := newAEAD(key)
		if err != nil {
			return nil, fmt.Errorf("secretbox: key %q: %w", id, err)
		}
		k.aeads[id] = aead
		k.ids = append(k.ids, id)
	}
	k.primary = k.ids[0]
	return k, nil
}

// decodeKey accepts standard base64 with or without padding.
func decodeKey(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func validID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// PrimaryID returns the id of the key that Encrypt uses.
func (k *Keyring) PrimaryID() string { return k.primary }

// IDs returns every key id in configuration order, the primary first.
func (k *Keyring) IDs() []string { return append([]string(nil), k.ids...) }

// Encrypt seals plaintext with the primary key and a fresh random 96-bit nonce,
// binding it to aad (for example the row and column it is stored in, so a
// ciphertext copied to another row does not decrypt). It returns the key id to
// store next to the ciphertext, and ciphertext = nonce || sealed.
func (k *Keyring) Encrypt(plaintext, aad []byte) (keyID string, ciphertext []byte, err error) {
	aead := k.aeads[k.primary]
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return "", nil, fmt.Errorf("secretbox: nonce: %w", err)
	}
	return k.primary, aead.Seal(out, out, plaintext, aad), nil
}

// Decrypt opens a ciphertext produced by Encrypt under key keyID with the same
// aad. It returns ErrUnknownKey when the keyring lacks keyID and ErrDecrypt when
// the ciphertext is short, altered, or the aad differs.
func (k *Keyring) Decrypt(keyID string, ciphertext, aad []byte) ([]byte, error) {
	aead, ok := k.aeads[keyID]
	if !ok {
		return nil, ErrUnknownKey
	}
	ns := aead.NonceSize()
	if len(ciphertext) < ns+aead.Overhead() {
		return nil, ErrDecrypt
	}
	pt, err := aead.Open(nil, ciphertext[:ns], ciphertext[ns:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// GenerateKeyString returns a new key entry "id:base64(32 random bytes)" for
// PAYRAIL_ENCRYPTION_KEYS. To rotate, put it first and keep the old entries
// after it until every stored secret has been re-encrypted.
func GenerateKeyString(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("secretbox: id must be 1-%d characters of [A-Za-z0-9_-]", maxIDLen)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("secretbox: generate key: %w", err)
	}
	return id + ":" + base64.StdEncoding.EncodeToString(key), nil
}
