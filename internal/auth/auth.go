// Package auth owns merchant request authentication: the HMAC-SHA256 signature
// every /v1 request carries (DESIGN.md, "Merchant authentication"), how a
// merchant signs one (SignRequest) and how payrail verifies it (Verifier).
//
// It must never tell an unauthenticated caller more than an error code, never
// compare a signature in variable time, and never record a nonce for a request
// whose signature did not verify: a forged request must not be able to burn a
// legitimate merchant's nonce. It knows nothing of HTTP responses; httpapi maps
// an *Error to one.
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"io"
	"net/http"
	"time"

	"github.com/payrail/payrail/sdk/payrail"
)

// The headers every signed request carries.
const (
	HeaderClientID  = payrail.HeaderClientID
	HeaderTimestamp = payrail.HeaderTimestamp
	HeaderNonce     = payrail.HeaderNonce
	HeaderSignature = payrail.HeaderSignature
)

// SignatureVersion prefixes every signature value ("v1=<hex>").
const SignatureVersion = "v1"

// Defaults used by a Verifier whose fields are zero.
const (
	DefaultMaxSkew  = 300 * time.Second
	DefaultNonceTTL = 10 * time.Minute
)

// CanonicalString is the string a merchant signs (see the SDK's
// payrail.CanonicalString: one implementation for the merchant's side and
// payrail's). The target is taken as sent, not re-encoded, because two
// encodings of one path ("/a%2Fb" and "/a/b") can route differently and
// must not share a signature.
func CanonicalString(method, requestTarget, timestamp, nonce string, body []byte) string {
	return payrail.CanonicalString(method, requestTarget, timestamp, nonce, body)
}

// Sign returns the X-Payrail-Signature value for a request: "v1=" followed by
// the lowercase hex HMAC-SHA256, keyed by secret, of CanonicalString.
func Sign(secret, method, requestTarget, timestamp, nonce string, body []byte) string {
	return payrail.Sign(secret, method, requestTarget, timestamp, nonce, body)
}

// SignRequest signs req as client clientID with secret (payrail.SignRequest).
func SignRequest(req *http.Request, clientID, secret string, now time.Time) error {
	return payrail.SignRequest(req, clientID, secret, now)
}

// validNonce reports whether s is 16–64 characters of [A-Za-z0-9_-].
func validNonce(s string) bool {
	if len(s) < 16 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// mac is the raw HMAC-SHA256 of a canonical string: what the verifier
// compares in constant time (payrail.Sign renders the same bytes in hex).
func mac(secret, canonical string) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	io.WriteString(h, canonical)
	return h.Sum(nil)
}
