package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/payrail/payrail/internal/payment"
)

// FuzzDecodeOrder feeds arbitrary bodies through the strict decoder the
// ingress uses for every JSON body. It must never panic, every refusal must
// be a *payment.Error whose code maps to a 4xx, and whatever it accepts must
// be one valid UTF-8 JSON value. The seeds live in
// testdata/fuzz/FuzzDecodeOrder.
func FuzzDecodeOrder(f *testing.F) {
	for _, s := range []string{
		`{"amount":15000,"orderName":"mug"}`,
		`{"merchantOrderId":"shop-0001","amount":1,"currency":"KRW","orderName":"x","successUrl":"https://a.example/ok","failUrl":"https://a.example/fail"}`,
		`{"amount":"15000","orderName":"x"}`,
		`{"amount":1e400}`,
		`{"AMOUNT":1,"amount":2}`,
		"{\"orderName\":\"\xff\"}",
		`{"amount":1,"orderName":"x\u0000"}`,
		`{"amount":1,"orderName":"\ud800"}`,
		`[]`,
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, dst := range []any{&createOrderRequest{}, &confirmRequest{}, &createMerchantRequest{}, &patchMerchantRequest{}} {
			err := decodeStrict(body, dst)
			if err == nil {
				if !utf8.Valid(body) || !json.Valid(body) {
					t.Fatalf("accepted %q into %T, which is not one valid UTF-8 JSON value", body, dst)
				}
				// PostgreSQL's text refuses NUL: an accepted string never has one.
				if out, _ := json.Marshal(dst); bytes.Contains(out, []byte(`\u0000`)) {
					t.Fatalf("accepted %q into %T with a NUL in a string: %s", body, dst, out)
				}
				if o, ok := dst.(*createOrderRequest); ok && o.Amount != nil {
					// An accepted amount is exactly the integer the body holds.
					var probe struct {
						Amount json.Number `json:"amount"`
					}
					if json.Unmarshal(body, &probe) == nil && probe.Amount.String() != "" {
						if n, err := probe.Amount.Int64(); err != nil || n != *o.Amount {
							t.Fatalf("amount %q decoded as %d", probe.Amount, *o.Amount)
						}
					}
				}
				continue
			}
			e, ok := payment.AsError(err)
			if !ok {
				t.Fatalf("%T: error %v (%T) is not a *payment.Error", dst, err, err)
			}
			status, known := payment.HTTPStatus(e.Code)
			if !known || status < 400 || status > 499 {
				t.Fatalf("%T: code %s maps to %d (known %v), want a 4xx", dst, e.Code, status, known)
			}
		}
	})
}
