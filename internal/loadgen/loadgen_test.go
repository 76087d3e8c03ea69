package loadgen_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/callback"
	"github.com/payrail/payrail/internal/loadgen"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// TestRunPaysEveryOrderOnce is `make bench` shrunk to run in `make test`: 200
// payments against an in-process payrail, half closed loop, half open loop,
// and every order must end PAID with exactly one verified payment.paid.
func TestRunPaysEveryOrderOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	sys := systest.Start(t, systest.Options{Worker: true})
	sink, err := loadgen.NewSink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	c := &loadgen.Client{
		T:    loadgen.Target{APIURL: sys.URL, AdminToken: systest.AdminToken, MockPGURL: sys.PGURL},
		HTTP: loadgen.NewHTTPClient(),
	}
	m, err := c.CreateMerchant(ctx, "loadgen test", sink.URL())
	if err != nil {
		t.Fatal(err)
	}
	c.M = m
	if err := sink.AddSecret(m.CallbackSecret); err != nil {
		t.Fatal(err)
	}

	// Both loops at once, so their callback tails overlap: the test stays
	// well under 40 s although the worker's delayed-task forwarder (asynq's
	// 5 s default) makes the slowest callbacks take seconds.
	var closed, open loadgen.Result
	var wg sync.WaitGroup
	wg.Go(func() {
		// A fifth of the closed loop's payments are 가상계좌 (-method mix=0.2).
		closed = loadgen.Run(ctx, c, sink, loadgen.Options{Name: "closed", N: 100, Concurrency: 16, CallbackTimeout: 25 * time.Second,
			VirtualAccountShare: 0.2, DepositDelay: 100 * time.Millisecond})
	})
	wg.Go(func() {
		open = loadgen.Run(ctx, c, sink, loadgen.Options{Name: "open", N: 100, Rate: 50, WaitEvery: 10, CallbackTimeout: 25 * time.Second})
	})
	wg.Wait()
	for _, r := range []loadgen.Result{closed, open} {
		if r.OK != r.N || r.Delivered != r.N {
			t.Errorf("%s: %d payments, %d ok, %d delivered; errors: %v", r.Name, r.N, r.OK, r.Delivered, r.FirstErrors)
		}
		t.Logf("%s: %.1f payments/s, ingress %+v, accepted→paid %+v, paid→callback %+v",
			r.Name, r.PaymentsPerSec, r.ConfirmIngress, r.AcceptedToPaid, r.PaidToCallback)
	}
	if closed.VirtualAccounts != 20 || closed.DepositToCallback.N != 20 || closed.AcceptedToPaid.N != 80 {
		t.Errorf("closed loop: %d virtual accounts, %d deposit→callback samples, %d card waits; want 20, 20, 80",
			closed.VirtualAccounts, closed.DepositToCallback.N, closed.AcceptedToPaid.N)
	}
	// The open loop sampled Prefer: wait and measured the ingress of the rest.
	if open.AcceptedToPaid.N != 10 || open.ConfirmIngress.N != 90 {
		t.Errorf("open loop: %d waited, %d ingress samples; want 10 and 90", open.AcceptedToPaid.N, open.ConfirmIngress.N)
	}
	// Give a late duplicate a moment to show up before counting.
	time.Sleep(1500 * time.Millisecond)
	st := sink.Stats()
	for _, r := range []loadgen.Result{closed, open} {
		if err := loadgen.Check(r, st); err != nil {
			t.Errorf("%s: %v", r.Name, err)
		}
	}
	if st.Paid != 200 || st.BadSignature != 0 {
		t.Errorf("sink: %+v; want exactly 200 verified payment.paid", st)
	}
	// Every order is PAID according to the API too.
	for _, r := range []loadgen.Result{closed, open} {
		for _, id := range r.OrderIDs {
			if st, err := c.OrderStatus(ctx, id); err != nil || st != "PAID" {
				t.Errorf("order %s: status %q, %v; want PAID", id, st, err)
			}
		}
	}
}

func postSigned(t *testing.T, url, secret, id, body string) int {
	t.Helper()
	ts := time.Now()
	sig, err := callback.Sign([]string{secret}, id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSinkRefusesBadSignatures: a callback signed with another secret is
// refused (401) and counted, and never counts as a delivery.
func TestSinkRefusesBadSignatures(t *testing.T) {
	sink, err := loadgen.NewSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if err := sink.AddSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, secret string
		want         int
	}{
		{"good", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 204},
		{"other secret", "whsec_c2VjcmV0LW90aGVyLW90aGVyLW90aGVy", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status := postSigned(t, sink.URL(), tc.secret, "msg_"+tc.name, `{"type":"payment.paid","data":{"orderId":"ord_`+map[bool]string{true: "a", false: "b"}[tc.want == 204]+`","updatedAt":"2026-01-01T00:00:00Z"}}`)
			if status != tc.want {
				t.Errorf("status %d, want %d", status, tc.want)
			}
		})
	}
	st := sink.Stats()
	if st.Paid != 1 || st.BadSignature != 1 {
		t.Errorf("stats %+v, want 1 paid and 1 bad signature", st)
	}
	if _, ok := sink.Arrived("ord_b"); ok {
		t.Error("a badly signed callback counted as delivered")
	}
}

// The SQL ceiling drives the store's own methods in a scratch schema: every
// payment ends PAID with its event and callback settled, and the running
// system's tables (schema public) are not touched.
func TestSQLCeilingRunsTheStoreInAScratchSchema(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	var before int
	testenv.Must(t, db.DB.Get(&before, `SELECT count(*) FROM orders`))
	var progress countProgress
	c, err := loadgen.RunSQLCeiling(context.Background(), db.URL, 60, 4, 3, true, &progress)
	testenv.Must(t, err)
	if c.Payments != 60 || c.PaymentsPerSec <= 0 || c.TxPerPayment != 5 || progress.n.Load() != 60 {
		t.Fatalf("ceiling = %+v, progress %d", c, progress.n.Load())
	}
	t.Logf("ceiling: %.0f payments/s, %.1f commits per payment", c.PaymentsPerSec, c.CommitsPerPayment)
	if c.CommitsPerPayment < 5 {
		t.Fatalf("commits per payment %.1f: the store's transactions did not run", c.CommitsPerPayment)
	}
	// The lane turns ran the worker's way: nearly every callback delivered
	// (each merchant's last turn may still be queued when the run ends).
	if c.Delivered < 60-3*4 {
		t.Fatalf("%d of 60 callbacks delivered by the ceiling's lane turns", c.Delivered)
	}
	var after, schemas int
	testenv.Must(t, db.DB.Get(&after, `SELECT count(*) FROM orders`))
	testenv.Must(t, db.DB.Get(&schemas, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, loadgen.CeilingSchema))
	if after != before || schemas != 0 {
		t.Fatalf("public orders %d → %d, scratch schemas left %d", before, after, schemas)
	}
}

type countProgress struct{ n atomic.Int64 }

func (p *countProgress) Add(n int) { p.n.Add(int64(n)) }

// The minimal durable path (issue 19) runs its four transactions against
// payrail's own schema in the scratch schema: four commits a payment, the
// fences hold (a failed one is an error), and nothing is left behind.
func TestMinimalCeilingIsFourCommits(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	var progress countProgress
	c, err := loadgen.RunMinimalCeiling(context.Background(), db.URL, 80, 4, true, &progress)
	testenv.Must(t, err)
	if c.Payments != 80 || c.PaymentsPerSec <= 0 || progress.n.Load() != 80 {
		t.Fatalf("minimal ceiling = %+v, progress %d", c, progress.n.Load())
	}
	// pg_stat_database counts the whole database: the setup is not in the
	// window, but autovacuum or another test's template copy may be.
	if c.CommitsPerPayment < 3.9 || c.CommitsPerPayment > 4.5 {
		t.Fatalf("%.2f commits per payment, want 4", c.CommitsPerPayment)
	}
	var schemas int
	testenv.Must(t, db.DB.Get(&schemas, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, loadgen.CeilingSchema))
	if schemas != 0 {
		t.Fatalf("scratch schema left behind")
	}
}
