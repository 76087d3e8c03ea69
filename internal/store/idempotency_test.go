package store_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// The Idempotency-Key contract, on the store alone: one of many concurrent
// claims runs the effect and the others replay its answer; another body is
// REUSED; a released key runs again; keys are per merchant; and a holder
// whose lease ran out loses the key — a taker-over runs, and the old
// holder's effect is undone, not committed twice.
func TestIdempotencyLeases(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	st := store.New(db.DB, testenv.Keyring(t), store.Options{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	ctx := context.Background()
	newMerchant := func() string {
		m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "i", CallbackURL: "https://example.com/cb"})
		testenv.Must(t, err)
		return m.MerchantID
	}
	a, b := newMerchant(), newMerchant()
	create := func(merchant string, claim *store.IdemClaim, body string) (payment.Order, error) {
		return st.CreateOrder(ctx, store.NewOrder{MerchantID: merchant, Amount: 1000, Currency: "KRW", OrderName: "i", TokenHash: store.HashToken("t"), TTL: time.Hour},
			&store.IdemFinish[payment.Order]{Claim: claim, Render: func(o payment.Order) (int, []byte, error) {
				return 201, []byte(`{"orderId":"` + o.OrderID + `","body":"` + body + `"}`), nil
			}})
	}
	orders := func(merchant string) int {
		var n int
		testenv.Must(t, db.DB.Get(&n, `SELECT count(*) FROM orders WHERE merchant_id = $1`, merchant))
		return n
	}
	hash := store.HashToken("body-1")
	scope := store.IdemScope{MerchantID: a, Method: "POST", Path: "/v1/orders", Key: "k-concurrent"}

	// 30 concurrent duplicates: one claim, 29 replays of its answer.
	var wg sync.WaitGroup
	var claims, replays atomic.Int64
	bodies := make(chan string, 30)
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			claim, stored, err := st.ClaimIdempotency(ctx, scope, hash)
			if err != nil {
				t.Errorf("claim: %v", err)
				return
			}
			if stored != nil {
				replays.Add(1)
				bodies <- string(stored.Body)
				return
			}
			claims.Add(1)
			if _, err := create(a, claim, "first"); err != nil {
				t.Errorf("create: %v", err)
			}
		}()
	}
	wg.Wait()
	close(bodies)
	if claims.Load() != 1 || replays.Load() != 29 || orders(a) != 1 {
		t.Fatalf("30 duplicates: %d claims, %d replays, %d orders; want 1, 29, 1", claims.Load(), replays.Load(), orders(a))
	}
	for body := range bodies {
		if body != "" && !strings.Contains(body, `"body":"first"`) {
			t.Fatalf("replay %q is not the first answer", body)
		}
	}

	// Another body under the same key: refused, nothing runs.
	if _, _, err := st.ClaimIdempotency(ctx, scope, store.HashToken("body-2")); payment.ErrorCode(err) != payment.CodeIdempotencyKeyReused {
		t.Fatalf("another body: err = %v, want IDEMPOTENCY_KEY_REUSED", err)
	}
	// The same key for another merchant is that merchant's own.
	if claim, stored, err := st.ClaimIdempotency(ctx, store.IdemScope{MerchantID: b, Method: "POST", Path: "/v1/orders", Key: "k-concurrent"}, hash); err != nil || stored != nil || claim == nil {
		t.Fatalf("other merchant's key: claim %v stored %v err %v, want a fresh claim", claim, stored, err)
	}

	// Released after a failed effect: the retry runs.
	rs := store.IdemScope{MerchantID: a, Method: "POST", Path: "/v1/orders", Key: "k-release"}
	claim, _, err := st.ClaimIdempotency(ctx, rs, hash)
	testenv.Must(t, err)
	testenv.Must(t, st.ReleaseIdempotency(ctx, claim))
	if claim, stored, err := st.ClaimIdempotency(ctx, rs, hash); err != nil || stored != nil || claim == nil {
		t.Fatalf("released key: claim %v stored %v err %v", claim, stored, err)
	}

	// A holder whose lease runs out (it hung) loses the key.
	ls := store.IdemScope{MerchantID: a, Method: "POST", Path: "/v1/orders", Key: "k-lease"}
	old, _, err := st.ClaimIdempotency(ctx, ls, hash)
	testenv.Must(t, err)
	clock.Add(int64(store.IdemLease + time.Second))
	taker, stored, err := st.ClaimIdempotency(ctx, ls, hash)
	if err != nil || stored != nil || taker == nil {
		t.Fatalf("expired lease: claim %v stored %v err %v, want a take-over", taker, stored, err)
	}
	before := orders(a)
	if _, err := create(a, old, "late"); payment.ErrorCode(err) != payment.CodeIdempotencyKeyInUse {
		t.Fatalf("the old holder's late finish: err = %v, want IDEMPOTENCY_KEY_IN_USE", err)
	}
	if orders(a) != before {
		t.Fatal("the old holder's effect was committed after it lost the key")
	}
	if _, err := create(a, taker, "taker"); err != nil {
		t.Fatalf("taker: %v", err)
	}
	if _, stored, err := st.ClaimIdempotency(ctx, ls, hash); err != nil || stored == nil || !strings.Contains(string(stored.Body), `"body":"taker"`) {
		t.Fatalf("after the take-over: stored %v err %v, want the taker's answer", stored, err)
	}
}
