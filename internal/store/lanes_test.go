package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// A merchant created after migration 00008 has its endpoint row from the
// start, so the sweep wakes its lane for due work that no wake announced
// (a lost wake, or callbacks written by another path). Before, the row
// only appeared with the first announced callback and such a backlog
// waited forever.
func TestSweepWakesANewMerchantsDueWork(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "w", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "w", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
	testenv.Must(t, err)
	_, err = db.DB.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload) VALUES ('msg_unannounced', $1, $2, 'payment.paid', '{}')`, m.MerchantID, o.OrderID)
	testenv.Must(t, err)

	wakes, err := st.WakeDueLanes(ctx, time.Now().Add(-time.Minute), 100)
	testenv.Must(t, err)
	if len(wakes) != 1 || wakes[0].MerchantID != m.MerchantID {
		t.Fatalf("WakeDueLanes = %+v, want the new merchant's lane", wakes)
	}
	// Woken once: a second sweep while the lane is out adds nothing.
	if again, err := st.WakeDueLanes(ctx, time.Now().Add(-time.Minute), 100); err != nil || len(again) != 0 {
		t.Fatalf("second sweep woke %+v (%v), want nothing while the lane is out", again, err)
	}
}
