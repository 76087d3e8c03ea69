package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/callback"
)

func TestListenVerifiesSignatures(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var out bytes.Buffer
	c := &cli{out: &out, getenv: func(k string) string {
		if k == "PAYRAIL_CALLBACK_SECRET" {
			return secret
		}
		return ""
	}}
	h := c.receiver(200)
	body := []byte(`{"type":"payment.paid","timestamp":"2026-03-01T00:00:00Z","data":{"orderId":"ord_abcdef","status":"PAID","previousStatus":"CONFIRMING","amount":15000}}`)
	send := func(b []byte) int {
		now := time.Now()
		sig, err := callback.Sign([]string{secret}, "msg_listen", now, body)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", "/", bytes.NewReader(b))
		r.Header.Set("webhook-id", "msg_listen")
		r.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		r.Header.Set("webhook-signature", sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if code := send(body); code != http.StatusOK {
		t.Fatalf("signed callback answered %d", code)
	}
	if !strings.Contains(out.String(), "payment.paid order=ord_abcdef CONFIRMING→PAID amount=15000 signature=ok") {
		t.Fatalf("output: %s", out.String())
	}
	if code := send(append(bytes.Clone(body), ' ')); code != http.StatusUnauthorized {
		t.Fatalf("tampered callback answered %d", code)
	}
	if !strings.Contains(out.String(), "signature=INVALID") {
		t.Fatalf("output: %s", out.String())
	}
}
