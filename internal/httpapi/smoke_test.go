package httpapi_test

import (
	"testing"
	"time"

	"github.com/payrail/payrail/internal/systest"
)

func TestCreateConfirmPaid(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o := m.CreateOrder(15000)
	key := sys.Session(o)
	r := m.Confirm(o, key)
	if r.Status != 202 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	m.WaitStatus(o.OrderID, "PAID", 10*time.Second)
	r = m.Confirm(o, key)
	if r.Status != 200 || r.JSON()["result"] != "DUPLICATE" {
		t.Fatalf("duplicate confirm: %d %s", r.Status, r.Body)
	}
	if got := sys.PG.Stats()[o.OrderID].Approvals; got != 1 {
		t.Fatalf("approvals = %d, want 1", got)
	}
}
