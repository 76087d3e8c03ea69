package queue

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// oldestPendingScript returns the pending_since (Unix nanoseconds) of the
// oldest pending task of one queue, or 0: the part of asynq v0.26's
// currentStatsCmd that its Inspector turns into a queue's Latency (asynq
// pushes with LPUSH and dequeues from the right, so the oldest is at -1).
var oldestPendingScript = redis.NewScript(`
local id = redis.call("LINDEX", KEYS[1], -1)
if not id then return "0" end
return redis.call("HGET", ARGV[1] .. id, "pending_since") or "0"`)

// OldestWait is how long the oldest pending task of queues has waited (the
// largest over queues; 0 when none waits): asynq's Inspector Latency, read
// with one two-command script per queue. GetQueueInfo, which shedding used,
// also counts every task state and samples MEMORY USAGE over the queue's
// task keys — about 12 MEMORY USAGE calls per payment at 48 payments/s, for
// a figure read twice a second by every api. Like the idle gate it knows
// asynq v0.26's key layout; if that changes the answer is 0 (nothing seems
// to wait: shedding stops, payments do not).
func OldestWait(ctx context.Context, rdb redis.UniversalClient, now time.Time, queues ...string) (time.Duration, error) {
	var oldest time.Duration
	for _, q := range queues {
		prefix := "asynq:{" + q + "}:"
		v, err := oldestPendingScript.Run(ctx, rdb, []string{prefix + "pending"}, prefix+"t:").Text()
		if err != nil {
			return 0, fmt.Errorf("oldest pending task of %s: %w", q, err)
		}
		ns, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ns <= 0 {
			continue
		}
		oldest = max(oldest, now.Sub(time.Unix(0, ns)))
	}
	return oldest, nil
}
