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
