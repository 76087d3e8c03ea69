package demoshop

import (
	"time"

	"github.com/payrail/payrail/sdk/payrail/webhook"
)

// Errors VerifyWebhook returns, so the callbacks panel can say why a
// signature did not verify (the SDK's, sdk/payrail/webhook).
var (
	ErrWebhookMissingHeaders = webhook.ErrMissingHeaders
	ErrWebhookStale          = webhook.ErrStale
	ErrWebhookNoMatch        = webhook.ErrNoMatch
	ErrWebhookBadSecret      = webhook.ErrBadSecret
)

// WebhookTolerance is how far webhook-timestamp may be from now (Standard
// Webhooks recommends five minutes).
const WebhookTolerance = webhook.Tolerance

// SignWebhook returns the Standard Webhooks signature "v1,<base64>" of one
// message (the SDK's webhook.Sign).
func SignWebhook(secret, id, timestamp string, body []byte) (string, error) {
	return webhook.Sign(secret, id, timestamp, body)
}

// VerifyWebhook checks a callback's headers against every secret with the
// SDK a merchant would use (webhook.VerifyAt).
func VerifyWebhook(secrets []string, id, timestamp, signature string, body []byte, now time.Time) error {
	return webhook.VerifyAt(secrets, id, timestamp, signature, body, now)
}
