package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

const idAlphabet = "0123456789ABCDEFGHJKLMNPQRSTVWXYZabcdefghijkmnopqrstuvwxyz"

// NewID returns prefix + n random characters from a URL- and PG-safe alphabet.
func NewID(prefix string, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	out := make([]byte, n)
	for i, v := range b {
		out[i] = idAlphabet[int(v)%len(idAlphabet)]
	}
	return prefix + string(out)
}

// NewSecret returns prefix + base64url of 32 random bytes (256 bits).
func NewSecret(prefix string) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// NewCallbackSecret returns a Standard Webhooks secret: whsec_ + base64(32 bytes).
func NewCallbackSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// HashToken hashes a payment token for storage; the token itself is never kept.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}
