package queue

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/testredis"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// LaneTaskLost answers from Redis: a queued lane task is there, one Redis
// lost (a failover's new master never saw it; FLUSHDB stands in) is not.
func TestLaneTaskLost(t *testing.T) {
	t.Parallel()
	rdb := testredis.New(t).Client
	c := NewClient(asynq.NewClientFromRedisClient(rdb))
	c.Inspector = asynq.NewInspectorFromRedisClient(rdb)
	ctx := context.Background()
	must(t, c.CallbackLane(ctx, "mer_a", 7))
	if lost, err := c.LaneTaskLost(ctx, "mer_a", 7); err != nil || lost {
		t.Fatalf("queued lane: lost=%v err=%v, want held", lost, err)
	}
	if lost, err := c.LaneTaskLost(ctx, "mer_a", 8); err != nil || !lost {
		t.Fatalf("another generation: lost=%v err=%v, want lost", lost, err)
	}
	must(t, rdb.FlushDB(ctx).Err())
	if lost, err := c.LaneTaskLost(ctx, "mer_a", 7); err != nil || !lost {
		t.Fatalf("after the flush: lost=%v err=%v, want lost", lost, err)
	}
}

// LanesWaiting reads asynq's own pending list of the callbacks queue (its
// key is asynq's, not ours: an asynq that renamed it would make every lane
// stay, and this fails): empty, a queued lane task (another queue's task
// does not count), the list emptied; a client without Redis says yes.
func TestLanesWaitingReadsAsynqsPendingList(t *testing.T) {
	t.Parallel()
	rdb := testredis.New(t).Client
	c := NewClient(asynq.NewClientFromRedisClient(rdb))
	c.Redis = rdb
	ctx := context.Background()
	if w, err := c.LanesWaiting(ctx); err != nil || w {
		t.Fatalf("empty queue: waiting=%v err=%v", w, err)
	}
	must(t, c.CallbackLane(ctx, "mer_a", 1))
	must(t, c.Sweep(ctx, 1, 0)) // another queue's task is not a lane waiting
	if w, err := c.LanesWaiting(ctx); err != nil || !w {
		t.Fatalf("a queued lane task: waiting=%v err=%v", w, err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if _, err := insp.DeleteAllPendingTasks(QueueCallbacks); err != nil {
		t.Fatal(err)
	}
	if w, err := c.LanesWaiting(ctx); err != nil || w {
		t.Fatalf("after the lane task left: waiting=%v err=%v", w, err)
	}
	if w, _ := NewClient(asynq.NewClientFromRedisClient(rdb)).LanesWaiting(ctx); !w {
		t.Fatal("a client without Redis must say yes (lanes never hold on to their task)")
	}
}
