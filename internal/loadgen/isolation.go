package loadgen

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/queue"
)

// The isolation phases (DESIGN "Isolation and overload"): a quiet merchant
// B is measured alone and then beside a noisy neighbour in the same run, so
// the figure is a ratio on one machine state, not two absolute times.

// Statuses counts payrail's answers to a merchant by class.
type Statuses struct {
	S2xx  int64 `json:"2xx"`
	S429  int64 `json:"429"`
	S5xx  int64 `json:"5xx"`
	Other int64 `json:"other"`
	// Errors are transport errors (no answer).
	Errors int64 `json:"errors"`
}

func (s *Statuses) add(status int, err error) {
	switch {
	case status == 0 && err != nil:
		atomic.AddInt64(&s.Errors, 1)
	case status >= 200 && status < 300:
		atomic.AddInt64(&s.S2xx, 1)
	case status == http.StatusTooManyRequests:
		atomic.AddInt64(&s.S429, 1)
	case status >= 500:
		atomic.AddInt64(&s.S5xx, 1)
	default:
		atomic.AddInt64(&s.Other, 1)
	}
}

// Flood is what the noisy merchant A sent and got.
type Flood struct {
	Limit       int     `json:"limitPerSecond"`
	Burst       int     `json:"burst"`
	OfferedRate float64 `json:"offeredRate"`
	Seconds     float64 `json:"seconds"`
	// Attempts are payments started (each a POST /v1/orders); Skipped are
	// ticks the generator could not start because MaxInFlight were open.
	Attempts int64    `json:"attempts"`
	Skipped  int64    `json:"skipped"`
	Creates  Statuses `json:"creates"`
	Confirms Statuses `json:"confirms"`
	// Accepted confirms, and how many of their payment.paid arrived.
	Accepted  int `json:"accepted"`
	Delivered int `json:"delivered"`
}

// Neighbor is the "neighbor" bench phase.
type Neighbor struct {
	QuietRate float64 `json:"quietRate"`
	Alone     Result  `json:"alone"`
	Beside    Result  `json:"beside"`
	Flood     Flood   `json:"flood"`
	// Ratios are beside ÷ alone p99 of B's accepted → PAID and confirm →
	// callback.
	AcceptedToPaidP99Ratio    float64 `json:"acceptedToPaidP99Ratio"`
	ConfirmToCallbackP99Ratio float64 `json:"confirmToCallbackP99Ratio"`
	// MachineBusyPercent is all CPUs' busy share while B ran beside A;
	// LoadgenCPUPercent this generator's own (in % of one core): on one
	// machine the flood's sender competes with payrail for the same cores.
	MachineBusyPercent float64 `json:"machineBusyPercent"`
	LoadgenCPUPercent  float64 `json:"loadgenCpuPercent"`
	// QuietRefused counts B's creates refused (429 or 503) and retried:
	// admission control must never lower the quiet merchant.
	QuietRefused int64 `json:"quietRefused"`
}

// NeighborOptions shape the neighbor phase.
type NeighborOptions struct {
	// Seconds of B alone, then as many of B beside A's flood.
	Seconds float64
	// QuietRate is B's steady payments/s (every confirm with Prefer: wait).
	QuietRate float64
	// Limit is A's per-second limit (burst twice), set through the admin
	// API; A offers Factor × Limit payments/s.
	Limit       int
	Factor      float64
	MaxInFlight int
	Callback    time.Duration
	Progress    io.Writer
}

// RunNeighbor measures B alone, then B while A floods at Factor × its limit.
func RunNeighbor(ctx context.Context, t Target, sink *Sink, o NeighborOptions) (*Neighbor, error) {
	b, err := NewMerchantClient(ctx, t, sink, "bench quiet B", 0)
	if err != nil {
		return nil, err
	}
	a, err := NewMerchantClient(ctx, t, sink, "bench noisy A", o.Limit)
	if err != nil {
		return nil, err
	}
	n := &Neighbor{QuietRate: o.QuietRate}
	quiet := func(name string) Result {
		return Run(ctx, b, sink, Options{Name: name, N: max(10, int(o.QuietRate*o.Seconds)), Rate: o.QuietRate,
			WaitEvery: 1, CallbackTimeout: o.Callback, Progress: o.Progress})
	}
	n.Alone = quiet("neighbor: B alone")

	dur := time.Duration(o.Seconds * float64(time.Second))
	fctx, stop := context.WithCancel(ctx)
	var accepted []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Flood, accepted = flood(fctx, a, float64(o.Limit)*o.Factor, dur+2*time.Second, o.MaxInFlight)
		n.Flood.Limit, n.Flood.Burst = o.Limit, 2*o.Limit
	}()
	time.Sleep(time.Second) // A's flood is running before B's first payment
	busy0, total0 := machineCPU()
	self0, at0 := selfTicks(), time.Now()
	n.Beside = quiet("neighbor: B beside A's flood")
	busy1, total1 := machineCPU()
	n.MachineBusyPercent = 100 * float64(busy1-busy0) / float64(max(total1-total0, 1))
	n.LoadgenCPUPercent = 100 * float64(selfTicks()-self0) / clockTicks / time.Since(at0).Seconds()
	stop()
	<-done
	n.Flood.Accepted = len(accepted)
	n.Flood.Delivered = waitCallbacks(ctx, sink, accepted, o.Callback)
	n.QuietRefused = b.Limited.Load() + b.Shed.Load()
	n.AcceptedToPaidP99Ratio = ratio(n.Beside.AcceptedToPaid.P99, n.Alone.AcceptedToPaid.P99)
	n.ConfirmToCallbackP99Ratio = ratio(n.Beside.ConfirmToCallback.P99, n.Alone.ConfirmToCallback.P99)
	return n, nil
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// NewMerchantClient registers a merchant whose callbacks go to sink, with
// limit requests/s (burst twice) or, for 0, the highest limit payrail allows.
func NewMerchantClient(ctx context.Context, t Target, sink *Sink, name string, limit int) (*Client, error) {
	c := &Client{T: t, HTTP: NewHTTPClient()}
	var err error
	if c.M, err = c.createMerchant(ctx, name+" "+time.Now().Format(time.RFC3339), sink.URL(), limit); err != nil {
		return nil, err
	}
	return c, sink.AddSecret(c.M.CallbackSecret)
}

// flood offers rate payments/s for dur, open loop, and returns what payrail
// answered and the orders whose confirm it accepted.
func flood(ctx context.Context, a *Client, rate float64, dur time.Duration, maxInFlight int) (Flood, []string) {
	f := Flood{OfferedRate: rate}
	var mu sync.Mutex
	var accepted []string
	sem := make(chan struct{}, max(1, maxInFlight))
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; time.Since(start) < dur && ctx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		select {
		case sem <- struct{}{}:
		default:
			f.Skipped++
			continue
		}
		f.Attempts++
		wg.Go(func() {
			defer func() { <-sem }()
			if id, ok := a.floodOne(context.WithoutCancel(ctx), &f); ok {
				mu.Lock()
				accepted = append(accepted, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	f.Seconds = time.Since(start).Seconds()
	return f, accepted
}

// floodOne is one of A's payments; A does not retry a 429 (it is flooding).
func (c *Client) floodOne(ctx context.Context, f *Flood) (string, bool) {
	var order struct {
		OrderID      string `json:"orderId"`
		PaymentToken string `json:"paymentToken"`
	}
	const amount = 1000
	status, err := c.do(ctx, "create order", "POST", c.T.APIURL+"/v1/orders",
		map[string]any{"amount": amount, "orderName": "flood"}, true, nil, http.StatusCreated, &order)
	f.Creates.add(status, err)
	if err != nil {
		return "", false
	}
	var sess struct {
		PaymentKey string `json:"paymentKey"`
	}
	if _, err := c.do(ctx, "pg session", "POST", c.T.MockPGURL+"/sandbox/sessions",
		map[string]any{"orderId": order.OrderID, "amount": amount}, false, nil, http.StatusOK, &sess); err != nil {
		return "", false
	}
	status, err = c.do(ctx, "confirm", "POST", c.T.APIURL+"/v1/orders/"+order.OrderID+"/confirm",
		map[string]any{"paymentKey": sess.PaymentKey, "amount": amount, "paymentToken": order.PaymentToken}, true, nil, http.StatusAccepted, nil)
	f.Confirms.add(status, err)
	return order.OrderID, err == nil
}

// waitCallbacks waits up to timeout for the payment.paid of every order and
// returns how many arrived.
func waitCallbacks(ctx context.Context, sink *Sink, orders []string, timeout time.Duration) int {
	deadline := time.After(timeout)
	n := 0
	for _, id := range orders {
		select {
		case <-sink.Wait(id):
		case <-deadline:
		case <-ctx.Done():
		}
		if _, ok := sink.Arrived(id); ok {
			n++
		}
	}
	return n
}

// DeadEndpoint is the "dead endpoint" bench phase.
type DeadEndpoint struct {
	Pending     int     `json:"pending"`
	SeedSeconds float64 `json:"seedSeconds"`
	// BreakerOpenSeconds is from the backlog's insert to D's breaker open.
	BreakerOpenSeconds float64 `json:"breakerOpenSeconds"`
	Alone              Result  `json:"alone"`
	Beside             Result  `json:"beside"`
	// P99Ratio is beside ÷ alone p99 of B's PAID → callback.
	P99Ratio float64 `json:"paidToCallbackP99Ratio"`
	// MaxQueuedCallbackTasks is the most asynq callback tasks (pending,
	// scheduled, retry, active) sampled every 250 ms while D's backlog existed.
	MaxQueuedCallbackTasks int `json:"maxQueuedCallbackTasks"`
	// WorkerCPUPercent is the worker's CPU (% of one core) over QuietSeconds
	// with only D's backlog and nothing else; IdleCPUPercent the same before
	// D's backlog existed.
	QuietSeconds     float64 `json:"quietSeconds"`
	WorkerCPUPercent float64 `json:"workerCpuPercent"`
	IdleCPUPercent   float64 `json:"idleWorkerCpuPercent"`
	// DAttempts are delivery attempts to D's endpoint while measured.
	DAttempts int `json:"dAttempts"`
	// StillPending is D's backlog at the end (none may be lost or sent).
	StillPending int `json:"stillPending"`
}

// DeadOptions shape the dead-endpoint phase.
type DeadOptions struct {
	Pending      int
	Seconds      float64
	QuietSeconds float64
	Rate         float64
	Callback     time.Duration
	Progress     io.Writer
	// Worker is the worker process (its CPU is measured).
	Worker Proc
}

// RunDeadEndpoint measures B's callbacks alone, then beside merchant D whose
// endpoint refuses connections with Pending callbacks waiting.
func RunDeadEndpoint(ctx context.Context, t Target, sink *Sink, db *sql.DB, rdb redis.UniversalClient, o DeadOptions) (*DeadEndpoint, error) {
	r := &DeadEndpoint{Pending: o.Pending, QuietSeconds: o.QuietSeconds}
	b, err := NewMerchantClient(ctx, t, sink, "bench quiet B", 0)
	if err != nil {
		return nil, err
	}
	// A port nothing listens on: connections are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	deadURL := "http://" + ln.Addr().String() + "/callbacks"
	ln.Close()
	d := &Client{T: t, HTTP: NewHTTPClient()}
	if d.M, err = d.createMerchant(ctx, "bench dead D "+time.Now().Format(time.RFC3339), deadURL, 0); err != nil {
		return nil, err
	}
	defer func() {
		if err := dropBacklog(context.Background(), db, d.M.MerchantID); err != nil {
			fmt.Fprintln(o.Progress, "dead endpoint: cleanup:", err)
		}
	}()

	quiet := func(name string) Result {
		return Run(ctx, b, sink, Options{Name: name, N: max(10, int(o.Rate*o.Seconds)), Rate: o.Rate,
			CallbackTimeout: o.Callback, Progress: o.Progress})
	}
	r.IdleCPUPercent = cpuPercent(ctx, o.Worker, o.QuietSeconds)
	r.Alone = quiet("dead endpoint: B alone")

	// D's backlog: one real order, Pending callbacks due now. The sweep
	// wakes D's lane; its breaker opens after 5 refused attempts.
	dOrder, err := d.createOrder(ctx, 1000)
	if err != nil {
		return nil, err
	}
	seeded := time.Now()
	if _, err := db.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload)
SELECT 'msg_bench_dead_' || $1 || '_' || g, $1, $2, 'payment.paid', '{"type":"payment.paid"}' FROM generate_series(1, $3::int) g`,
		d.M.MerchantID, dOrder, o.Pending); err != nil {
		return nil, fmt.Errorf("seed D's backlog: %w", err)
	}
	r.SeedSeconds = time.Since(seeded).Seconds()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	var maxQueued atomic.Int64
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if q, err := insp.GetQueueInfo(queue.QueueCallbacks); err == nil {
				n := int64(q.Pending + q.Scheduled + q.Retry + q.Active)
				for old := maxQueued.Load(); n > old && !maxQueued.CompareAndSwap(old, n); old = maxQueued.Load() {
				}
			}
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	endSampling := sync.OnceFunc(func() { stopSampling(); <-sampled })
	defer endSampling()

	for {
		var open bool
		if err := db.QueryRowContext(ctx, `SELECT coalesce((SELECT open_until IS NOT NULL FROM callback_endpoints WHERE merchant_id = $1), false)`, d.M.MerchantID).Scan(&open); err != nil {
			return nil, err
		}
		if open {
			break
		}
		if time.Since(seeded) > time.Minute {
			return nil, fmt.Errorf("D's breaker did not open within a minute")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	r.BreakerOpenSeconds = time.Since(seeded).Seconds()
	attempts0 := countAttempts(ctx, db, d.M.MerchantID)
	r.WorkerCPUPercent = cpuPercent(ctx, o.Worker, o.QuietSeconds)
	r.Beside = quiet("dead endpoint: B beside D")
	r.DAttempts = countAttempts(ctx, db, d.M.MerchantID) - attempts0
	endSampling()
	r.MaxQueuedCallbackTasks = int(maxQueued.Load())
	_ = db.QueryRowContext(ctx, `SELECT count(*) FROM callbacks WHERE merchant_id = $1 AND status = 'PENDING'`, d.M.MerchantID).Scan(&r.StillPending)
	r.P99Ratio = ratio(r.Beside.PaidToCallback.P99, r.Alone.PaidToCallback.P99)
	return r, nil
}

func countAttempts(ctx context.Context, db *sql.DB, merchantID string) int {
	var n int
	_ = db.QueryRowContext(ctx, `SELECT count(*) FROM callback_attempts a JOIN callbacks c USING (callback_id) WHERE c.merchant_id = $1`, merchantID).Scan(&n)
	return n
}

// cpuPercent is p's CPU over the next seconds, in % of one core.
func cpuPercent(ctx context.Context, p Proc, seconds float64) float64 {
	if p.PID == 0 {
		return -1
	}
	t0, _ := cpuTicks(p)
	start := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(seconds * float64(time.Second))):
	}
	t1, _ := cpuTicks(p)
	return 100 * float64(t1-t0) / clockTicks / time.Since(start).Seconds()
}

// dropBacklog removes the bench's dead merchant's callbacks and turns its
// callbacks off, so nothing of the phase outlives it.
func dropBacklog(ctx context.Context, db *sql.DB, merchantID string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []string{
		`UPDATE merchants SET callback_enabled = false WHERE merchant_id = $1`,
		`DELETE FROM callback_attempts WHERE callback_id IN (SELECT callback_id FROM callbacks WHERE merchant_id = $1)`,
		`DELETE FROM callbacks WHERE merchant_id = $1`,
	} {
		if _, err := tx.ExecContext(ctx, q, merchantID); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// machineCPU is /proc/stat's busy and total jiffies over all CPUs.
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// selfTicks is this process's CPU so far.
func selfTicks() int64 {
	st, _ := readStat(os.Getpid())
	return st.utime + st.stime
}
