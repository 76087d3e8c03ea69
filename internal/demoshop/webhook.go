package demoshop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors VerifyWebhook returns, so the callbacks panel can say why a
// signature did not verify.
var (
	ErrWebhookMissingHeaders = errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	ErrWebhookStale          = errors.New("webhook-timestamp too far from now")
	ErrWebhookNoMatch        = errors.New("no v1 signature matches")
	ErrWebhookBadSecret      = errors.New("callback secret is not whsec_<base64>")
)

// WebhookTolerance is how far webhook-timestamp may be from now. Standard
// Webhooks recommends five minutes: it bounds how long a captured request can
// be replayed.
const WebhookTolerance = 5 * time.Minute

// SignWebhook returns the Standard Webhooks signature "v1,<base64>" of one
// message: HMAC-SHA256, keyed by the base64-decoded part of secret after
// "whsec_", of id + "." + timestamp + "." + body.
func SignWebhook(secret, id, timestamp string, body []byte) (string, error) {
	key, err := webhookKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + base64.StdEncoding.EncodeToString(webhookMAC(key, id, timestamp, body)), nil
}

// VerifyWebhook checks a callback's headers against every secret (a merchant
// holds two during rotation): webhook-signature is a space-separated list of
// "v1,<base64>" and one match with any secret suffices. It returns
// ErrWebhookMissingHeaders, ErrWebhookBadSecret, ErrWebhookStale (timestamp
// more than WebhookTolerance from now) or ErrWebhookNoMatch. The comparison
// is constant-time.
func VerifyWebhook(secrets []string, id, timestamp, signature string, body []byte, now time.Time) error {
	if id == "" || timestamp == "" || signature == "" {
		return ErrWebhookMissingHeaders
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not unix seconds", ErrWebhookStale, timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > WebhookTolerance || d < -WebhookTolerance {
		return ErrWebhookStale
	}
	var sigs [][]byte
	for _, part := range strings.Fields(signature) {
		v, b64, ok := strings.Cut(part, ",")
		if !ok || v != "v1" {
			continue
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil {
			continue
		}
		sigs = append(sigs, raw)
	}
	for _, secret := range secrets {
		key, err := webhookKey(secret)
		if err != nil {
			return err
		}
		want := webhookMAC(key, id, timestamp, body)
		for _, got := range sigs {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrWebhookNoMatch
}

func webhookKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return nil, ErrWebhookBadSecret
	}
	return key, nil
}

func webhookMAC(key []byte, id, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}
