package worker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/process"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// swappablePG is the real client whose secret key an operator "rotates"
// mid-test.
type swappablePG struct {
	c atomic.Pointer[pgclient.Client]
	// loseCancels sends cancels but loses every answer (Unknown).
	loseCancels atomic.Bool
	// cancelsLost counts the answers lost.
	cancelsLost atomic.Int64
}

func (s *swappablePG) Confirm(ctx context.Context, idem, paymentKey, orderID string, amount int64) pgclient.Result {
	return s.c.Load().Confirm(ctx, idem, paymentKey, orderID, amount)
}

func (s *swappablePG) GetPayment(ctx context.Context, paymentKey string) pgclient.Result {
	return s.c.Load().GetPayment(ctx, paymentKey)
}

func (s *swappablePG) Cancel(ctx context.Context, idem, paymentKey, reason string, amount int64, refund *pgclient.RefundAccount) pgclient.Result {
	res := s.c.Load().Cancel(ctx, idem, paymentKey, reason, amount, refund)
	if s.loseCancels.Load() {
		s.cancelsLost.Add(1)
		return pgclient.Result{Outcome: pgclient.Unknown, Err: errors.New("test: answer lost"), Latency: res.Latency}
	}
	return res
}

// A wrong (half-rotated) PG secret key is payrail's own fault, not the
// buyer's: every confirm and cancel in that window is retried, an operator
// alert is recorded, and nothing fails; once the key is right again the
// same confirm and cancel go through, each exactly once.
func TestWrongPGKeyRetriesAndAlertsNeverFails(t *testing.T) {
	t.Parallel()
	pg := &swappablePG{}
	sys := systest.Start(t, systest.Options{Worker: true, WorkerHook: func(w *process.Worker) {
		w.Handler.PG = pg
	}})
	good := pgclient.New(sys.PGURL, sys.Config.PGSecretKey, nil)
	pg.c.Store(good)
	m := sys.NewMerchant("")
	paid, _ := payOrder(t, sys, m, 9000)

	pg.c.Store(pgclient.New(sys.PGURL, "test_sk_half_rotated", nil))
	o := m.CreateOrder(5000)
	if r := m.Confirm(o, sys.Session(o)); r.Status != 202 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	if r := m.Do("POST", "/v1/orders/"+paid.OrderID+"/cancel", map[string]any{"reason": "x", "amount": 3000}, "Idempotency-Key", "c1"); r.Status != 202 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	testenv.Poll(t, 20*time.Second, "refused confirms and cancels to be retried", func() bool {
		return sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'pg.confirm' AND details->>'outcome' = 'misconfigured'`, o.OrderID) >= 2 &&
			sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND action = 'pg.cancel' AND details->>'outcome' = 'misconfigured'`, paid.OrderID) >= 2
	})
	if got := m.Do("GET", "/v1/orders/"+o.OrderID, nil).JSON()["status"]; got != "CONFIRMING" {
		t.Fatalf("order under a wrong key is %v, want CONFIRMING", got)
	}
	if n := sys.Count(`SELECT count(*) FROM cancels WHERE order_id = $1 AND status = 'PENDING'`, paid.OrderID); n != 1 {
		t.Fatalf("pending cancels under a wrong key = %d, want 1", n)
	}
	if n := sys.Count(`SELECT count(*) FROM callbacks WHERE event_type IN ('payment.failed', 'payment.cancel_failed')`); n != 0 {
		t.Fatalf("failure callbacks under a wrong key = %d, want 0", n)
	}
	if n := sys.Count(`SELECT count(*) FROM pg_alerts WHERE kind = 'pg_misconfigured' AND code = 'UNAUTHORIZED_KEY' AND count >= 2`); n != 1 {
		t.Fatalf("pg_misconfigured alert rows = %d, want 1", n)
	}

	pg.c.Store(good)
	m.WaitStatus(o.OrderID, "PAID", 30*time.Second)
	m.WaitStatus(paid.OrderID, "PARTIALLY_CANCELED", 30*time.Second)
	if got := sys.PG.Stats()[o.OrderID].Approvals; got != 1 {
		t.Fatalf("approvals after the key is fixed = %d, want 1", got)
	}
	if n := sys.Count(`SELECT count(*) FROM cancels WHERE order_id = $1 AND status = 'SUCCEEDED'`, paid.OrderID); n != 1 {
		t.Fatalf("succeeded cancels = %d, want 1", n)
	}
}
