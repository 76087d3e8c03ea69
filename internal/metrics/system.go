package metrics

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/payrail/payrail/internal/store"
)

// The series in this file describe the whole system, not the process that
// serves them: every api replica reports the same orders, queues and
// callbacks. Aggregate them with max() across instances, never sum().

// Counter is what the state collector reads from PostgreSQL.
type Counter interface {
	// CountOrdersByStatus and CountCallbacksByStatus return row counts by
	// status; errors are the database's.
	CountOrdersByStatus(ctx context.Context) (map[string]int64, error)
	CountCallbacksByStatus(ctx context.Context) (map[string]int64, error)
}

var (
	descOrders    = prometheus.NewDesc("payrail_orders", "Orders by status (system-wide).", []string{"status"}, nil)
	descCallbacks = prometheus.NewDesc("payrail_callbacks", "Callbacks in the outbox by status (system-wide).", []string{"status"}, nil)
	descQSize     = prometheus.NewDesc("payrail_queue_size", "Tasks in an asynq queue (pending, active, scheduled, retry, archived).", []string{"queue"}, nil)
	descQPending  = prometheus.NewDesc("payrail_queue_pending", "Pending tasks in an asynq queue.", []string{"queue"}, nil)
	descQLatency  = prometheus.NewDesc("payrail_queue_latency_seconds", "Age of the oldest pending task of an asynq queue.", []string{"queue"}, nil)
	descUp        = prometheus.NewDesc("payrail_state_scrape_ok", "1 when the last read of a system-wide source succeeded.", []string{"source"}, nil)
)

// State is a collector that reads orders and callbacks by status from
// PostgreSQL, and each queue's size and latency from asynq, at scrape.
type State struct {
	DB        Counter
	Inspector *asynq.Inspector
	// Queues are always reported, even before asynq has seen them.
	Queues  []string
	Timeout time.Duration
}

// Describe implements prometheus.Collector.
func (s *State) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOrders, descCallbacks, descQSize, descQPending, descQLatency, descUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *State) Collect(ch chan<- prometheus.Metric) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	up := func(src string, err error) {
		v := 1.0
		if err != nil {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, v, src)
	}
	if s.DB != nil {
		orders, err := s.DB.CountOrdersByStatus(ctx)
		for st, n := range orders {
			ch <- prometheus.MustNewConstMetric(descOrders, prometheus.GaugeValue, float64(n), st)
		}
		up("orders", err)
		cbs, err := s.DB.CountCallbacksByStatus(ctx)
		for st, n := range cbs {
			ch <- prometheus.MustNewConstMetric(descCallbacks, prometheus.GaugeValue, float64(n), st)
		}
		up("callbacks", err)
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
		up("queues", err)
	}
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
