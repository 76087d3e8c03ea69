// Package webhook verifies payrail's callbacks, which are Standard
// Webhooks (https://www.standardwebhooks.com/): headers webhook-id,
// webhook-timestamp and webhook-signature ("v1,<base64>" values, space
// separated, one per active secret), signed with HMAC-SHA256 keyed by the
// base64-decoded part of the merchant's whsec_ secret after the prefix, over
// id + "." + timestamp + "." + body.
//
// Verify before reading the body as anything; deduplicate on webhook-id,
// which is stable across every retry of one event.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers a callback carries.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Tolerance is how far a callback's timestamp may be from the receiver's
// clock; an older one is refused as a replay.
const Tolerance = 5 * time.Minute

// Verification errors, named so a receiver can tell them apart.
var (
	ErrMissingHeaders = errors.New("webhook: webhook-id, webhook-timestamp or webhook-signature missing")
	ErrBadSecret      = errors.New("webhook: the secret is not a whsec_<base64> secret")
	ErrStale          = errors.New("webhook: timestamp outside the tolerance (stale or replayed)")
	ErrNoMatch        = errors.New("webhook: no signature matches")
)

// Sign returns the signature "v1,<base64>" of one message with secret.
func Sign(secret, id, timestamp string, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, timestamp, body)), nil
}

// Verify checks a callback's headers and raw body against the merchant's
// secrets (two during a rotation: one match suffices) at the current time.
func Verify(secrets []string, h http.Header, body []byte) error {
	return VerifyAt(secrets, h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature), body, time.Now())
}

// VerifyAt is Verify with the header values and the clock given: it returns
// ErrMissingHeaders, ErrBadSecret, ErrStale (timestamp more than Tolerance
// from now) or ErrNoMatch. Comparisons are constant-time.
func VerifyAt(secrets []string, id, timestamp, signature string, body []byte, now time.Time) error {
	if id == "" || timestamp == "" || signature == "" {
		return ErrMissingHeaders
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not unix seconds", ErrStale, timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > Tolerance || d < -Tolerance {
		return ErrStale
	}
	var sigs [][]byte
	for _, part := range strings.Fields(signature) {
		v, b64, ok := strings.Cut(part, ",")
		if !ok || v != "v1" {
			continue
		}
		if raw, err := base64.StdEncoding.Strict().DecodeString(b64); err == nil {
			sigs = append(sigs, raw)
		}
	}
	for _, secret := range secrets {
		key, err := secretKey(secret)
		if err != nil {
			return err
		}
		want := mac(key, id, timestamp, body)
		for _, got := range sigs {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrNoMatch
}

func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return nil, ErrBadSecret
	}
	return key, nil
}

func mac(key []byte, id, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}
