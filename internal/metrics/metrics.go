// Package metrics owns payrail's Prometheus series: what the api and the
// worker observe as they run (requests, tasks, PG calls) and what is read
// from PostgreSQL and Redis (unsettled orders and undelivered callbacks by
// status, at most once per 15 s across all replicas; queue depth and
// latency when scraped; callback delivery). Every process builds its own
// registry; the package keeps no global state and never changes payment
// state. Its handlers are served on listeners of their own, never on the
// api's public port.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus exposition format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})
}

// latencyBuckets span a fast in-memory answer to a `Prefer: wait` of 30 s.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// HTTP is the api's request series.
type HTTP struct {
	requests *prometheus.HistogramVec
}

// NewHTTP registers payrail_http_request_duration_seconds{route,code}.
func NewHTTP(reg prometheus.Registerer) *HTTP {
	h := &HTTP{requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "payrail_http_request_duration_seconds",
		Help:    "HTTP request latency by route pattern and status code.",
		Buckets: latencyBuckets,
	}, []string{"route", "code"})}
	reg.MustRegister(h.requests)
	return h
}

// Observe records one request; it fits httpapi.Server.Observe. route is
// the mux pattern, never the raw path, so the label set stays bounded.
func (h *HTTP) Observe(route string, status int, d time.Duration) {
	h.requests.WithLabelValues(route, strconv.Itoa(status)).Observe(d.Seconds())
}

// Worker is the worker's task, PG call and callback attempt series.
type Worker struct {
	tasks     *prometheus.CounterVec
	pgCalls   *prometheus.HistogramVec
	callbacks *prometheus.HistogramVec
}

// NewWorker registers payrail_tasks_total{type,outcome},
// payrail_pg_call_duration_seconds{op,outcome} and
// payrail_callback_attempt_duration_seconds{outcome}.
func NewWorker(reg prometheus.Registerer) *Worker {
	w := &Worker{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payrail_tasks_total",
			Help: "Tasks handled, by task type and outcome (success, retry, lock_taken, ...).",
		}, []string{"type", "outcome"}),
		pgCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "payrail_pg_call_duration_seconds",
			Help:    "PG call latency by operation and classified outcome.",
			Buckets: latencyBuckets,
		}, []string{"op", "outcome"}),
		callbacks: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "payrail_callback_attempt_duration_seconds",
			Help:    "Callback delivery attempts by outcome (delivered, rejected, error, gone, dead) and their latency; the count is the attempt count.",
			Buckets: latencyBuckets,
		}, []string{"outcome"}),
	}
	reg.MustRegister(w.tasks, w.pgCalls, w.callbacks)
	return w
}

// Task records a handled task; it fits worker.Hooks.Task.
func (w *Worker) Task(typ, outcome string) { w.tasks.WithLabelValues(typ, outcome).Inc() }

// PGCall records a PG call; it fits worker.Hooks.PGCall.
func (w *Worker) PGCall(op, outcome string, d time.Duration) {
	w.pgCalls.WithLabelValues(op, outcome).Observe(d.Seconds())
}

// CallbackAttempt records one delivery attempt; it fits
// callback.Deliverer.Observe.
func (w *Worker) CallbackAttempt(outcome string, d time.Duration) {
	w.callbacks.WithLabelValues(outcome).Observe(d.Seconds())
}
