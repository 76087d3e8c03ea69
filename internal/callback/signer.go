// Package callback delivers merchant callbacks: the outbox rows the store
// writes with every transition, sent as Standard Webhooks (signed, retried
// with backoff until they land or die), through an HTTP client that refuses
// private networks at registration and at dial time. The schedule lives in
// PostgreSQL; asynq tasks only trigger attempts. It never changes an order.
package callback

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/payrail/payrail/sdk/payrail/webhook"
)

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// ErrBadSecret means a callback secret is not of the form whsec_<base64>.
var ErrBadSecret = errors.New("callback secret is not whsec_<base64>")

// SecretKey returns the HMAC key of a whsec_<base64> secret.
func SecretKey(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, ErrBadSecret
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return nil, ErrBadSecret
	}
	return key, nil
}

// Sign returns the webhook-signature header value for one message: one
// "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" per secret, separated by
// spaces, so a receiver holding either secret of a rotation verifies it.
// ErrBadSecret when a secret is malformed.
func Sign(secrets []string, id string, ts time.Time, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("no active callback secret")
	}
	sigs := make([]string, 0, len(secrets))
	for _, sec := range secrets {
		if _, err := SecretKey(sec); err != nil {
			return "", err
		}
		// The SDK's signer: one implementation for payrail and merchants.
		sig, err := webhook.Sign(sec, id, strconv.FormatInt(ts.Unix(), 10), body)
		if err != nil {
			return "", err
		}
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " "), nil
}
