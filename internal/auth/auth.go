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
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers every signed request carries.
const (
	HeaderClientID  = "X-Payrail-Client-Id"
	HeaderTimestamp = "X-Payrail-Timestamp"
	HeaderNonce     = "X-Payrail-Nonce"
	HeaderSignature = "X-Payrail-Signature"
)

// SignatureVersion prefixes every signature value ("v1=<hex>").
const SignatureVersion = "v1"

// Defaults used by a Verifier whose fields are zero.
const (
	DefaultMaxSkew  = 300 * time.Second
	DefaultNonceTTL = 10 * time.Minute
)

// CanonicalString returns the string a merchant signs: the lines METHOD, the
// request target exactly as sent (escaped path, plus "?" and the raw query when
// there is one), timestamp, nonce and the lowercase hex SHA-256 of body (of the
// empty string when there is no body), joined by "\n" with no trailing newline.
//
// The target is taken as sent, not re-encoded, because two encodings of one
// path ("/a%2Fb" and "/a/b") can route differently and must not share a
// signature.
func CanonicalString(method, requestTarget, timestamp, nonce string, body []byte) string {
	sum := sha256.Sum256(body)
	var b strings.Builder
	b.Grow(len(method) + len(requestTarget) + len(timestamp) + len(nonce) + 4 + 2*sha256.Size)
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(requestTarget)
	b.WriteByte('\n')
	b.WriteString(timestamp)
	b.WriteByte('\n')
	b.WriteString(nonce)
	b.WriteByte('\n')
	b.WriteString(hex.EncodeToString(sum[:]))
	return b.String()
}

// Sign returns the X-Payrail-Signature value for a request: "v1=" followed by
// the lowercase hex HMAC-SHA256, keyed by secret, of CanonicalString.
func Sign(secret, method, requestTarget, timestamp, nonce string, body []byte) string {
	return SignatureVersion + "=" + hex.EncodeToString(mac(secret, CanonicalString(method, requestTarget, timestamp, nonce, body)))
}

func mac(secret, canonical string) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	io.WriteString(h, canonical)
	return h.Sum(nil)
}

// SignRequest signs req as client clientID with secret: it sets the four
// X-Payrail-* headers, with a fresh random 32-character nonce and now as the
// timestamp. The target signed is req.URL.RequestURI(), which is what
// net/http's client writes on the request line. It reads req.Body and puts an
// identical one back (and sets GetBody, so redirects and retries resend it).
func SignRequest(req *http.Request, clientID, secret string, now time.Time) error {
	if clientID == "" || secret == "" {
		return errors.New("auth: sign request: empty client id or secret")
	}
	if req.URL == nil {
		return errors.New("auth: sign request: no URL")
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return fmt.Errorf("auth: sign request: read body: %w", err)
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.ContentLength = int64(len(body))
	}
	nonce, err := newNonce()
	if err != nil {
		return fmt.Errorf("auth: sign request: %w", err)
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set(HeaderClientID, clientID)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set(HeaderSignature, Sign(secret, method, req.URL.RequestURI(), ts, nonce, body))
	return nil
}

// newNonce returns 32 characters of [A-Za-z0-9_-] carrying 192 random bits.
func newNonce() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
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
