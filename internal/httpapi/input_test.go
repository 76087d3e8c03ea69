package httpapi_test

import (
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/systest"
)

// TestBadInputIsA4xx sends bad bodies to POST /v1/orders and to confirm:
// every one is a 4xx problem+json with a code, and nothing is written.
func TestBadInputIsA4xx(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	o := m.CreateOrder(15000)
	confirmPath := "/v1/orders/" + o.OrderID + "/confirm"
	okConfirm := `"paymentKey":"pk_test_123","paymentToken":"` + o.PaymentToken + `"`

	const orders = "/v1/orders"
	type tc struct {
		name   string
		path   string
		body   string
		ctype  string // "" = application/json; "-" = none
		status int
		code   string
	}
	tests := []tc{
		{"oversized body", orders, `{"amount":1000,"orderName":"` + strings.Repeat("x", 1<<20) + `"}`, "", 413, "BODY_TOO_LARGE"},
		{"negative amount", orders, `{"amount":-1,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"zero amount", orders, `{"amount":0,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"float amount", orders, `{"amount":1000.5,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"float-looking integer", orders, `{"amount":1000.0,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"exponent amount", orders, `{"amount":1e3,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"amount over 10^12", orders, `{"amount":1000000000001,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"overflowing amount", orders, `{"amount":99999999999999999999,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"huge exponent amount", orders, `{"amount":1e400,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"amount as string", orders, `{"amount":"15000","orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"amount as bool", orders, `{"amount":true,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"null amount", orders, `{"amount":null,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"missing amount", orders, `{"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"null orderName", orders, `{"amount":1000,"orderName":null}`, "", 400, "INVALID_REQUEST"},
		{"blank orderName", orders, `{"amount":1000,"orderName":"   "}`, "", 400, "INVALID_REQUEST"},
		{"orderName too long", orders, `{"amount":1000,"orderName":"` + strings.Repeat("y", 101) + `"}`, "", 400, "INVALID_REQUEST"},
		{"orderName as object", orders, `{"amount":1000,"orderName":{"a":1}}`, "", 400, "INVALID_REQUEST"},
		{"merchantOrderId of 5", orders, `{"merchantOrderId":"abcde","amount":1000,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"merchantOrderId of 65", orders, `{"merchantOrderId":"` + strings.Repeat("a", 65) + `","amount":1000,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"merchantOrderId with a space", orders, `{"merchantOrderId":"abc def","amount":1000,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"merchantOrderId in Hangul", orders, `{"merchantOrderId":"한글123456","amount":1000,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"merchantOrderId with SQL", orders, `{"merchantOrderId":"x'; DROP TABLE orders;--","amount":1000,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"merchantOrderId as number", orders, `{"merchantOrderId":123456,"amount":1000,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"currency not KRW", orders, `{"amount":1000,"orderName":"x","currency":"USD"}`, "", 400, "INVALID_REQUEST"},
		{"javascript successUrl", orders, `{"amount":1000,"orderName":"x","successUrl":"javascript:alert(1)"}`, "", 400, "INVALID_REQUEST"},
		{"relative failUrl", orders, `{"amount":1000,"orderName":"x","failUrl":"/fail"}`, "", 400, "INVALID_REQUEST"},
		{"unknown field", orders, `{"amount":1000,"orderName":"x","discount":500}`, "", 400, "INVALID_REQUEST"},
		{"field in another case", orders, `{"Amount":1000,"orderName":"x","AMOUNT":2}`, "", 400, "INVALID_REQUEST"},
		{"duplicate key", orders, `{"amount":1000,"orderName":"x","amount":2}`, "", 400, "INVALID_REQUEST"},
		{"NUL escape in orderName", orders, `{"amount":1000,"orderName":"x\u0000"}`, "", 400, "INVALID_REQUEST"},
		{"lone high surrogate", orders, `{"amount":1000,"orderName":"\ud800"}`, "", 400, "INVALID_REQUEST"},
		{"lone low surrogate", orders, `{"amount":1000,"orderName":"a\udc00b"}`, "", 400, "INVALID_REQUEST"},
		{"NUL escape in paymentKey", confirmPath, `{"paymentKey":"pk\u0000","paymentToken":"` + o.PaymentToken + `"}`, "", 400, "INVALID_REQUEST"},
		{"invalid UTF-8", orders, "{\"amount\":1000,\"orderName\":\"\xff\xfe\xfd\"}", "", 400, "INVALID_REQUEST"},
		{"text/plain", orders, `{"amount":1000,"orderName":"x"}`, "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"form content type", orders, `amount=1000&orderName=x`, "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"unparsable content type", orders, `{"amount":1000,"orderName":"x"}`, "application/", 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"no content type", orders, `{"amount":1000,"orderName":"x"}`, "-", 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"empty body", orders, ``, "", 400, "INVALID_REQUEST"},
		{"whitespace body", orders, " \n\t ", "", 400, "INVALID_REQUEST"},
		{"JSON null", orders, `null`, "", 400, "INVALID_REQUEST"},
		{"JSON array", orders, `[{"amount":1000,"orderName":"x"}]`, "", 400, "INVALID_REQUEST"},
		{"JSON string", orders, `"hello"`, "", 400, "INVALID_REQUEST"},
		{"trailing garbage", orders, `{"amount":1000,"orderName":"x"} garbage`, "", 400, "INVALID_REQUEST"},
		{"two objects", orders, `{"amount":1000,"orderName":"x"}{"amount":1000,"orderName":"x"}`, "", 400, "INVALID_REQUEST"},
		{"truncated", orders, `{"amount":1000,"orderName":"x`, "", 400, "INVALID_REQUEST"},
		{"deep nesting", orders, `{"amount":1000,"orderName":"x","successUrl":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, "", 400, "INVALID_REQUEST"},
		{"NUL in body", orders, "{\"amount\":1000,\"orderName\":\"x\x00\"}", "", 400, "INVALID_REQUEST"},

		{"confirm: empty body", confirmPath, ``, "", 400, "INVALID_REQUEST"},
		{"confirm: missing paymentKey", confirmPath, `{"amount":15000,"paymentToken":"` + o.PaymentToken + `"}`, "", 400, "INVALID_REQUEST"},
		{"confirm: empty paymentKey", confirmPath, `{"paymentKey":"","amount":15000,"paymentToken":"` + o.PaymentToken + `"}`, "", 400, "INVALID_REQUEST"},
		{"confirm: paymentKey too long", confirmPath, `{"paymentKey":"` + strings.Repeat("k", 201) + `","amount":15000,"paymentToken":"` + o.PaymentToken + `"}`, "", 400, "INVALID_REQUEST"},
		{"confirm: null paymentToken", confirmPath, `{"paymentKey":"pk_1","amount":15000,"paymentToken":null}`, "", 400, "INVALID_REQUEST"},
		{"confirm: null amount", confirmPath, `{` + okConfirm + `,"amount":null}`, "", 400, "INVALID_REQUEST"},
		{"confirm: amount as string", confirmPath, `{` + okConfirm + `,"amount":"15000"}`, "", 400, "INVALID_REQUEST"},
		{"confirm: float amount", confirmPath, `{` + okConfirm + `,"amount":15000.5}`, "", 400, "INVALID_REQUEST"},
		{"confirm: overflowing amount", confirmPath, `{` + okConfirm + `,"amount":99999999999999999999}`, "", 400, "INVALID_REQUEST"},
		{"confirm: unknown field", confirmPath, `{` + okConfirm + `,"amount":15000,"orderId":"x"}`, "", 400, "INVALID_REQUEST"},
		{"confirm: duplicate amount", confirmPath, `{` + okConfirm + `,"amount":15000,"amount":1}`, "", 400, "INVALID_REQUEST"},
		{"confirm: text/plain", confirmPath, `{` + okConfirm + `,"amount":15000}`, "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"confirm: array", confirmPath, `[]`, "", 400, "INVALID_REQUEST"},
		{"confirm: trailing garbage", confirmPath, `{` + okConfirm + `,"amount":15000}]`, "", 400, "INVALID_REQUEST"},
		{"confirm: invalid UTF-8", confirmPath, "{\"paymentKey\":\"\xc3\x28\",\"amount\":15000,\"paymentToken\":\"t\"}", "", 400, "INVALID_REQUEST"},
		{"confirm: oversized", confirmPath, `{"paymentKey":"` + strings.Repeat("k", 1<<20) + `"}`, "", 413, "BODY_TOO_LARGE"},
	}

	ordersBefore := sys.Count(`SELECT count(*) FROM orders`)
	logBefore := sys.Count(`SELECT count(*) FROM payment_log`)
	for _, tc := range tests {
		var hdr []string
		if tc.ctype != "" {
			hdr = []string{"Content-Type", tc.ctype}
		}
		var r systest.Response
		if tc.ctype == "-" {
			r = doNoContentType(t, sys, m, "POST", tc.path, []byte(tc.body))
		} else {
			r = m.Do("POST", tc.path, []byte(tc.body), hdr...)
		}
		wantProblem(t, tc.name, r, tc.status, tc.code)
	}
	if n := sys.Count(`SELECT count(*) FROM orders`); n != ordersBefore {
		t.Errorf("orders %d → %d after bad input", ordersBefore, n)
	}
	if n := sys.Count(`SELECT count(*) FROM payment_log`); n != logBefore {
		t.Errorf("payment_log %d → %d after bad input", logBefore, n)
	}
	if st := m.Status(o.OrderID); st != "CREATED" {
		t.Errorf("order is %s after bad confirms, want CREATED", st)
	}
}

// TestBadQueriesAndPaths covers GETs with bad parameters and odd paths.
func TestBadQueriesAndPaths(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	tests := []struct {
		name, path string
		status     int
		code       string
	}{
		{"limit not a number", "/v1/orders?limit=ten", 400, "INVALID_REQUEST"},
		{"limit zero", "/v1/orders?limit=0", 400, "INVALID_REQUEST"},
		{"limit too big", "/v1/orders?limit=101", 400, "INVALID_REQUEST"},
		{"limit overflowing", "/v1/orders?limit=99999999999999999999", 400, "INVALID_REQUEST"},
		{"unknown status", "/v1/orders?status=BOGUS", 400, "INVALID_REQUEST"},
		{"negative cursor", "/v1/orders?cursor=-1", 400, "INVALID_REQUEST"},
		{"SQL in status", "/v1/orders?status=%27%3B%20DROP%20TABLE%20orders%3B--", 400, "INVALID_REQUEST"},
		{"unknown order", "/v1/orders/ord_doesnotexist0000000000", 404, "ORDER_NOT_FOUND"},
		{"SQL in orderId", "/v1/orders/x%27%3B%20DROP%20TABLE%20orders%3B--", 404, "ORDER_NOT_FOUND"},
		{"very long orderId", "/v1/orders/" + strings.Repeat("o", 4000), 404, "ORDER_NOT_FOUND"},
		{"unknown paymentKey", "/v1/payments/pk_nope", 404, "PAYMENT_NOT_FOUND"},
		{"NUL in paymentKey", "/v1/payments/pk%00x", 400, "INVALID_REQUEST"},
		{"invalid UTF-8 in paymentKey", "/v1/payments/pk%ff", 400, "INVALID_REQUEST"},
		{"NUL in orderId", "/v1/orders/ord_%00", 400, "INVALID_REQUEST"},
		{"invalid UTF-8 in merchantOrderId", "/v1/orders?merchantOrderId=%c0%80", 400, "INVALID_REQUEST"},
		{"NUL in merchantOrderId", "/v1/orders?merchantOrderId=a%00b", 400, "INVALID_REQUEST"},
		{"NUL in status", "/v1/orders?status=PAID%00", 400, "INVALID_REQUEST"},
		{"NUL in callback id", "/v1/callbacks?orderId=ord_%00", 400, "INVALID_REQUEST"},
	}
	for _, tc := range tests {
		wantProblem(t, tc.name, m.Do("GET", tc.path, nil), tc.status, tc.code)
	}
	if n := sys.Count(`SELECT count(*) FROM orders`); n != 0 {
		t.Fatalf("orders = %d", n)
	}
}

func TestSQLLookingOrderNameStoredLiterally(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	names := []string{"x'; DROP TABLE orders;--", `Robert"); DELETE FROM merchants; --`, "\\x00 $1 %s {{.}}", "주문 ☕ <script>alert(1)</script>"}
	for _, name := range names {
		r := m.Do("POST", "/v1/orders", map[string]any{"amount": 1000, "orderName": name})
		if r.Status >= 500 {
			t.Fatalf("orderName %q: %d %s", name, r.Status, r.Body)
		}
		if r.Status != 201 {
			wantProblem(t, "orderName "+name, r, 400, "INVALID_REQUEST")
			continue
		}
		id := r.JSON()["orderId"].(string)
		g := m.Do("GET", "/v1/orders/"+id, nil)
		if g.Status != 200 || g.JSON()["orderName"] != name {
			t.Errorf("orderName %q read back as %v (%d)", name, g.JSON()["orderName"], g.Status)
		}
	}
	if n := sys.Count(`SELECT count(*) FROM merchants`); n != 1 {
		t.Fatalf("merchants = %d, want 1", n)
	}
}

func TestUnknownRouteAndWrongMethod(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	wantProblem(t, "unknown route", rawDo(t, sys, "GET", "/nope", nil, nil), 404, "NOT_FOUND")
	wantProblem(t, "unknown /v1 route", m.Do("GET", "/v1/nope", nil), 404, "NOT_FOUND")
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/v1/orders"},
		{"PUT", "/v1/orders/ord_x"},
		{"GET", "/v1/orders/ord_x/confirm"},
		{"PUT", "/admin/merchants"},
	} {
		r := rawDo(t, sys, c.method, c.path, nil, nil)
		wantProblem(t, c.method+" "+c.path, r, 405, "METHOD_NOT_ALLOWED")
		if r.Header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
	}
}

// doNoContentType is m.Do without a Content-Type header.
func doNoContentType(t *testing.T, sys *systest.System, m *systest.Merchant, method, path string, body []byte) systest.Response {
	t.Helper()
	s := signed{method: method, target: path, body: body, clientID: m.ClientID, secret: m.ClientSecret}
	h := s.headers()
	h.Del("Content-Type")
	return rawDo(t, sys, method, path, body, h)
}
