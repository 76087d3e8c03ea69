package process

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/store"
)

// backlog is httpapi.Backlog on Redis (asynq's queues) and the store.
type backlog struct {
	rdb   redis.UniversalClient
	store *store.Store
}

// OldestConfirmWait is the oldest wait of the payment queues (a merchant's
// confirms beyond its fair share wait in payments_bulk and payments_flood).
func (b backlog) OldestConfirmWait(ctx context.Context) (time.Duration, error) {
	return queue.OldestWait(ctx, b.rdb, time.Now(), queue.PaymentQueues...)
}

func (b backlog) ConfirmingByMerchant(ctx context.Context) (map[string]int64, error) {
	return b.store.ConfirmingByMerchant(ctx)
}
