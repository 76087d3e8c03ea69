package httpapi_test

import (
	"testing"
	"time"

	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// While confirms wait longer than PAYRAIL_SHED_AFTER, new orders of the
// merchant holding the backlog get 503 OVERLOADED (nothing written) while a
// merchant within its share keeps creating orders, and confirms and reads
// still work; when the backlog drains, shedding stops.
func TestSheddingIsFairAndStops(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_SHED_AFTER": "500ms"}})
	noisy, quiet := sys.NewMerchant(""), sys.NewMerchant("")
	spare := noisy.CreateOrder(1000) // confirmed while shed
	// Every order first: once the first confirm waits past
	// PAYRAIL_SHED_AFTER the merchant's creates are shed, and on a loaded
	// machine the set-up itself can take that long.
	var backlog []systest.Order
	for range 10 {
		backlog = append(backlog, noisy.CreateOrder(1000))
	}
	for _, o := range backlog {
		if r := noisy.Confirm(o, sys.Session(o)); r.Status != 202 {
			t.Fatalf("confirm: %d %s", r.Status, r.Body)
		}
	}
	create := func(m *systest.Merchant) systest.Response {
		return m.Do("POST", "/v1/orders", map[string]any{"amount": 1000, "orderName": "shed"})
	}
	// No worker runs: the confirms wait. Poll until shedding starts.
	var shed systest.Response
	testenv.Poll(t, 15*time.Second, "new orders of the merchant with the backlog to be shed", func() bool {
		shed = create(noisy)
		return shed.Status == 503
	})
	if shed.Code() != "OVERLOADED" || shed.Header.Get("Retry-After") == "" {
		t.Fatalf("shed answer: %s %v", shed.Body, shed.Header)
	}
	before := sys.Count(`SELECT count(*) FROM orders WHERE merchant_id = $1`, noisy.MerchantID)
	if r := create(noisy); r.Status != 503 {
		t.Fatalf("second shed create: %d", r.Status)
	}
	if n := sys.Count(`SELECT count(*) FROM orders WHERE merchant_id = $1`, noisy.MerchantID); n != before {
		t.Fatalf("a shed create wrote an order (%d → %d)", before, n)
	}
	for i := range 3 {
		if r := create(quiet); r.Status != 201 {
			t.Fatalf("merchant within its share, order %d: %d %s", i, r.Status, r.Body)
		}
	}
	if r := noisy.Confirm(spare, sys.Session(spare)); r.Status != 202 {
		t.Fatalf("confirm while shed: %d %s", r.Status, r.Body)
	}
	if r := noisy.Do("GET", "/v1/orders/"+spare.OrderID, nil); r.Status != 200 {
		t.Fatalf("read while shed: %d", r.Status)
	}
	sys.StartWorker()
	testenv.Poll(t, 20*time.Second, "shedding to stop once the confirms drain", func() bool {
		return create(noisy).Status == 201
	})
}
