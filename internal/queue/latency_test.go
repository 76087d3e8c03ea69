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
	enqStart := time.Now()
	if _, err := c.Enqueue(asynq.NewTask("t", nil), asynq.Queue(QueuePaymentsBulk)); err != nil {
		t.Fatal(err)
	}
	enqEnd := time.Now()
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
	// The bulk task's pending_since lies in [enqStart, enqEnd], so its wait
	// at now does too, exactly; no tolerance a loaded machine could exceed.
	if d < now.Sub(enqEnd) || d > now.Sub(enqStart) || d < testPause {
		t.Fatalf("OldestWait %v, want within [%v, %v] (the bulk task waited ≥ %v)", d, now.Sub(enqEnd), now.Sub(enqStart), testPause)
	}
	// The Inspector reads the same pending_since at its own clock, somewhere
	// in [inspStart, inspEnd]: its Latency minus ours is that clock minus now.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	var want time.Duration
	inspStart := time.Now()
	for _, q := range []string{QueuePayments, QueuePaymentsBulk} {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		want = max(want, info.Latency)
	}
	inspEnd := time.Now()
	if diff := want - d; diff < inspStart.Sub(now) || diff > inspEnd.Sub(now) {
		t.Fatalf("OldestWait %v at now, Inspector %v read %v–%v later: the difference %v is outside that window", d, want, inspStart.Sub(now), inspEnd.Sub(now), diff)
	}
	if d, err := OldestWait(ctx, rdb, now, QueuePaymentsFlood); err != nil || d != 0 {
		t.Fatalf("empty queue: %v %v, want 0", d, err)
	}
}
