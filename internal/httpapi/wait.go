package httpapi

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

// Waiter serves `Prefer: wait`: one LISTEN connection per api process wakes
// every waiter of an order, so a waiter holds no database connection. A slow
// poll (one query for all waiters) covers notifications lost while the
// listener reconnects.
type Waiter struct {
	store *store.Store
	log   *slog.Logger
	max   int
	poll  time.Duration

	mu      sync.Mutex
	waiting map[string][]chan struct{}
	count   int
}

// NotifyChannel is the PostgreSQL channel a transition notifies on.
const NotifyChannel = "payrail_order"

// NewWaiter returns a Waiter admitting at most max waiters at once.
func NewWaiter(st *store.Store, log *slog.Logger, max int) *Waiter {
	return &Waiter{store: st, log: log, max: max, poll: 2 * time.Second, waiting: map[string][]chan struct{}{}}
}

// Run listens until ctx ends.
func (w *Waiter) Run(ctx context.Context, databaseURL string) {
	l := pq.NewListener(databaseURL, 100*time.Millisecond, 10*time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			w.log.Warn("wait listener", "event", ev, "err", err)
		}
	})
	defer l.Close()
	if err := l.Listen(NotifyChannel); err != nil {
		w.log.Error("LISTEN failed; Prefer: wait falls back to polling", "err", err)
	}
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-l.Notify:
			if n == nil { // reconnected: anything may have been missed
				w.pollOnce(ctx)
				continue
			}
			orderID, status, _ := strings.Cut(n.Extra, " ")
			if payment.Status(status).Settled() {
				w.wake(orderID)
			}
		case <-t.C:
			w.pollOnce(ctx)
		}
	}
}

func (w *Waiter) pollOnce(ctx context.Context) {
	w.mu.Lock()
	ids := make([]string, 0, len(w.waiting))
	for id := range w.waiting {
		ids = append(ids, id)
	}
	w.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	settled, err := w.store.SettledOrders(ctx, ids)
	if err != nil {
		w.log.Warn("wait poll", "err", err)
		return
	}
	for _, id := range settled {
		w.wake(id)
	}
}

func (w *Waiter) wake(orderID string) {
	w.mu.Lock()
	chans := w.waiting[orderID]
	delete(w.waiting, orderID)
	w.mu.Unlock()
	for _, c := range chans {
		close(c)
	}
}

// Waiting returns how many requests are waiting now.
func (w *Waiter) Waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

// Wait blocks until orderID settles, d passes or ctx ends. It returns the
// order and true when it settled. Past the cap it returns at once.
func (w *Waiter) Wait(ctx context.Context, orderID string, d time.Duration) (payment.Order, bool) {
	w.mu.Lock()
	if w.count >= w.max {
		w.mu.Unlock()
		return payment.Order{}, false
	}
	c := make(chan struct{})
	w.waiting[orderID] = append(w.waiting[orderID], c)
	w.count++
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.count--
		list := w.waiting[orderID]
		for i, x := range list {
			if x == c {
				w.waiting[orderID] = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(w.waiting[orderID]) == 0 {
			delete(w.waiting, orderID)
		}
		w.mu.Unlock()
	}()
	// It may have settled between the commit and our registration.
	if o, err := w.store.OrderAnyMerchant(ctx, orderID, false); err == nil && o.Status.Settled() {
		return o, true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-c:
	case <-timer.C:
		return payment.Order{}, false
	case <-ctx.Done():
		return payment.Order{}, false
	}
	o, err := w.store.OrderAnyMerchant(ctx, orderID, false)
	if err != nil || !o.Status.Settled() {
		return payment.Order{}, false
	}
	return o, true
}
