package webhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/payrail/payrail/sdk/payrail/webhook"
)

func TestVerify(t *testing.T) {
	old, cur := "whsec_b2xkLXNlY3JldC1rZXktMTIzNDU2", "whsec_bmV3LXNlY3JldC1rZXktNjU0MzIx"
	body := []byte(`{"type":"payment.paid"}`)
	now := time.Unix(1772323200, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	s1, _ := webhook.Sign(old, "msg_1", ts, body)
	s2, _ := webhook.Sign(cur, "msg_1", ts, body)
	h := http.Header{}
	h.Set(webhook.HeaderID, "msg_1")
	h.Set(webhook.HeaderTimestamp, ts)
	h.Set(webhook.HeaderSignature, s1+" "+s2)
	for name, c := range map[string]struct {
		secrets []string
		id, ts  string
		body    []byte
		want    error
	}{
		"new secret":     {[]string{cur}, "msg_1", ts, body, nil},
		"old secret":     {[]string{old}, "msg_1", ts, body, nil},
		"other secret":   {[]string{"whsec_b3RoZXI="}, "msg_1", ts, body, webhook.ErrNoMatch},
		"tampered body":  {[]string{cur}, "msg_1", ts, []byte(`{"type":"payment.failed"}`), webhook.ErrNoMatch},
		"other id":       {[]string{cur}, "msg_2", ts, body, webhook.ErrNoMatch},
		"stale":          {[]string{cur}, "msg_1", strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10), body, webhook.ErrStale},
		"no id":          {[]string{cur}, "", ts, body, webhook.ErrMissingHeaders},
		"garbled secret": {[]string{"whsec_***"}, "msg_1", ts, body, webhook.ErrBadSecret},
	} {
		err := webhook.VerifyAt(c.secrets, c.id, c.ts, h.Get(webhook.HeaderSignature), c.body, now)
		if (c.want == nil && err != nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}
