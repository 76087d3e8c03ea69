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

func (b backlog) OldestConfirmWait(ctx context.Context) (time.Duration, error) {
	qs, err := b.insp.Queues()
	if err != nil {
		return 0, err
	}
	if !slices.Contains(qs, queue.QueuePayments) {
		return 0, nil // asynq has not seen the queue yet (or a flush emptied it): nothing waits
	}
	q, err := b.insp.GetQueueInfo(queue.QueuePayments)
	if err != nil {
		return 0, err
	}
	return q.Latency, nil
}

func (b backlog) ConfirmingByMerchant(ctx context.Context) (map[string]int64, error) {
	return b.store.ConfirmingByMerchant(ctx)
}
