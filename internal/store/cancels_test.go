package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// Two pending cancels of one order, both refused because the PG's console
// cancelled the whole payment, settled at once from two workers: each
// releases its own reservation, and exactly one of them — whichever comes
// second — moves the order to CANCELED for what remained, through the
// fenced transition; the amounts always add up (the CHECK holds).
func TestRefusedCancelsOfAPaymentCanceledAtThePG(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "c", CallbackURL: "https://example.com/c"})
	testenv.Must(t, err)
	o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 9000, Currency: "KRW", OrderName: "c", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
	testenv.Must(t, err)
	pk := "pk_cancels"
	o, err = st.Transition(ctx, store.Change{OrderID: o.OrderID, Version: o.Version, To: payment.Confirming, Action: "test", PaymentKey: &pk})
	testenv.Must(t, err)
	_, err = st.Transition(ctx, store.Change{OrderID: o.OrderID, Version: o.Version, To: payment.Paid, Action: "test"})
	testenv.Must(t, err)
	c1, err := st.RequestCancel(ctx, m.MerchantID, o.OrderID, "a", 2000, nil, nil)
	testenv.Must(t, err)
	c2, err := st.RequestCancel(ctx, m.MerchantID, o.OrderID, "b", 3000, nil, nil)
	testenv.Must(t, err)

	var wg sync.WaitGroup
	for _, c := range []store.Cancel{c1, c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ok, err := st.FinishCancel(ctx, c.CancelID, store.CancelOutcome{Code: "NOT_CANCELABLE_PAYMENT", CanceledAtPG: true})
				if err == store.ErrVersionConflict {
					continue // the other worker moved the order first: re-read, as the worker's retry does
				}
				if err != nil || !ok {
					t.Errorf("finish %s: ok %v, %v", c.CancelID, ok, err)
				}
				return
			}
		}()
	}
	wg.Wait()
	got, err := st.OrderAnyMerchant(ctx, o.OrderID, false)
	testenv.Must(t, err)
	if got.Status != payment.Canceled || got.CanceledAmount != 9000 || got.PendingCancelAmount != 0 {
		t.Fatalf("order %s canceled %d pending %d, want CANCELED 9000 0", got.Status, got.CanceledAmount, got.PendingCancelAmount)
	}
	var failed, canceledAtPG, cancelFailed int
	testenv.Must(t, db.DB.Get(&failed, `SELECT count(*) FROM cancels WHERE order_id = $1 AND status = 'FAILED'`, o.OrderID))
	testenv.Must(t, db.DB.Get(&canceledAtPG, `SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'payment.canceled_at_pg'`, o.OrderID))
	testenv.Must(t, db.DB.Get(&cancelFailed, `SELECT count(*) FROM callbacks WHERE order_id = $1 AND event_type = 'payment.cancel_failed'`, o.OrderID))
	if failed != 2 || canceledAtPG != 1 || cancelFailed != 2 {
		t.Fatalf("failed cancels %d, canceled_at_pg transitions %d, cancel_failed callbacks %d; want 2, 1, 2", failed, canceledAtPG, cancelFailed)
	}
}
