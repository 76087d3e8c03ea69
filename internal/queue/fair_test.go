package queue

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/testredis"
)

func TestFairShareSendsOnlyTheExcessToBulk(t *testing.T) {
	t.Parallel()
	rdb := testredis.New(t).Client
	ctx := context.Background()
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	f := NewFair(rdb, 3)
	f.Now = func() time.Time { return now }

	var got []string
	for i := range 3*FloodFactor + 1 {
		q, err := f.queueFor(ctx, "mer_a", "ord_a"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, q)
	}
	// 3 in payments, up to 3 × FloodFactor in bulk, the rest in flood.
	for i, q := range got {
		want := QueuePaymentsFlood
		switch {
		case i < 3:
			want = QueuePayments
		case i < 3*FloodFactor:
			want = QueuePaymentsBulk
		}
		if q != want {
			t.Fatalf("A's confirm %d went to %s, want %s (all: %v)", i, q, want, got)
		}
	}
	total := int64(len(got))
	// Another merchant is not charged for A's flood.
	if q, _ := f.queueFor(ctx, "mer_b", "ord_b0"); q != QueuePayments {
		t.Errorf("B's first confirm beside A's flood went to %s", q)
	}

	// A finished confirm frees its place in the share.
	if err := f.done(ctx, "mer_a", "ord_a0"); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.Outstanding(ctx, "mer_a"); n != total-1 {
		t.Errorf("outstanding after one done = %d, want %d", n, total-1)
	}

	// An entry whose worker never came back lapses after TTL.
	now = now.Add(f.TTL + time.Second)
	if n, _ := f.Outstanding(ctx, "mer_a"); n != 0 {
		t.Errorf("outstanding after TTL = %d, want 0", n)
	}
	if q, _ := f.queueFor(ctx, "mer_a", "ord_a9"); q != QueuePayments {
		t.Errorf("after the entries lapsed A's confirm went to %s", q)
	}
}

func TestFairShareCountsConcurrentDuplicatesOnce(t *testing.T) {
	t.Parallel()
	rdb := testredis.New(t).Client
	ctx := context.Background()
	f := NewFair(rdb, 2)

	// 64 concurrent requests for one order (a retried confirm) take one
	// place: a merchant's retries must not push its own next payment to bulk.
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if q, err := f.queueFor(ctx, "mer_a", "ord_same"); err != nil || q != QueuePayments {
				t.Errorf("duplicate confirm went to %s (%v)", q, err)
			}
		})
	}
	wg.Wait()
	if n, _ := f.Outstanding(ctx, "mer_a"); n != 1 {
		t.Fatalf("outstanding after 64 duplicates = %d, want 1", n)
	}
	if q, _ := f.queueFor(ctx, "mer_a", "ord_next"); q != QueuePayments {
		t.Errorf("the next order after duplicates went to %s", q)
	}
}

func TestFairShareWithoutRedisGivesUpFairnessNotTheConfirm(t *testing.T) {
	t.Parallel()
	db := testredis.New(t)
	rdb := redis.NewClient(db.Options)
	rdb.Close()
	q, err := NewFair(rdb, 1).queueFor(context.Background(), "mer_a", "ord_1")
	if err == nil || q != QueuePayments {
		t.Fatalf("with Redis gone: queue %s, err %v; want %s and an error", q, err, QueuePayments)
	}
	var nilFair *Fair
	if q, err := nilFair.queueFor(context.Background(), "mer_a", "ord_1"); err != nil || q != QueuePayments {
		t.Fatalf("without Fair: %s %v", q, err)
	}
}
