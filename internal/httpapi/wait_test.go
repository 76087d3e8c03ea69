package httpapi

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/payment"
)

// A waiter woken by a notice that carries the order answers from it: the
// Waiter has no store here, so a read would panic. A settlement notified
// between Register and Wait (the confirm's commit racing its own wait) is
// not missed, which is what registering before the commit is for.
func TestWaiterAnswersFromTheNotice(t *testing.T) {
	w := NewWaiter(nil, slog.Default(), 10)
	ctx := context.Background()

	early := w.Register("ord_early")
	w.wake("ord_early", &payment.Order{OrderID: "ord_early", Status: payment.Paid, Version: 3})
	if o, ok := early.Wait(ctx, time.Second); !ok || o.Status != payment.Paid || o.Version != 3 {
		t.Fatalf("settled before Wait: %v %+v; want the notified PAID order", ok, o)
	}

	var wg sync.WaitGroup
	got := make([]payment.Order, 3)
	for i := range got {
		tk := w.Register("ord_many")
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = tk.Wait(ctx, 10*time.Second)
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); w.Waiting() != 3; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 blocked waits counted as waiting", w.Waiting())
		}
		time.Sleep(time.Millisecond) // polling for the goroutines to block
	}
	w.wake("ord_many", &payment.Order{OrderID: "ord_many", Status: payment.Failed})
	wg.Wait()
	for i, o := range got {
		if o.Status != payment.Failed {
			t.Fatalf("waiter %d of one order: %+v, want the FAILED order", i, o)
		}
	}
	if n := w.Waiting(); n != 0 {
		t.Fatalf("%d waiters left after every wait ended", n)
	}
}

// The cap counts registrations; Cancel gives the place back, once.
func TestWaiterCapAndCancel(t *testing.T) {
	w := NewWaiter(nil, slog.Default(), 2)
	a, b := w.Register("ord_a"), w.Register("ord_b")
	if c := w.Register("ord_c"); c != nil {
		t.Fatal("a third registration past a cap of 2 was admitted")
	}
	if n := w.Waiting(); n != 0 {
		t.Fatalf("%d counted as waiting before any Wait", n)
	}
	a.Cancel()
	a.Cancel()
	if c := w.Register("ord_c"); c == nil {
		t.Fatal("a cancelled registration did not give its place back")
	} else {
		c.Cancel()
	}
	if c, d := w.Register("ord_c"), w.Register("ord_d"); c == nil || d != nil {
		t.Fatalf("after cancelling twice: registrations %v %v; want one place free (a double Cancel freed two)", c != nil, d != nil)
	} else {
		c.Cancel()
	}
	if _, ok := b.Wait(context.Background(), 10*time.Millisecond); ok {
		t.Fatal("an unsettled order's wait reported settled")
	}
	if n := w.Waiting(); n != 0 {
		t.Fatalf("%d waiting after the timed-out wait ended", n)
	}
	var none *Ticket
	if _, ok := none.Wait(context.Background(), time.Hour); ok {
		t.Fatal("a nil ticket (past the cap) waited")
	}
	none.Cancel()
}
