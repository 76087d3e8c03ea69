package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// Redelivering a PENDING callback while its attempt is being sent keeps the
// send claim, so a second trigger cannot send that attempt again; a claim
// that lapsed can still be taken (review issue 13, item 7).
func TestRedeliverKeepsALiveSendClaim(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "r", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "r", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
	testenv.Must(t, err)
	_, err = db.DB.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload) VALUES ('msg_redeliver_1', $1, $2, 'payment.paid', '{}')`, m.MerchantID, o.OrderID)
	testenv.Must(t, err)

	claim := func() int {
		batch, err := st.ClaimLaneBatch(ctx, m.MerchantID, time.Now().Add(time.Minute), 4)
		testenv.Must(t, err)
		return len(batch)
	}
	if n := claim(); n != 1 {
		t.Fatalf("first claim got %d callbacks, want 1", n)
	}
	if _, err := st.RedeliverCallback(ctx, m.MerchantID, "msg_redeliver_1"); err != nil {
		t.Fatal(err)
	}
	if n := claim(); n != 0 {
		t.Fatal("after a redeliver, a second turn claimed the attempt in flight")
	}
	// A lapsed claim (a crashed sender) is taken again.
	_, err = db.DB.ExecContext(ctx, `UPDATE callbacks SET sending_until = now() - interval '1 second' WHERE callback_id = 'msg_redeliver_1'`)
	testenv.Must(t, err)
	if n := claim(); n != 1 {
		t.Fatal("a lapsed claim could not be taken")
	}
}
