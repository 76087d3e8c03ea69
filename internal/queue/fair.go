package queue

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fair confirm work (DESIGN "Fair workers"); PG webhooks, which the PG sends
// for every payment, are counted in the same share. asynq's queues are FIFO, so a
// merchant that posts a few hundred confirms at once would put every other
// merchant's confirm behind all of them. Instead each merchant may have at
// most PerMerchant confirms outstanding (queued or running) in
// QueuePayments; the rest of its confirms go to QueuePaymentsBulk, which
// workers serve with a lower weight and whenever QueuePayments is empty.
// QueuePayments therefore holds at most merchants × PerMerchant confirms,
// so a quiet merchant's confirm waits behind a bounded number of tasks
// however hard another floods, and a lone merchant still gets every worker
// (bulk is not throttled, only ordered after).
//
// Outstanding confirms are a sorted set per merchant in Redis (member: the
// order, score: when the entry lapses), shared by every api replica. The
// worker removes the entry when the confirm finishes; an entry whose worker
// died lapses after TTL, so a lost removal costs fairness for a minute,
// never a payment. Redis being down routes to QueuePayments: fairness is
// given up before availability.
//
// One threshold is not enough: when the machine is saturated every task
// takes longer, so a quiet merchant's outstanding count grows past the
// share too and its confirms would queue behind the flood in bulk. A third
// tier, QueuePaymentsFlood, takes a merchant's confirms beyond
// PerMerchant × FloodFactor, so the merchant with the most outstanding
// work is always served after the ones with less: a coarse, logarithmic
// fair queue in three of asynq's weighted queues.
type Fair struct {
	rdb redis.UniversalClient
	// PerMerchant is how many of one merchant's confirms may be outstanding
	// in QueuePayments (PAYRAIL_CONFIRM_FAIR_SHARE).
	PerMerchant int
	// TTL bounds how long an entry counts without its worker's removal.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewFair returns a Fair on rdb.
func NewFair(rdb redis.UniversalClient, perMerchant int) *Fair {
	return &Fair{rdb: rdb, PerMerchant: perMerchant, TTL: time.Minute}
}

// FloodFactor × PerMerchant outstanding tasks send a merchant's next ones
// to QueuePaymentsFlood.
const FloodFactor = 16

func fairKey(merchantID string) string { return "payrail:confirming:{" + merchantID + "}" }

// takeScript drops lapsed entries, adds this order and returns how many
// others are outstanding (an order already present is not counted twice:
// a retried request keeps its place). After the add the set holds member
// once, so the others are its size less one: no ZSCORE needed.
var takeScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCARD', KEYS[1]) - 1`)

func (f *Fair) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// queueFor counts member (an order's confirm, or a PG webhook) as
// outstanding for merchantID and names the queue its task goes to.
func (f *Fair) queueFor(ctx context.Context, merchantID, member string) (string, error) {
	if f == nil || merchantID == "" || f.PerMerchant <= 0 {
		return QueuePayments, nil
	}
	now := f.now()
	n, err := takeScript.Run(ctx, f.rdb, []string{fairKey(merchantID)},
		now.UnixMilli(), now.Add(f.TTL).UnixMilli(), member, f.TTL.Milliseconds()).Int()
	if err != nil {
		return QueuePayments, err
	}
	switch {
	case n < f.PerMerchant:
		return QueuePayments, nil
	case n < f.PerMerchant*FloodFactor:
		return QueuePaymentsBulk, nil
	default:
		return QueuePaymentsFlood, nil
	}
}

// Outstanding counts merchantID's confirms now outstanding.
func (f *Fair) Outstanding(ctx context.Context, merchantID string) (int64, error) {
	return f.rdb.ZCount(ctx, fairKey(merchantID), "("+strconv.FormatInt(f.now().UnixMilli(), 10), "+inf").Result()
}

// done ends member's outstanding task.
func (f *Fair) done(ctx context.Context, merchantID, member string) error {
	if f == nil || merchantID == "" {
		return nil
	}
	return f.rdb.ZRem(ctx, fairKey(merchantID), member).Err()
}
