package store_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// Only a settlement is notified on payrail_order, and its notice carries
// the settled order exactly as Transition returned it: a Prefer: wait
// waiter answers from it without reading the order. An order too large for
// NOTIFY's 8,000 bytes is notified without its body.
func TestSettlementNoticeCarriesTheOrder(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	l := pq.NewListener(db.URL, 10*time.Millisecond, time.Second, nil)
	t.Cleanup(func() { l.Close() })
	testenv.Must(t, l.Listen("payrail_order"))
	m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "n", CallbackURL: "https://example.com/cb"})
	testenv.Must(t, err)

	pay := func(name string) payment.Order {
		o, err := st.CreateOrder(ctx, store.NewOrder{MerchantID: m.MerchantID, Amount: 1000, Currency: "KRW", OrderName: name, TokenHash: store.HashToken("t"), TTL: time.Hour}, nil)
		testenv.Must(t, err)
		pk := "pk_" + o.OrderID
		o, err = st.Transition(ctx, store.Change{OrderID: o.OrderID, Version: o.Version, To: payment.Confirming, PaymentKey: &pk, Action: "test"})
		testenv.Must(t, err)
		now := time.Now().UTC()
		o, err = st.Transition(ctx, store.Change{OrderID: o.OrderID, Version: o.Version, To: payment.Paid, ApprovedAt: &now, Action: "test"})
		testenv.Must(t, err)
		return o
	}
	next := func() string {
		select {
		case n := <-l.Notify:
			return n.Extra
		case <-time.After(10 * time.Second):
			t.Fatal("no notice within 10 s")
			return ""
		}
	}

	paid := pay("small")
	notice := next() // the CONFIRMING transition came first and was not notified
	id, got, settled := store.ParseOrderNotice(notice)
	if id != paid.OrderID || !settled || got == nil {
		t.Fatalf("notice %q: order %q settled %v body %v; want %s's settlement with its order", notice, id, settled, got != nil, paid.OrderID)
	}
	want, _ := json.Marshal(paid)
	have, _ := json.Marshal(*got)
	if string(want) != string(have) {
		t.Fatalf("notified order differs from the transition's:\n got %s\nwant %s", have, want)
	}

	big := pay(strings.Repeat("가", 3000)) // 9,000 bytes of order name
	id, got, settled = store.ParseOrderNotice(next())
	if id != big.OrderID || !settled || got != nil {
		t.Fatalf("large order: notice for %q settled %v with body %v; want %s settled, no body", id, settled, got != nil, big.OrderID)
	}
	select {
	case n := <-l.Notify:
		t.Fatalf("unexpected notice %q: only the two settlements are notified", n.Extra)
	default:
	}

	// A notice of an older version (no body, any status) still parses.
	if _, o, s := store.ParseOrderNotice("ord_x CONFIRMING"); s || o != nil {
		t.Fatalf("a CONFIRMING notice read as a settlement")
	}
	if id, o, s := store.ParseOrderNotice("ord_x PAID"); id != "ord_x" || !s || o != nil {
		t.Fatalf("an old-style PAID notice: %q %v %v", id, o, s)
	}
}
