package worker_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

func TestExclusiveNeverRunsTwiceAtOnce(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	var running, maxRunning, ran atomic.Int32
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := sys.Deps.Store.Exclusive(context.Background(), 42, func(ctx context.Context) error {
				n := running.Add(1)
				if n > maxRunning.Load() {
					maxRunning.Store(n)
				}
				<-release
				running.Add(-1)
				return nil
			})
			testenv.Must(t, err)
			if ok {
				ran.Add(1)
			}
		}()
	}
	testenv.Poll(t, 20*time.Second, "one holder", func() bool { return running.Load() == 1 })
	close(release)
	wg.Wait()
	if maxRunning.Load() != 1 {
		t.Fatalf("%d sweeps ran at once", maxRunning.Load())
	}
	if ran.Load() < 1 {
		t.Fatal("no sweep ran")
	}
}

// Two workers both tick the sweep; each stale order expires exactly once.
func TestTwoWorkersExpireOnce(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_ORDER_TTL": "1s", "PAYRAIL_SWEEP_INTERVAL": "200ms"}})
	m := sys.NewMerchant("")
	var ids []string
	var first systest.Order
	for i := range 20 {
		o := m.CreateOrder(int64(100 + i))
		if i == 0 {
			first = o
		}
		ids = append(ids, o.OrderID)
	}
	sys.StartWorker()
	sys.StartWorker()
	testenv.Poll(t, 15*time.Second, "all orders expired", func() bool {
		return sys.Count(`SELECT count(*) FROM orders WHERE status = 'EXPIRED'`) == len(ids)
	})
	if n := sys.Count(`SELECT count(*) FROM payment_log WHERE to_status = 'EXPIRED'`); n != len(ids) {
		t.Fatalf("EXPIRED transitions = %d, want %d", n, len(ids))
	}
	if n := sys.Count(`SELECT count(*) FROM callbacks WHERE event_type = 'payment.expired'`); n != len(ids) {
		t.Fatalf("payment.expired callbacks = %d, want %d", n, len(ids))
	}
	// Confirming an expired order is refused, and changes nothing.
	r := m.Confirm(first, "tmock_late")
	if r.Status != 409 || r.Code() != "ORDER_NOT_CONFIRMABLE" {
		t.Fatalf("confirm of an expired order: %d %s", r.Status, r.Body)
	}
	if st := m.Status(first.OrderID); st != "EXPIRED" {
		t.Fatalf("status = %s", st)
	}
}
