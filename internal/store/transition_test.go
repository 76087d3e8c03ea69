package store_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// Random transitions against the real store: illegal ones are refused and
// change nothing, stale versions are fenced, terminal orders never move, and
// every applied transition leaves exactly one log row.
func TestStoreTransitionsFollowTheTable(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "p", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	r := rand.New(rand.NewPCG(7, 9))
	for seq := 0; seq < 40; seq++ {
		o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "p", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
		testenv.Must(t, err)
		cur, applied := o, 0
		for step := 0; step < 8; step++ {
			to := payment.AllStatuses[r.IntN(len(payment.AllStatuses))]
			version := cur.Version
			if r.IntN(5) == 0 {
				version-- // a stale writer
			}
			c := store.Change{OrderID: o.OrderID, Version: version, To: to, Action: "test"}
			if to == payment.Confirming {
				pk := "pk_" + o.OrderID
				c.PaymentKey = &pk
			}
			if to == payment.PartiallyCanceled {
				c.CanceledAmountDelta = 1
			}
			next, err := st.Transition(ctx, c)
			switch {
			case version != cur.Version:
				if err != store.ErrVersionConflict {
					t.Fatalf("stale version: err = %v", err)
				}
			case !payment.CanTransition(cur.Status, to):
				if payment.ErrorCode(err) != payment.CodeIllegalTransition {
					t.Fatalf("%s → %s: err = %v, want ILLEGAL_TRANSITION", cur.Status, to, err)
				}
			default:
				testenv.Must(t, err)
				if next.Status != to || next.Version != cur.Version+1 {
					t.Fatalf("applied %s → %s but got %s v%d", cur.Status, to, next.Status, next.Version)
				}
				cur = next
				applied++
			}
			got, err := st.OrderAnyMerchant(ctx, o.OrderID, false)
			testenv.Must(t, err)
			if got.Status != cur.Status || got.Version != cur.Version {
				t.Fatalf("stored %s v%d, model %s v%d", got.Status, got.Version, cur.Status, cur.Version)
			}
		}
		var logs int
		testenv.Must(t, db.DB.Get(&logs, `SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'test'`, o.OrderID))
		if logs != applied {
			t.Fatalf("%d log rows for %d transitions", logs, applied)
		}
	}
}
