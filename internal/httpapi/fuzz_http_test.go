package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/systest"
)

// FuzzBodiesNever5xx sends one body to every endpoint that reads one — the
// signed merchant endpoints, the admin API and the unsigned PG webhook
// door — on a real server over real PostgreSQL, and asserts the answer is
// never a 5xx: whatever a client can put in a body, a refusal is a 4xx and
// PostgreSQL never sees text it would refuse. The seeds are the inputs a
// review found 500s for (NUL escapes, lone surrogates, invalid UTF-8); `go
// test` runs them, `go test -fuzz FuzzBodiesNever5xx` explores further.
func FuzzBodiesNever5xx(f *testing.F) {
	for _, s := range []string{
		`{"amount":1000,"orderName":"x\u0000"}`,
		`{"amount":1000,"orderName":"\ud800"}`,
		`{"amount":1000,"orderName":"\udc00x"}`,
		`{"amount":1000,"orderName":"\ud800\u0041"}`,
		`{"amount":1000,"orderName":"ok \ud83d\ude00"}`,
		`{"amount":1000,"orderName":"x","merchantOrderId":"abc\u0000def"}`,
		`{"amount":1000,"orderName":"x","successUrl":"https://a.example/\u0000"}`,
		`{"paymentKey":"pk_\u0000","paymentToken":"t"}`,
		`{"paymentKey":"\ud800","paymentToken":"\u0000"}`,
		`{"reason":"x\u0000","amount":100}`,
		`{"reason":"\udfff"}`,
		`{"name":"shop\u0000","callbackUrl":"http://127.0.0.1:9/cb"}`,
		`{"name":"\ud800","callbackUrl":"http://127.0.0.1:9/cb\u0000"}`,
		`{"callbackUrl":"http://127.0.0.1:9/\ud800"}`,
		`{"eventType":"PAYMENT_STATUS_CHANGED","data":{"paymentKey":"pk\u0000","orderId":"o","status":"DONE"}}`,
		`{"eventType":"PAYMENT_STATUS_CHANGED","data":{"paymentKey":"pk","orderId":"\ud800","status":"DONE","x":"\u0000"}}`,
		"{\"amount\":1000,\"orderName\":\"\xed\xa0\x80\"}",
		"{\"amount\":1000,\"orderName\":\"\xc0\x80\"}",
		`{"amount":1000,"orderName":"x"}`,
	} {
		f.Add([]byte(s))
	}
	sys := systest.Start(f, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o := m.CreateOrder(5000)
	// A paid order, so that a cancel's reason gets as far as the database.
	paid := m.CreateOrder(1_000_000)
	if r := m.Confirm(paid, sys.Session(paid), "Prefer", "wait=10"); r.Status != 200 {
		f.Fatalf("pay: %d %s", r.Status, r.Body)
	}
	var n atomic.Int64
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(t *testing.T, method, path string, body []byte, sign bool, hdr ...string) {
		req, err := http.NewRequest(method, sys.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if sign {
			if err := auth.SignRequest(req, m.ClientID, m.ClientSecret, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s with %q: %d %s", method, path, body, resp.StatusCode, b)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		send(t, "POST", "/v1/orders", body, true)
		send(t, "POST", "/v1/orders/"+o.OrderID+"/confirm", body, true)
		// A fresh key each time: a reused one would answer 422 before the
		// body reached the database.
		send(t, "POST", "/v1/orders/"+paid.OrderID+"/cancel", body, true, "Idempotency-Key", fmt.Sprintf("fuzz-%d", n.Add(1)))
		send(t, "POST", "/admin/merchants", body, false, "Authorization", "Bearer "+systest.AdminToken)
		send(t, "PATCH", "/admin/merchants/"+m.MerchantID, body, false, "Authorization", "Bearer "+systest.AdminToken)
		send(t, "POST", "/pg/webhooks/toss", body, false)
	})
}

// FuzzIDsAndFiltersNever5xx puts arbitrary bytes in every path id and query
// filter of the merchant API: never a 5xx (a NUL or invalid UTF-8 used to
// reach PostgreSQL and come back as a 500).
func FuzzIDsAndFiltersNever5xx(f *testing.F) {
	for _, s := range []string{"ord_\x00", "pk\xff", "\xc0\x80", "PAID\x00", "a'b", "", "ok"} {
		f.Add(s)
	}
	sys := systest.Start(f, systest.Options{})
	m := sys.NewMerchant("")
	client := &http.Client{Timeout: 10 * time.Second}
	f.Fuzz(func(t *testing.T, v string) {
		p, q := url.PathEscape(v), url.QueryEscape(v)
		for _, path := range []string{
			"/v1/orders/" + p, "/v1/orders/" + p + "/history", "/v1/payments/" + p,
			"/v1/orders/" + p + "/cancels/" + p,
			"/v1/orders?merchantOrderId=" + q, "/v1/orders?status=" + q, "/v1/orders?cursor=" + q,
			"/v1/callbacks?orderId=" + q, "/v1/callbacks?status=" + q,
		} {
			req, err := http.NewRequest("GET", sys.URL+path, nil)
			if err != nil {
				continue // not a URL a client could send
			}
			if err := auth.SignRequest(req, m.ClientID, m.ClientSecret, time.Now()); err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
			}
		}
	})
}
