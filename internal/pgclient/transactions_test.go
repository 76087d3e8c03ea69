package pgclient_test

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/pgclient"
)

// The transaction list against mockpg: one row per approval and per
// cancel, the window, paging with
// startingAfter, a forgotten payment gone, and an injected 5xx classified
// as for any call. (No row for a session never confirmed.)
func TestTransactionsList(t *testing.T) {
	f := setup(t, mockpg.Faults{})
	ctx := context.Background()
	from := f.clock.Now()
	var keys []string
	for i := range 7 {
		orderID, key := f.session(t, int64(1000+i))
		if r := f.client.Confirm(ctx, "c"+key, key, orderID, int64(1000+i)); r.Outcome != pgclient.Approved {
			t.Fatalf("confirm: %+v", r)
		}
		keys = append(keys, key)
		f.clock.Advance(time.Second)
	}
	if r := f.client.Cancel(ctx, "x1", keys[0], "partial", 300, nil); r.Outcome != pgclient.Approved {
		t.Fatalf("cancel: %+v", r)
	}
	// A session never confirmed moves no money: no row.
	f.session(t, 5000)
	f.clock.Advance(time.Second)
	to := f.clock.Now().Add(time.Second)

	var all []pgclient.Transaction
	after := ""
	for pages := 0; ; pages++ {
		p := f.client.Transactions(ctx, from, to, after, 3)
		if p.Outcome != pgclient.Approved {
			t.Fatalf("page %d: %+v", pages, p)
		}
		all = append(all, p.Transactions...)
		if len(p.Transactions) < 3 {
			break
		}
		after = p.Transactions[len(p.Transactions)-1].TransactionKey
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(all) != 8 {
		t.Fatalf("rows = %d, want 7 approvals and 1 cancel: %+v", len(all), all)
	}
	seen := map[string]bool{}
	for i, tx := range all {
		if seen[tx.TransactionKey] {
			t.Fatalf("row %s served twice", tx.TransactionKey)
		}
		seen[tx.TransactionKey] = true
		if i > 0 {
			a, _ := pgclient.ParseTransactionTime(all[i-1].TransactionAt)
			b, err := pgclient.ParseTransactionTime(tx.TransactionAt)
			if err != nil || b.Before(a) {
				t.Fatalf("rows out of order or unreadable time: %v %v", all[i-1].TransactionAt, tx.TransactionAt)
			}
		}
	}
	if last := all[7]; !last.IsCancel() || last.Amount != 300 || last.PaymentKey != keys[0] {
		t.Fatalf("the cancel row is %+v", last)
	}
	// The window excludes what falls outside it.
	if p := f.client.Transactions(ctx, from.Add(2*time.Second), from.Add(4*time.Second), "", 100); len(p.Transactions) != 2 {
		t.Fatalf("a 2 s window has %d rows, want 2", len(p.Transactions))
	}
	// A payment the PG lost is gone from the list and from lookups.
	if !f.pg.Forget(keys[1]) {
		t.Fatal("forget")
	}
	if p := f.client.Transactions(ctx, from, to, "", 100); len(p.Transactions) != 7 {
		t.Fatalf("after forgetting one payment: %d rows, want 7", len(p.Transactions))
	}
	if r := f.client.GetPayment(ctx, keys[1]); r.Outcome != pgclient.Declined || r.Code != pgclient.CodeNotFoundPayment {
		t.Fatalf("lookup of a forgotten payment: %+v", r)
	}
	if p := f.client.Transactions(ctx, from, to, "", 0); p.Outcome != pgclient.Misconfigured {
		t.Fatalf("limit 0: %+v", p)
	}
	f.pg.SetFaults(mockpg.Faults{Error5xxRate: 1})
	if p := f.client.Transactions(ctx, from, to, "", 100); p.Outcome != pgclient.Unknown || p.HTTPStatus != 500 {
		t.Fatalf("injected 5xx: %+v", p)
	}
}
