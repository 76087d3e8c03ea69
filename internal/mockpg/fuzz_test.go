package mockpg_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/mockpg"
)

// FuzzHandler throws arbitrary bodies at every endpoint that parses outside
// input: none may panic or answer 5xx (no 5xx fault is configured).
func FuzzHandler(f *testing.F) {
	f.Add(uint8(0), []byte(`{"paymentKey":"tmock_x","orderId":"order_1","amount":100}`))
	f.Add(uint8(1), []byte(`{"cancelReason":"r","cancelAmount":-5}`))
	f.Add(uint8(2), []byte(`{"declineRate":0.5,"latencyMs":0}`))
	f.Add(uint8(3), []byte(`{"orderId":"order_123","amount":1e3}`))
	f.Add(uint8(4), []byte(`orderId=order_123456&amount=100&successUrl=http://a/&failUrl=http://b/&action=pay`))
	f.Add(uint8(5), []byte(`paymentKey=x&status=DONE`))
	f.Add(uint8(0), []byte("{\"amount\":99999999999999999999}"))
	f.Add(uint8(2), []byte(`{"seed":1}{"seed":2}`))

	pg := mockpg.New(mockpg.Config{SecretKey: "k", WebhookURL: "http://127.0.0.1:1/unused"})
	f.Cleanup(pg.Close)
	key, err := pg.CreateSession("order_fuzz", 100, "")
	if err != nil {
		f.Fatal(err)
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("k:"))
	targets := []struct{ path, ctype string }{
		{"/v1/payments/confirm", "application/json"},
		{"/v1/payments/" + key + "/cancel", "application/json"},
		{"/sandbox/faults", "application/json"},
		{"/sandbox/sessions", "application/json"},
		{"/checkout", "application/x-www-form-urlencoded"},
		{"/sandbox/webhooks/send", "application/x-www-form-urlencoded"},
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		tg := targets[int(which)%len(targets)]
		req := httptest.NewRequest(http.MethodPost, tg.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", tg.ctype)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { defer close(done); pg.ServeHTTP(rec, req) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatalf("%s hung on %q", tg.path, body)
		}
		if rec.Code >= 500 {
			t.Fatalf("%s answered %d to %q: %s", tg.path, rec.Code, body, rec.Body)
		}
		// Keep the fault config harmless for the next input.
		pg.SetFaults(mockpg.Faults{})
	})
}

func FuzzParseFaults(f *testing.F) {
	f.Add([]byte(`{"latencyMs":10,"error5xxRate":0.5}`))
	f.Add([]byte(`{"timeoutRate":NaN}`))
	f.Add([]byte(`{"declineRate":1e309}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := mockpg.ParseFaults(b)
		if err == nil && fl.Validate() != nil {
			t.Fatalf("ParseFaults accepted an invalid config %+v", fl)
		}
	})
}
