package httpapi_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/payrail/payrail/internal/systest"
)

type listPage struct {
	Orders []struct {
		OrderID         string  `json:"orderId"`
		MerchantOrderID *string `json:"merchantOrderId"`
		Status          string  `json:"status"`
	} `json:"orders"`
	NextCursor *string `json:"nextCursor"`
}

func list(t *testing.T, m *systest.Merchant, query string) listPage {
	t.Helper()
	r := m.Do("GET", "/v1/orders"+query, nil)
	if r.Status != 200 {
		t.Fatalf("GET /v1/orders%s: %d %s", query, r.Status, r.Body)
	}
	var p listPage
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatalf("list body: %v: %s", err, r.Body)
	}
	return p
}

func TestIsolationBetweenMerchants(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	a, b := sys.NewMerchant(""), sys.NewMerchant("")

	// A's order with a paymentKey (CONFIRMING), and one still CREATED.
	paid := a.CreateOrder(15000)
	key := sys.Session(paid)
	if r := a.Confirm(paid, key); r.Status != 202 {
		t.Fatalf("A confirms its own order: %d %s", r.Status, r.Body)
	}
	open := a.CreateOrder(20000)
	openKey := sys.Session(open)
	own := b.CreateOrder(1000)

	logBefore := sys.Count(`SELECT count(*) FROM payment_log`)
	ordersBefore := sys.Count(`SELECT count(*) FROM orders`)
	idemBefore := sys.Count(`SELECT count(*) FROM idempotency_keys`)

	wantProblem(t, "B GETs A's order", b.Do("GET", "/v1/orders/"+paid.OrderID, nil), 404, "ORDER_NOT_FOUND")
	wantProblem(t, "B GETs A's open order", b.Do("GET", "/v1/orders/"+open.OrderID, nil), 404, "ORDER_NOT_FOUND")
	wantProblem(t, "B GETs A's payment", b.Do("GET", "/v1/payments/"+url.PathEscape(key), nil), 404, "PAYMENT_NOT_FOUND")
	// B holds everything a confirm needs, the token included: still not found.
	wantProblem(t, "B confirms A's open order", b.Confirm(open, openKey), 404, "ORDER_NOT_FOUND")
	wantProblem(t, "B confirms A's confirming order", b.Confirm(paid, key), 404, "ORDER_NOT_FOUND")
	wantProblem(t, "B confirms A's order with an Idempotency-Key", b.Confirm(open, openKey, "Idempotency-Key", "iso-1"), 404, "ORDER_NOT_FOUND")
	for _, q := range []string{"", "?status=CREATED", "?status=CONFIRMING", "?limit=100"} {
		for _, o := range list(t, b, q).Orders {
			if o.OrderID != own.OrderID {
				t.Errorf("B's list%s shows %s, not B's", q, o.OrderID)
			}
		}
	}
	if p := list(t, b, ""); len(p.Orders) != 1 || p.Orders[0].OrderID != own.OrderID {
		t.Errorf("B's list = %+v, want only %s", p.Orders, own.OrderID)
	}

	if n := sys.Count(`SELECT count(*) FROM payment_log`); n != logBefore {
		t.Errorf("payment_log rows %d → %d: another merchant's requests must record nothing", logBefore, n)
	}
	if n := sys.Count(`SELECT count(*) FROM orders`); n != ordersBefore {
		t.Errorf("orders %d → %d", ordersBefore, n)
	}
	if n := sys.Count(`SELECT count(*) FROM idempotency_keys WHERE state = 'DONE'`); n > idemBefore {
		t.Errorf("a failed cross-merchant confirm stored an idempotent answer")
	}
	if st := a.Status(open.OrderID); st != "CREATED" {
		t.Errorf("A's open order is %s after B's attempts, want CREATED", st)
	}
	// A still sees both, and its open order still confirms.
	if r := a.Do("GET", "/v1/payments/"+url.PathEscape(key), nil); r.Status != 200 || r.JSON()["orderId"] != paid.OrderID {
		t.Errorf("A GETs its payment: %d %s", r.Status, r.Body)
	}
	if r := a.Confirm(open, openKey); r.Status != 202 {
		t.Errorf("A confirms its open order: %d %s", r.Status, r.Body)
	}
}

func TestMerchantOrderIDScopedPerMerchant(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	a, b := sys.NewMerchant(""), sys.NewMerchant("")
	body := map[string]any{"merchantOrderId": "shop-order-0001", "amount": 5000, "orderName": "mug"}
	ra := a.Do("POST", "/v1/orders", body)
	rb := b.Do("POST", "/v1/orders", body)
	if ra.Status != 201 || rb.Status != 201 {
		t.Fatalf("same merchantOrderId at two merchants: %d %s / %d %s", ra.Status, ra.Body, rb.Status, rb.Body)
	}
	if ra.JSON()["orderId"] == rb.JSON()["orderId"] {
		t.Fatalf("two merchants got the same global orderId %v", ra.JSON()["orderId"])
	}
	if ra.JSON()["merchantOrderId"] != "shop-order-0001" {
		t.Errorf("merchantOrderId not echoed: %s", ra.Body)
	}
	body["amount"] = 6000
	wantProblem(t, "reuse by the same merchant", a.Do("POST", "/v1/orders", body), 409, "ORDER_ALREADY_EXISTS")
	if n := sys.Count(`SELECT count(*) FROM orders`); n != 2 {
		t.Fatalf("orders = %d, want 2", n)
	}
	if p := list(t, a, "?merchantOrderId=shop-order-0001"); len(p.Orders) != 1 || p.Orders[0].OrderID != ra.JSON()["orderId"] {
		t.Fatalf("A's list by merchantOrderId = %+v", p.Orders)
	}
}

func TestListKeysetPagination(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m, other := sys.NewMerchant(""), sys.NewMerchant("")
	var created []string
	for i := range 25 {
		r := m.Do("POST", "/v1/orders", map[string]any{"amount": 1000 + i, "orderName": "item " + strconv.Itoa(i)})
		if r.Status != 201 {
			t.Fatalf("create %d: %d %s", i, r.Status, r.Body)
		}
		created = append(created, r.JSON()["orderId"].(string))
		if i%5 == 0 {
			other.CreateOrder(777) // interleaved orders of another merchant
		}
	}
	slices.Reverse(created) // newest first

	var got []string
	var sizes []int
	cursor := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatalf("pagination does not end; got %d so far", len(got))
		}
		q := "?limit=10"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		p := list(t, m, q)
		sizes = append(sizes, len(p.Orders))
		for _, o := range p.Orders {
			got = append(got, o.OrderID)
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if !slices.Equal(sizes, []int{10, 10, 5}) {
		t.Errorf("page sizes = %v, want [10 10 5]", sizes)
	}
	if !slices.Equal(got, created) {
		t.Errorf("pages = %v\nwant (newest first, each once) %v", got, created)
	}
	wantProblem(t, "forged cursor", m.Do("GET", "/v1/orders?cursor=not-a-cursor!", nil), 400, "INVALID_REQUEST")
}
