package payrail_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
	"github.com/payrail/payrail/sdk/payrail"
	"github.com/payrail/payrail/sdk/payrail/webhook"
)

// The SDK against a real payrail (PostgreSQL, Redis, mockpg, a worker):
// create → the PG session → confirm with wait → a verified payment.paid
// at a real callback receiver; a duplicate confirm; pages of orders; a
// cancel; callbacks and a redelivery; a typed refusal.
func TestSDKAgainstPayrail(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	var mu sync.Mutex
	verified := map[string]string{} // webhook-id → type
	var secret string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := webhook.Verify([]string{secret}, r.Header, body); err != nil {
			t.Errorf("callback does not verify: %v", err)
			w.WriteHeader(400)
			return
		}
		var ev payrail.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("callback body: %v", err)
		}
		verified[r.Header.Get(webhook.HeaderID)] = ev.Type + " " + ev.Data.OrderID
	}))
	defer recv.Close()
	m := sys.NewMerchant(recv.URL)
	mu.Lock()
	secret = m.CallbackSecret
	mu.Unlock()
	c := payrail.New(sys.URL, m.ClientID, m.ClientSecret)
	ctx := context.Background()

	o, err := c.CreateOrder(ctx, payrail.CreateOrderParams{Amount: 15000, OrderName: "SDK order", MerchantOrderID: "sdk-1001"})
	if err != nil || o.Status != payrail.StatusCreated || o.PaymentToken == "" {
		t.Fatalf("create: %+v %v", o, err)
	}
	key := sys.Session(systest.Order{OrderID: o.OrderID, Amount: o.Amount})
	res, err := c.Confirm(ctx, o.OrderID, payrail.ConfirmParams{PaymentKey: key, Amount: 15000, PaymentToken: o.PaymentToken, Wait: 10 * time.Second})
	if err != nil || res.Result != payrail.ResultSuccess || res.Order.Status != payrail.StatusPaid {
		t.Fatalf("confirm: %+v %v", res, err)
	}
	again, err := c.Confirm(ctx, o.OrderID, payrail.ConfirmParams{PaymentKey: key, Amount: 15000, PaymentToken: o.PaymentToken})
	if err != nil || again.Result != payrail.ResultDuplicate {
		t.Fatalf("duplicate confirm: %+v %v", again, err)
	}
	if _, err := c.Confirm(ctx, o.OrderID, payrail.ConfirmParams{PaymentKey: key, Amount: 14000, PaymentToken: o.PaymentToken}); payrail.ErrorCode(err) != "AMOUNT_MISMATCH" {
		t.Fatalf("wrong amount: %v", err)
	}
	if _, err := c.CreateOrder(ctx, payrail.CreateOrderParams{Amount: 1, OrderName: "again", MerchantOrderID: "sdk-1001"}); payrail.ErrorCode(err) != "ORDER_ALREADY_EXISTS" {
		t.Fatalf("reused merchantOrderId: %v", err)
	}
	testenv.Poll(t, 15*time.Second, "payment.paid to be verified at the receiver", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range verified {
			if v == "payment.paid "+o.OrderID {
				return true
			}
		}
		return false
	})

	for i := range 4 {
		if _, err := c.CreateOrder(ctx, payrail.CreateOrderParams{Amount: int64(100 + i), OrderName: "page"}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for o, err := range c.ListOrders(ctx, payrail.ListParams{PageSize: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		_ = o
	}
	if n != 5 {
		t.Fatalf("listed %d orders over pages of 2, want 5", n)
	}
	paid := 0
	for _, err := range c.ListOrders(ctx, payrail.ListParams{Status: payrail.StatusPaid}) {
		if err != nil {
			t.Fatal(err)
		}
		paid++
	}
	if paid != 1 {
		t.Fatalf("PAID orders listed = %d", paid)
	}

	cn, err := c.Cancel(ctx, o.OrderID, payrail.CancelParams{Reason: "customer asked", Amount: 5000})
	if err != nil || cn.Status != "PENDING" {
		t.Fatalf("cancel: %+v %v", cn, err)
	}
	testenv.Poll(t, 10*time.Second, "the cancel to succeed", func() bool {
		got, err := c.GetCancel(ctx, o.OrderID, cn.CancelID)
		return err == nil && got.Status == "SUCCEEDED"
	})
	if got, err := c.GetOrder(ctx, o.OrderID); err != nil || got.Status != payrail.StatusPartiallyCanceled || got.CanceledAmount != 5000 || len(got.History) == 0 {
		t.Fatalf("order after the cancel: %+v %v", got, err)
	}
	cbs, err := c.ListCallbacks(ctx, o.OrderID)
	if err != nil || len(cbs) == 0 {
		t.Fatalf("callbacks: %v %v", cbs, err)
	}
	if _, err := c.Redeliver(ctx, cbs[len(cbs)-1].CallbackID); err != nil {
		t.Fatalf("redeliver: %v", err)
	}
	if _, err := c.GetOrder(ctx, "ord_nobody_has_this"); payrail.ErrorCode(err) != "ORDER_NOT_FOUND" {
		t.Fatalf("unknown order: %v", err)
	}
	if _, err := payrail.New(sys.URL, m.ClientID, "wrong-secret").GetOrder(ctx, o.OrderID); payrail.ErrorCode(err) != "INVALID_SIGNATURE" {
		t.Fatalf("wrong secret: %v", err)
	}
}
