package queue

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/testredis"
)

// OldestWait agrees with asynq's own Inspector (the figure it replaces) on
// real Redis: 0 for an empty or unknown queue, the oldest task's wait once
// tasks are pending, and the oldest of several queues.
func TestOldestWaitMatchesInspector(t *testing.T) {
	t.Parallel()
	rdb := testredis.New(t).Client
	ctx := context.Background()
	if d, err := OldestWait(ctx, rdb, time.Now(), PaymentQueues...); err != nil || d != 0 {
		t.Fatalf("no queues yet: %v %v, want 0", d, err)
	}
	c := asynq.NewClientFromRedisClient(rdb)
	if _, err := c.Enqueue(asynq.NewTask("t", nil), asynq.Queue(QueuePaymentsBulk)); err != nil {
		t.Fatal(err)
	}
	const testPause = 30 * time.Millisecond
	time.Sleep(testPause) // ages the first task (nothing is being waited for)
	for range 3 {
		if _, err := c.Enqueue(asynq.NewTask("t", nil), asynq.Queue(QueuePayments)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	d, err := OldestWait(ctx, rdb, now, PaymentQueues...)
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	var want time.Duration
	for _, q := range []string{QueuePayments, QueuePaymentsBulk} {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		want = max(want, info.Latency)
	}
	if d < testPause || d > want+50*time.Millisecond || d < want-50*time.Millisecond {
		t.Fatalf("OldestWait %v, Inspector %v (the bulk task waited ≥ %v)", d, want, testPause)
	}
	if d, err := OldestWait(ctx, rdb, now, QueuePaymentsFlood); err != nil || d != 0 {
		t.Fatalf("empty queue: %v %v, want 0", d, err)
	}
}
