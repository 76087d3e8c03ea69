package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/store"
)

// The series in this file describe the whole system, not the process that
// serves them: every api replica reports the same orders, queues and
// callbacks. Aggregate them with max() across instances, never sum().

// Counter is what the state collector reads from PostgreSQL.
type Counter interface {
	// CountInFlight returns unsettled orders and undelivered callbacks by
	// status, within timeout; errors are the database's.
	CountInFlight(ctx context.Context, timeout time.Duration) (store.StateCounts, error)
}

var (
	descOrders    = prometheus.NewDesc("payrail_orders", "Orders not yet settled (CREATED, CONFIRMING, AWAITING_DEPOSIT) by status (system-wide, refreshed every 15 s).", []string{"status"}, nil)
	descCallbacks = prometheus.NewDesc("payrail_callbacks", "Callbacks not delivered (PENDING, DEAD) by status (system-wide, refreshed every 15 s).", []string{"status"}, nil)
	descCountsAge = prometheus.NewDesc("payrail_state_counts_age_seconds", "Age of the payrail_orders and payrail_callbacks counts.", nil, nil)
	descQSize     = prometheus.NewDesc("payrail_queue_size", "Tasks in an asynq queue (pending, active, scheduled, retry, archived).", []string{"queue"}, nil)
	descQPending  = prometheus.NewDesc("payrail_queue_pending", "Pending tasks in an asynq queue.", []string{"queue"}, nil)
	descQLatency  = prometheus.NewDesc("payrail_queue_latency_seconds", "Age of the oldest pending task of an asynq queue.", []string{"queue"}, nil)
	descBreakers  = prometheus.NewDesc("payrail_callback_breakers", "Merchant callback endpoints by breaker state: open, failing (open or not).", []string{"state"}, nil)
	descBacklog   = prometheus.NewDesc("payrail_callbacks_pending_by_merchant", "PENDING callbacks of the 20 merchants with the largest backlog.", []string{"merchant_id"}, nil)
	descReconLast = prometheus.NewDesc("payrail_recon_last_success_timestamp_seconds", "When the newest successful reconciliation with the PG's books finished (0: never).", nil, nil)
	descReconItem = prometheus.NewDesc("payrail_recon_items", "Items of the newest successful reconciliation by class and outcome (repaired, attention).", []string{"class", "outcome"}, nil)
	descUp        = prometheus.NewDesc("payrail_state_scrape_ok", "1 when the last read of a system-wide source succeeded.", []string{"source"}, nil)
)

// DefaultCountsInterval is how often the counts are read from PostgreSQL,
// across all api replicas together.
const DefaultCountsInterval = 15 * time.Second

// sharedCountsKey holds the last counts for every replica; countsLeaderKey
// is taken (SET NX, expiring after one interval) by the one replica that
// reads them from PostgreSQL in that interval.
const (
	sharedCountsKey = "payrail:metrics:counts"
	countsLeaderKey = "payrail:metrics:counts:leader"
)

// State is a collector of system-wide gauges: unsettled orders and
// undelivered callbacks by status, and each queue's size and latency.
//
// A scrape never runs SQL itself. The counts are read at most once per
// Interval by one process: scrapes of one process share one read
// (single-flight, later scrapes get the cached value), and with Redis set
// the replicas share the result through Redis, where a key taken with
// SET NX elects the one replica that reads PostgreSQL in each interval. So
// any number of scrapes costs at most one short (Timeout, default 1 s),
// index-served statement per Interval.
type State struct {
	DB Counter
	// Redis, when set, shares the counts between replicas.
	Redis     redis.UniversalClient
	Inspector *asynq.Inspector
	// Queues are always reported, even before asynq has seen them.
	Queues []string
	// Timeout bounds the SQL statement and each Redis read.
	Timeout time.Duration
	// Interval is how often the counts are refreshed; DefaultCountsInterval
	// when zero.
	Interval time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Log, when set, is told of a failed read.
	Log *slog.Logger

	mu      sync.Mutex // held while refreshing: the single flight
	counts  *sharedCounts
	checked time.Time // when this process last refreshed counts
}

// sharedCounts is one read of the counts, as cached and shared.
type sharedCounts struct {
	At        time.Time        `json:"at"`
	OK        bool             `json:"ok"`
	Orders    map[string]int64 `json:"orders"`
	Callbacks map[string]int64 `json:"callbacks"`
	Breakers  map[string]int64 `json:"breakers"`
	Backlog   map[string]int64 `json:"backlog"`
	Recon     map[string]int64 `json:"recon"`
}

// Describe implements prometheus.Collector.
func (s *State) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOrders, descCallbacks, descBreakers, descBacklog, descCountsAge, descQSize, descQPending, descQLatency, descReconLast, descReconItem, descUp} {
		ch <- d
	}
}

func (s *State) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *State) interval() time.Duration {
	if s.Interval > 0 {
		return s.Interval
	}
	return DefaultCountsInterval
}

func (s *State) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return time.Second
}

// Collect implements prometheus.Collector.
func (s *State) Collect(ch chan<- prometheus.Metric) {
	up := func(src string, ok bool) {
		v := 0.0
		if ok {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, v, src)
	}
	if s.DB != nil {
		if c := s.cachedCounts(); c != nil {
			for st, n := range c.Orders {
				ch <- prometheus.MustNewConstMetric(descOrders, prometheus.GaugeValue, float64(n), st)
			}
			for st, n := range c.Callbacks {
				ch <- prometheus.MustNewConstMetric(descCallbacks, prometheus.GaugeValue, float64(n), st)
			}
			for _, st := range []string{"open", "failing"} {
				ch <- prometheus.MustNewConstMetric(descBreakers, prometheus.GaugeValue, float64(c.Breakers[st]), st)
			}
			for m, n := range c.Backlog {
				ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(n), m)
			}
			ch <- prometheus.MustNewConstMetric(descReconLast, prometheus.GaugeValue, float64(c.Recon["last_success"]))
			for _, class := range []string{"MISSING_HERE", "MISSING_AT_PG", "AMOUNT_MISMATCH", "CANCEL_MISMATCH"} {
				for _, outcome := range []string{"repaired", "attention"} {
					ch <- prometheus.MustNewConstMetric(descReconItem, prometheus.GaugeValue, float64(c.Recon[class+":"+outcome]), class, outcome)
				}
			}
			ch <- prometheus.MustNewConstMetric(descCountsAge, prometheus.GaugeValue, max(0, s.now().Sub(c.At).Seconds()))
			up("orders", c.OK)
			up("callbacks", c.OK)
		}
	}
	if s.Inspector != nil {
		queues := slices.Clone(s.Queues)
		seen, err := s.Inspector.Queues()
		for _, q := range seen {
			if !slices.Contains(queues, q) {
				queues = append(queues, q)
			}
		}
		for _, q := range queues {
			info, qerr := s.Inspector.GetQueueInfo(q)
			if qerr != nil {
				// A queue asynq has never seen has no info yet: it is empty.
				info = &asynq.QueueInfo{Queue: q}
			}
			ch <- prometheus.MustNewConstMetric(descQSize, prometheus.GaugeValue, float64(info.Size), q)
			ch <- prometheus.MustNewConstMetric(descQPending, prometheus.GaugeValue, float64(info.Pending), q)
			ch <- prometheus.MustNewConstMetric(descQLatency, prometheus.GaugeValue, info.Latency.Seconds(), q)
		}
		up("queues", err == nil)
	}
}

// cachedCounts returns the counts, refreshing them first when this process
// has not looked for an Interval; nil when there are none yet (another
// replica is reading them for the first time).
func (s *State) cachedCounts() *sharedCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, every := s.now(), s.interval()
	if s.counts != nil && now.Sub(s.checked) < every {
		return s.counts
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout()+time.Second)
	defer cancel()
	if s.Redis != nil {
		shared, err := s.readShared(ctx)
		if err == nil && shared != nil && now.Sub(shared.At) < every {
			s.counts, s.checked = shared, now
			return s.counts
		}
		if err == nil {
			leader, err := s.Redis.SetNX(ctx, countsLeaderKey, now.UnixNano(), every).Result()
			if err == nil && !leader {
				// Another replica reads them in this interval: keep what
				// there is and look again at the next scrape.
				if shared != nil {
					s.counts, s.checked = shared, now
				}
				return s.counts
			}
		}
		// Redis does not answer: this process reads for itself, still at
		// most once per interval.
	}
	got, err := s.DB.CountInFlight(ctx, s.timeout())
	if err != nil && s.Log != nil {
		s.Log.Warn("metrics: count orders and callbacks", "err", err)
	}
	c := &sharedCounts{At: now, OK: err == nil, Orders: got.Orders, Callbacks: got.Callbacks, Breakers: got.Breakers, Backlog: got.PendingByMerchant, Recon: got.Recon}
	if err != nil && s.counts != nil {
		// Keep the last good numbers (their age shows), flagged as failed.
		c = &sharedCounts{At: s.counts.At, OK: false, Orders: s.counts.Orders, Callbacks: s.counts.Callbacks, Breakers: s.counts.Breakers, Backlog: s.counts.Backlog, Recon: s.counts.Recon}
	}
	s.counts, s.checked = c, now
	if s.Redis != nil && err == nil {
		if b, err := json.Marshal(c); err == nil {
			s.Redis.Set(ctx, sharedCountsKey, b, 4*every)
		}
	}
	return s.counts
}

func (s *State) readShared(ctx context.Context) (*sharedCounts, error) {
	b, err := s.Redis.Get(ctx, sharedCountsKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c sharedCounts
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, nil // unreadable: treated as absent and overwritten
	}
	return &c, nil
}

// AttemptSource is what the delivery watcher reads from PostgreSQL.
type AttemptSource interface {
	// LastCallbackAttemptID and CallbackAttemptsAfter return database errors.
	LastCallbackAttemptID(ctx context.Context) (int64, error)
	CallbackAttemptsAfter(ctx context.Context, afterID int64, limit int) ([]store.DeliveryAttempt, error)
}

// Deliveries turns the callback_attempts table into
// payrail_callback_approval_to_ack_seconds{event}: the end-to-end time from
// the PG's approval of an order to the merchant's 2xx for its callback,
// which no single process sees (the approval is the worker's, the answer
// the merchant's, possibly hours and retries later). It follows the table
// with an id cursor that starts at the newest row when Run starts, so it
// observes what happened since this process started; every api replica
// observes the same deliveries. The worker counts attempts by outcome
// itself (Worker.CallbackAttempt).
type Deliveries struct {
	src    AttemptSource
	log    *slog.Logger
	e2e    *prometheus.HistogramVec
	cursor int64
}

// NewDeliveries registers the delivery series on reg.
func NewDeliveries(reg prometheus.Registerer, src AttemptSource, log *slog.Logger) *Deliveries {
	d := &Deliveries{
		src: src, log: log,
		e2e: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "payrail_callback_approval_to_ack_seconds",
			Help:    "Time from the PG's approval of an order to the merchant's 2xx for its callback, by event; system-wide.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 6 * 3600, 24 * 3600},
		}, []string{"event"}),
	}
	reg.MustRegister(d.e2e)
	return d
}

// Run polls every interval until ctx ends.
func (d *Deliveries) Run(ctx context.Context, interval time.Duration) {
	for {
		id, err := d.src.LastCallbackAttemptID(ctx)
		if err == nil {
			d.cursor = id
			break
		}
		d.log.Warn("metrics: read callback attempt cursor", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.Poll(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("metrics: read callback attempts", "err", err)
			}
		}
	}
}

// Poll reads the attempts recorded since the last poll. It is not safe to
// call concurrently with itself or Run.
func (d *Deliveries) Poll(ctx context.Context) error {
	const page = 1000
	for {
		rows, err := d.src.CallbackAttemptsAfter(ctx, d.cursor, page)
		if err != nil {
			return err
		}
		for _, a := range rows {
			d.cursor = a.ID
			if a.Delivered() && a.ApprovedAt != nil {
				if e2e := a.AckedAt().Sub(*a.ApprovedAt); e2e >= 0 {
					d.e2e.WithLabelValues(a.EventType).Observe(e2e.Seconds())
				}
			}
		}
		if len(rows) < page {
			return nil
		}
	}
}
