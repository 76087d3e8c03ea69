package worker_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/process"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// The confirm the api enqueues carries the order as its accept left it,
// sealed (store.SealAccepted), and the worker's first run trusts it only
// as far as the seal and the version fence allow, on real PostgreSQL, Redis
// and mockpg:
//   - the queued task's snapshot opens to the row PostgreSQL holds;
//   - a snapshot run after the order was settled (a sweep's run got there
//     first) calls the PG again under the same idempotency key and
//     writes nothing: one approval, one PAID, one callback;
//   - another order's snapshot, or an altered one, does not open: the run
//     reads the order, and concurrent runs of the real task and such
//     forgeries charge once, the order's own amount.
func TestAcceptedSnapshotIsFencedByTheOrder(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	ctx := context.Background()
	m := sys.NewMerchant("")
	insp := asynq.NewInspectorFromRedisClient(sys.Redis.Client)
	w := process.NewWorker(sys.Config, sys.Deps, sys.Log).Handler

	accepted := func(o systest.Order) queue.OrderPayload {
		t.Helper()
		if r := m.Confirm(o, sys.Session(o)); r.Status != 202 {
			t.Fatalf("confirm: %d %s", r.Status, r.Body)
		}
		row, err := sys.Deps.Store.OrderRowAnyMerchant(ctx, o.OrderID)
		testenv.Must(t, err)
		var info *asynq.TaskInfo
		for _, q := range queue.PaymentQueues {
			if info, err = insp.GetTaskInfo(q, "confirm:"+o.OrderID+":"+strconv.Itoa(row.Version)); err == nil {
				break
			}
		}
		testenv.Must(t, err)
		var p queue.OrderPayload
		testenv.Must(t, json.Unmarshal(info.Payload, &p))
		if p.Accepted == "" {
			t.Fatalf("the accept's task carries no snapshot: %s", info.Payload)
		}
		if strings.Contains(p.Accepted, *row.PaymentKey) || strings.Contains(string(info.Payload), *row.PaymentKey) {
			t.Fatalf("the snapshot is in clear in Redis: %s", info.Payload)
		}
		opened, err := sys.Deps.Store.OpenAccepted(p.OrderID, p.MerchantID, p.Version, p.Accepted)
		testenv.Must(t, err)
		if !opened.ConfirmRequestedAt.Equal(*row.ConfirmRequestedAt) {
			t.Fatalf("snapshot requested at %v, row %v", opened.ConfirmRequestedAt, row.ConfirmRequestedAt)
		}
		opened.ConfirmRequestedAt = row.ConfirmRequestedAt
		// What a confirm does not read (each named, so a new column is a
		// decision): the rest must be the row.
		read := row
		read.MerchantOrderID, read.Currency, read.OrderName, read.SuccessURL, read.FailURL = nil, "", "", nil, nil
		read.PaymentTokenHash, read.NextCheckAt, read.ExpiresAt, read.CreatedAt, read.UpdatedAt, read.Seq = nil, nil, time.Time{}, time.Time{}, time.Time{}, 0
		if diff := cmp.Diff(read, opened); diff != "" {
			t.Fatalf("the opened snapshot is not the row a confirm reads (-row +snapshot):\n%s", diff)
		}
		return p
	}
	task := func(p queue.OrderPayload) *asynq.Task {
		b, err := json.Marshal(p)
		testenv.Must(t, err)
		return asynq.NewTask(queue.TypeConfirm, b)
	}
	paidOnce := func(o systest.Order, amount int64) {
		t.Helper()
		got, err := sys.Deps.Store.OrderRowAnyMerchant(ctx, o.OrderID)
		testenv.Must(t, err)
		st := sys.PG.Stats()[o.OrderID]
		if got.Status != payment.Paid || st.Approvals != 1 || got.Amount != amount {
			t.Fatalf("%s %d, %d approvals; want PAID %d, 1", got.Status, got.Amount, st.Approvals, amount)
		}
		for to, want := range map[string]int{"PAID": 1, "FAILED": 0} {
			if n := transitions(sys, o.OrderID, to); n != want {
				t.Fatalf("%s transitions = %d, want %d", to, n, want)
			}
		}
		if n := callbacks(sys, o.OrderID, "payment.paid"); n != 1 {
			t.Fatalf("payment.paid callbacks = %d, want 1", n)
		}
	}

	t.Run("settled before the snapshot ran", func(t *testing.T) {
		o := m.CreateOrder(15000)
		p := accepted(o)
		read := p
		read.Accepted = "" // as the sweep's re-enqueue
		testenv.Must(t, w.HandleConfirm(ctx, task(read)))
		testenv.Must(t, w.HandleConfirm(ctx, task(p)))
		paidOnce(o, 15000)
		if n := sys.PG.Stats()[o.OrderID].ConfirmCalls; n != 2 {
			t.Fatalf("confirm calls %d, want 2 (the snapshot run asked again, idempotently)", n)
		}
	})

	t.Run("an earlier unknown outcome is not overruled by a decline", func(t *testing.T) {
		// An earlier run of this task met an unknown outcome (recorded
		// without a version change) and a shutdown requeued it at retry
		// count 0: its snapshot says nothing is unknown. A decline now
		// must not fail the order before a lookup (DESIGN rule 4).
		o := m.CreateOrder(18000)
		p := accepted(o)
		testenv.Must(t, sys.Exec(`UPDATE orders SET outcome_unknown = true WHERE order_id = $1`, o.OrderID))
		sys.PG.SetFaults(mockpg.Faults{DeclineRate: 1})
		defer sys.PG.SetFaults(mockpg.Faults{})
		_ = w.HandleConfirm(ctx, task(p))
		got, err := sys.Deps.Store.OrderRowAnyMerchant(ctx, o.OrderID)
		testenv.Must(t, err)
		if got.Status != payment.Confirming || transitions(sys, o.OrderID, "FAILED") != 0 {
			t.Fatalf("a decline on the snapshot moved the order to %s past an unknown outcome", got.Status)
		}
		if n := sys.PG.Stats()[o.OrderID].ConfirmCalls; n != 1 {
			t.Fatalf("confirm calls %d, want 1", n)
		}
	})

	t.Run("forged snapshots beside the real task", func(t *testing.T) {
		o, other := m.CreateOrder(16000), m.CreateOrder(17000)
		p, q := accepted(o), accepted(other)
		swapped := p
		swapped.Accepted = q.Accepted // another order's seal
		altered := p
		b := []byte(p.Accepted)
		b[len(b)-2] ^= 1 // one letter of the seal
		altered.Accepted = string(b)
		var wg sync.WaitGroup
		for i := range 18 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = w.HandleConfirm(ctx, task([]queue.OrderPayload{swapped, altered, p}[i%3]))
			}()
		}
		wg.Wait()
		testenv.Must(t, w.HandleConfirm(ctx, task(p))) // in case every run found the lock taken
		paidOnce(o, 16000)
		if st := sys.PG.Stats()[other.OrderID]; st.ConfirmCalls != 0 {
			t.Fatalf("the other order's key was confirmed %d times through this order's tasks", st.ConfirmCalls)
		}
	})
}
