package payrail

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

// CanonicalString is what a merchant signs: METHOD, the request target
// exactly as sent (escaped path, plus "?" and the raw query when there is
// one), timestamp, nonce and the lowercase hex SHA-256 of the body (of the
// empty string without one), joined by "\n", no trailing newline.
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

// Sign returns the X-Payrail-Signature value: "v1=" and the lowercase hex
// HMAC-SHA256, keyed by the client secret, of CanonicalString.
func Sign(secret, method, requestTarget, timestamp, nonce string, body []byte) string {
	h := hmac.New(sha256.New, []byte(secret))
	io.WriteString(h, CanonicalString(method, requestTarget, timestamp, nonce, body))
	return "v1=" + hex.EncodeToString(h.Sum(nil))
}

// SignRequest signs req as clientID with secret at now: the four
// X-Payrail-* headers, with a fresh random nonce. The target signed is
// req.URL.RequestURI(), what net/http writes on the request line. It reads
// req.Body and puts an identical one back (with GetBody).
func SignRequest(req *http.Request, clientID, secret string, now time.Time) error {
	if clientID == "" || secret == "" {
		return errors.New("payrail: sign request: empty client id or secret")
	}
	if req.URL == nil {
		return errors.New("payrail: sign request: no URL")
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return fmt.Errorf("payrail: sign request: read body: %w", err)
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.ContentLength = int64(len(body))
	}
	nonce, err := Nonce()
	if err != nil {
		return fmt.Errorf("payrail: sign request: %w", err)
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

// Nonce returns 32 characters of [A-Za-z0-9_-] carrying 192 random bits.
func Nonce() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
