package callback

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The Standard Webhooks specification's published test vector.
const (
	vecSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID      = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecUnix    = 1614265330
	vecPayload = `{"test": 2432232314}`
	vecSig     = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignVector(t *testing.T) {
	got, err := Sign([]string{vecSecret}, vecID, time.Unix(vecUnix, 0), []byte(vecPayload))
	if err != nil {
		t.Fatal(err)
	}
	if got != vecSig {
		t.Fatalf("signature = %s, want %s", got, vecSig)
	}
}

func TestSignVerifiesWithLibraryDuringRotation(t *testing.T) {
	const other = "whsec_c2Vjb25kIHNlY3JldCBmb3Igcm90YXRpb24gdGVzdHM="
	now := time.Now()
	body := []byte(`{"type":"payment.paid","data":{"orderId":"ord_123456"}}`)
	sig, err := Sign([]string{vecSecret, other}, "msg_rotation", now, body)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Split(sig, " ")); n != 2 {
		t.Fatalf("want two space-separated signatures, got %q", sig)
	}
	h := http.Header{}
	h.Set(HeaderID, "msg_rotation")
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderSignature, sig)
	for _, s := range []string{vecSecret, other} {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, h); err != nil {
			t.Errorf("secret %s…: %v", s[:10], err)
		}
	}
	wh, _ := standardwebhooks.NewWebhook("whsec_" + "bm90IG9uZSBvZiB0aGUgbWVyY2hhbnQncyBzZWNyZXRz")
	if err := wh.Verify(body, h); err == nil {
		t.Error("a foreign secret verified")
	}
	if err := wh.Verify(append(body, ' '), h); err == nil {
		t.Error("a changed body verified")
	}
}

func TestSignRejectsBadSecret(t *testing.T) {
	for _, s := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_***"} {
		if _, err := Sign([]string{s}, "msg_x", time.Now(), nil); err == nil {
			t.Errorf("secret %q accepted", s)
		}
	}
	if _, err := Sign(nil, "msg_x", time.Now(), nil); err == nil {
		t.Error("no secrets accepted")
	}
}
