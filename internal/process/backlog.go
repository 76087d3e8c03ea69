package process

import (
	"context"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/store"
)

// backlog is httpapi.Backlog on asynq's inspector and the store.
type backlog struct {
	insp  *asynq.Inspector
	store *store.Store
}

// OldestConfirmWait is the oldest latency of the payment queues (a
// merchant's confirms beyond its fair share wait in payments_bulk and
// payments_flood).
func (b backlog) OldestConfirmWait(ctx context.Context) (time.Duration, error) {
	qs, err := b.insp.Queues()
	if err != nil {
		return 0, err
	}
	var oldest time.Duration
	for _, name := range queue.PaymentQueues {
		if !slices.Contains(qs, name) {
			continue // asynq has not seen the queue yet (or a flush emptied it): nothing waits
		}
		q, err := b.insp.GetQueueInfo(name)
		if err != nil {
			return 0, err
		}
		oldest = max(oldest, q.Latency)
	}
	return oldest, nil
}

func (b backlog) ConfirmingByMerchant(ctx context.Context) (map[string]int64, error) {
	return b.store.ConfirmingByMerchant(ctx)
}
