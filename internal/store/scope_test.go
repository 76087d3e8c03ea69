package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// Every merchant-scoped method refuses an empty merchant id (a caller bug
// that would otherwise read across merchants) and answers another
// merchant's order as not found; only the *AnyMerchant methods, which the
// workers and operators use, see every order.
func TestMerchantScope(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	a, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "a", CallbackURL: "https://example.com/a"})
	testenv.Must(t, err)
	b, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "b", CallbackURL: "https://example.com/b"})
	testenv.Must(t, err)
	o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: a.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "s", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
	testenv.Must(t, err)
	pk := "pk_scope"
	o, err = st.Transition(ctx, store.Change{OrderID: o.OrderID, Version: o.Version, To: payment.Confirming, Action: "test", PaymentKey: &pk})
	testenv.Must(t, err)

	calls := map[string]func(merchantID string) error{
		"OrderRow": func(m string) error { _, err := st.OrderRow(ctx, m, o.OrderID); return err },
		"Order":    func(m string) error { _, err := st.Order(ctx, m, o.OrderID, true); return err },
		"OrderByPaymentKey": func(m string) error {
			_, err := st.OrderByPaymentKey(ctx, m, pk)
			return err
		},
		"CancelByID": func(m string) error { _, err := st.CancelByID(ctx, m, o.OrderID, "cnl_none"); return err },
		"RequestCancel": func(m string) error {
			_, err := st.RequestCancel(ctx, m, o.OrderID, "r", 0, nil, nil)
			return err
		},
		"RequestConfirm": func(m string) error {
			_, err := st.RequestConfirm(ctx, m, o.OrderID, "pk_other", "t", 1000, nil)
			return err
		},
	}
	for name, call := range calls {
		if err := call(""); !errors.Is(err, store.ErrUnscoped) {
			t.Errorf("%s(\"\"): err = %v, want ErrUnscoped", name, err)
		}
		err := call(b.MerchantID)
		if code := payment.ErrorCode(err); code != payment.CodeOrderNotFound && code != payment.CodeCancelNotFound && code != payment.CodePaymentNotFound {
			t.Errorf("%s(other merchant): err = %v, want a NOT_FOUND", name, err)
		}
	}
	if _, _, err := st.ListOrders(ctx, "", store.ListFilter{}); !errors.Is(err, store.ErrUnscoped) {
		t.Errorf("ListOrders(\"\"): %v", err)
	}
	if list, _, err := st.ListOrders(ctx, b.MerchantID, store.ListFilter{}); err != nil || len(list) != 0 {
		t.Errorf("ListOrders(other merchant) = %d orders, %v", len(list), err)
	}
	// The owner and the workers see it; nothing above changed it.
	got, err := st.Order(ctx, a.MerchantID, o.OrderID, false)
	testenv.Must(t, err)
	row, err := st.OrderRowAnyMerchant(ctx, o.OrderID)
	testenv.Must(t, err)
	if got.Status != payment.Confirming || row.Version != o.Version {
		t.Fatalf("order changed: %s v%d (was v%d)", got.Status, row.Version, o.Version)
	}
}
