package httpapi

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

// Waiter serves `Prefer: wait`: one LISTEN connection per api process wakes
// every waiter of an order, so a waiter holds no database connection. The
// notification carries the settled order, so waking costs no read either; a
// slow poll (one query for all waiters) covers notifications lost while the
// listener reconnects.
//
// A request registers (Register) before its confirm is committed: every
// settlement after that commit is then notified to it, so no read is
// needed to close the gap between the commit and the registration.
type Waiter struct {
	store *store.Store
	log   *slog.Logger
	max   int
	poll  time.Duration

	mu       sync.Mutex
	waiting  map[string][]*Ticket
	count    int // registered: what the cap counts
	watching int // of those, in Wait: past their commit
}

// Ticket is one registered wait for an order's settlement.
type Ticket struct {
	w       *Waiter
	orderID string
	done    chan struct{}
	order   *payment.Order // set before done is closed; nil: read it
	once    sync.Once
}

// NotifyChannel is the PostgreSQL channel a transition notifies on.
const NotifyChannel = "payrail_order"

// NewWaiter returns a Waiter admitting at most max waiters at once.
func NewWaiter(st *store.Store, log *slog.Logger, max int) *Waiter {
	return &Waiter{store: st, log: log, max: max, poll: 2 * time.Second, waiting: map[string][]*Ticket{}}
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
			orderID, o, ok := store.ParseOrderNotice(n.Extra)
			if ok {
				w.wake(orderID, o)
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
		w.wake(id, nil)
	}
}

// wake ends every wait for orderID; o is the settled order when the
// notification carried it.
func (w *Waiter) wake(orderID string, o *payment.Order) {
	w.mu.Lock()
	tickets := w.waiting[orderID]
	delete(w.waiting, orderID)
	w.mu.Unlock()
	for _, t := range tickets {
		t.order = o
		close(t.done)
	}
}

// Waiting returns how many requests are waiting for a settlement now
// (registered ones still committing their confirm are not counted).
func (w *Waiter) Waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.watching
}

// Register starts a wait for orderID's settlement; call it before the
// change it waits for is committed, then Wait or Cancel. Past the cap it
// returns nil (a nil Ticket's Wait returns at once, Cancel does nothing).
func (w *Waiter) Register(orderID string) *Ticket {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.count >= w.max {
		return nil
	}
	t := &Ticket{w: w, orderID: orderID, done: make(chan struct{})}
	w.waiting[orderID] = append(w.waiting[orderID], t)
	w.count++
	return t
}

// Cancel ends the wait; safe to call more than once and after Wait.
func (t *Ticket) Cancel() {
	if t == nil {
		return
	}
	t.once.Do(func() {
		w := t.w
		w.mu.Lock()
		defer w.mu.Unlock()
		w.count--
		list := w.waiting[t.orderID]
		for i, x := range list {
			if x == t {
				w.waiting[t.orderID] = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(w.waiting[t.orderID]) == 0 {
			delete(w.waiting, t.orderID)
		}
	})
}

// Wait blocks until the order settles, d passes or ctx ends, and ends the
// wait. It returns the order and true when it settled.
func (t *Ticket) Wait(ctx context.Context, d time.Duration) (payment.Order, bool) {
	if t == nil {
		return payment.Order{}, false
	}
	defer t.Cancel()
	w := t.w
	w.mu.Lock()
	w.watching++
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.watching--
		w.mu.Unlock()
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.done:
	case <-timer.C:
		return payment.Order{}, false
	case <-ctx.Done():
		return payment.Order{}, false
	}
	if t.order != nil {
		return *t.order, true
	}
	// Woken by the poll, or by a notice too large to carry the order.
	o, err := t.w.store.OrderAnyMerchant(ctx, t.orderID, false)
	if err != nil || !o.Status.Settled() {
		return payment.Order{}, false
	}
	return o, true
}
