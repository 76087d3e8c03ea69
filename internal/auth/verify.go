package auth

import (
	"context"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/payrail/payrail/internal/payment"
)

// Error codes a failed verification carries (payment's, so the HTTP layer
// maps them in its one table). They are the whole answer an
// unauthenticated caller gets.
const (
	CodeMissingAuth       = payment.CodeMissingAuth
	CodeUnknownClient     = payment.CodeUnknownClient
	CodeStaleTimestamp    = payment.CodeStaleTimestamp
	CodeReplayedNonce     = payment.CodeReplayedNonce
	CodeInvalidSignature  = payment.CodeInvalidSignature
	CodeMerchantSuspended = payment.CodeMerchantSuspended
	CodeAuthUnavailable   = payment.CodeAuthUnavailable
)

// Error is a verification failure with a stable Code. Err, when set, is the
// underlying cause (a store's error) for logs only; it must never be shown
// to the caller.
type Error struct {
	Code string
	Err  error
}

// Error returns "auth: CODE", followed by the cause when there is one.
func (e *Error) Error() string {
	if e.Err != nil {
		return "auth: " + e.Code + ": " + e.Err.Error()
	}
	return "auth: " + e.Code
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

func fail(code string) *Error { return &Error{Code: code} }

func unavailable(cause error) *Error {
	e := fail(CodeAuthUnavailable)
	e.Err = cause
	return e
}

// Credentials is what the verifier needs to know about a client.
type Credentials struct {
	MerchantID string
	Suspended  bool
	// Secrets are the client's active secrets in plaintext: one, or two while
	// the merchant rotates. A request signed with any of them verifies. Empty
	// strings are ignored.
	Secrets []string
}

// ErrUnknownClient is returned by a CredentialStore when no client has the id.
var ErrUnknownClient = errors.New("auth: unknown client")

// CredentialStore looks a client up by its client id.
type CredentialStore interface {
	// Credentials returns the client's merchant, status and active secrets.
	// It returns ErrUnknownClient (possibly wrapped) when there is no such
	// client; any other error means the store could not answer.
	Credentials(ctx context.Context, clientID string) (Credentials, error)
}

// NonceStore remembers which nonces a client has used.
type NonceStore interface {
	// Use records nonce for clientID for ttl. It returns fresh=false, nil when
	// the nonce was already recorded and not yet expired, and an error when
	// the store could not be reached (the request then fails closed).
	Use(ctx context.Context, clientID, nonce string, ttl time.Duration) (fresh bool, err error)
}

// Verifier checks signed merchant requests. Its zero durations take the
// defaults (MaxSkew 300 s, NonceTTL 10 min) and a nil Now is time.Now. It is
// safe for concurrent use.
type Verifier struct {
	Store  CredentialStore
	Nonces NonceStore
	Now    func() time.Time
	// MaxSkew is how far the request's timestamp may be from Now, either way.
	MaxSkew time.Duration
	// NonceTTL is how long a used nonce is remembered. It is raised to
	// 2×MaxSkew when shorter: a timestamp stays acceptable for 2×MaxSkew of
	// server time (from MaxSkew ahead to MaxSkew behind), and a nonce
	// forgotten inside that window could be replayed.
	NonceTTL time.Duration
}

const maxClientIDLen = 128

// Verify authenticates r, whose body the caller has already read (and capped
// at 1 MiB) into body, and returns the merchant it belongs to. The target
// checked is r.RequestURI as sent (r.URL.RequestURI() when empty, as in tests
// that build requests by hand); an absolute-form target is reduced to its
// path and query.
//
// Every failure is an *Error, checked in this order:
//   - MISSING_AUTH: a header is absent or repeated, the client id is not 1–128
//     visible ASCII characters, the nonce is not 16–64 of [A-Za-z0-9_-], or
//     the timestamp is not decimal digits;
//   - STALE_TIMESTAMP: the timestamp is more than MaxSkew from Now;
//   - UNKNOWN_CLIENT, or AUTH_UNAVAILABLE (503) when the credential store fails;
//   - INVALID_SIGNATURE: the signature is not "v1=" + 64 lowercase hex or
//     matches none of the client's active secrets (compared in constant time);
//   - MERCHANT_SUSPENDED (403), only once the signature has verified, so an
//     unauthenticated caller learns nothing about the merchant;
//   - REPLAYED_NONCE, or AUTH_UNAVAILABLE when the nonce store fails. The
//     nonce is recorded only here, after the signature verified, so a forged
//     request cannot burn a merchant's nonce.
func (v *Verifier) Verify(ctx context.Context, r *http.Request, body []byte) (merchantID string, err error) {
	clientID, ok1 := single(r.Header, HeaderClientID)
	ts, ok2 := single(r.Header, HeaderTimestamp)
	nonce, ok3 := single(r.Header, HeaderNonce)
	sig, ok4 := single(r.Header, HeaderSignature)
	if !ok1 || !ok2 || !ok3 || !ok4 || !validClientID(clientID) || !validNonce(nonce) || !isDigits(ts) {
		return "", fail(CodeMissingAuth)
	}

	if !v.fresh(ts) {
		return "", fail(CodeStaleTimestamp)
	}

	if v.Store == nil || v.Nonces == nil {
		return "", unavailable(errors.New("verifier has no credential or nonce store"))
	}
	creds, err := v.Store.Credentials(ctx, clientID)
	if errors.Is(err, ErrUnknownClient) {
		return "", fail(CodeUnknownClient)
	}
	if err != nil {
		return "", unavailable(err)
	}

	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	if !verifySignature(creds.Secrets, sig, CanonicalString(method, requestTarget(r), ts, nonce, body)) {
		return "", fail(CodeInvalidSignature)
	}

	if creds.Suspended {
		return "", fail(CodeMerchantSuspended)
	}

	fresh, err := v.Nonces.Use(ctx, clientID, nonce, v.nonceTTL())
	if err != nil {
		return "", unavailable(err)
	}
	if !fresh {
		return "", fail(CodeReplayedNonce)
	}
	return creds.MerchantID, nil
}

// single returns the header's value when it is present exactly once.
func single(h http.Header, key string) (string, bool) {
	vs := h.Values(key)
	if len(vs) != 1 || vs[0] == "" {
		return "", false
	}
	return vs[0], true
}

func (v *Verifier) maxSkew() time.Duration {
	if v.MaxSkew > 0 {
		return v.MaxSkew
	}
	return DefaultMaxSkew
}

func (v *Verifier) nonceTTL() time.Duration {
	ttl := v.NonceTTL
	if ttl <= 0 {
		ttl = DefaultNonceTTL
	}
	if w := 2 * v.maxSkew(); ttl < w {
		ttl = w
	}
	return ttl
}

// fresh reports whether the decimal unix timestamp ts is within MaxSkew of
// Now. A value too large for int64 is simply stale.
func (v *Verifier) fresh(ts string) bool {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	// sec >= 0 and |now| is far from the int64 limits, so this cannot overflow.
	diff := now().Unix() - sec
	skew := int64(v.maxSkew() / time.Second)
	return -skew <= diff && diff <= skew
}

// verifySignature reports whether sig is a well-formed v1 signature matching
// canonical under one of secrets. Every secret is tried, so the time taken
// does not depend on which one matched.
func verifySignature(secrets []string, sig, canonical string) bool {
	hexSig, ok := strings.CutPrefix(sig, SignatureVersion+"=")
	if !ok || len(hexSig) != 64 || !isLowerHex(hexSig) {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	match := false
	for _, s := range secrets {
		if s == "" {
			continue // an empty key would let anyone sign
		}
		if hmac.Equal(got, mac(s, canonical)) {
			match = true
		}
	}
	return match
}

// requestTarget returns the request target as the client sent it, reduced to
// origin form (path and query) when it was sent in absolute form.
func requestTarget(r *http.Request) string {
	t := r.RequestURI
	if t == "" {
		if r.URL == nil {
			return ""
		}
		return r.URL.RequestURI()
	}
	if strings.HasPrefix(t, "/") || t == "*" {
		return t
	}
	// Absolute form, "scheme://authority/path?query" (RFC 9112, 3.2.2).
	if _, rest, ok := strings.Cut(t, "://"); ok {
		if i := strings.IndexAny(rest, "/?"); i >= 0 {
			if rest[i] == '?' {
				return "/" + rest[i:]
			}
			return rest[i:]
		}
		return "/"
	}
	return t
}

func validClientID(s string) bool {
	if len(s) == 0 || len(s) > maxClientIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
