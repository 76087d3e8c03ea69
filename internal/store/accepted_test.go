package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/secretbox"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// A confirm's accepted snapshot opens only for its own merchant's order at
// its own version, only under the keyring that sealed it, and only unaltered; a
// duplicate confirm seals nothing (it enqueues nothing).
func TestAcceptedSnapshotOpensOnlyForItsOrderAndVersion(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "a", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)
	o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "s", TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
	testenv.Must(t, err)
	cr, err := st.RequestConfirm(ctx, m.MerchantID, o.OrderID, "pk_a", "t", 1000, nil)
	testenv.Must(t, err)
	if !cr.Enqueue || cr.Accepted == "" {
		t.Fatalf("accept: enqueue %v, snapshot %q", cr.Enqueue, cr.Accepted)
	}
	row, err := st.OpenAccepted(o.OrderID, m.MerchantID, cr.Order.Version, cr.Accepted)
	testenv.Must(t, err)
	if row.Amount != 1000 || *row.PaymentKey != "pk_a" || row.Version != cr.Order.Version {
		t.Fatalf("opened %+v", row)
	}
	ks, err := secretbox.GenerateKeyString("t1") // the same key id, another key
	testenv.Must(t, err)
	kr, err := secretbox.ParseKeys(ks)
	testenv.Must(t, err)
	other := store.New(db.DB, kr, store.Options{})
	altered := []byte(cr.Accepted)
	altered[len(altered)-3] ^= 2
	for name, open := range map[string]func() error{
		"another version": func() error {
			_, err := st.OpenAccepted(o.OrderID, m.MerchantID, cr.Order.Version+1, cr.Accepted)
			return err
		},
		"another order": func() error {
			_, err := st.OpenAccepted("ord_other", m.MerchantID, cr.Order.Version, cr.Accepted)
			return err
		},
		"another merchant": func() error {
			_, err := st.OpenAccepted(o.OrderID, "mer_other", cr.Order.Version, cr.Accepted)
			return err
		},
		"another keyring": func() error {
			_, err := other.OpenAccepted(o.OrderID, m.MerchantID, cr.Order.Version, cr.Accepted)
			return err
		},
		"altered": func() error {
			_, err := st.OpenAccepted(o.OrderID, m.MerchantID, cr.Order.Version, string(altered))
			return err
		},
		"empty": func() error { _, err := st.OpenAccepted(o.OrderID, m.MerchantID, cr.Order.Version, ""); return err },
	} {
		if open() == nil {
			t.Errorf("%s: the snapshot opened", name)
		}
	}
	dup, err := st.RequestConfirm(ctx, m.MerchantID, o.OrderID, "pk_a", "t", 1000, nil)
	testenv.Must(t, err)
	if dup.Enqueue || dup.Accepted != "" {
		t.Fatalf("duplicate confirm: enqueue %v, snapshot %q", dup.Enqueue, dup.Accepted)
	}
}
