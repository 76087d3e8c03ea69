package process

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"

	"github.com/payrail/payrail/internal/callback"
	"github.com/payrail/payrail/internal/config"
	"github.com/payrail/payrail/internal/metrics"
	"github.com/payrail/payrail/internal/ops"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/worker"
)

// DeliveryPollInterval is how often the api reads new callback attempts
// into the delivery metrics.
const DeliveryPollInterval = 5 * time.Second

// MountOps mounts the operator surfaces on the api: the console at /ops/,
// asynqmon at /ops/queues/ (both behind the operator login) and /metrics.
// It must run before Serve; what it starts stops when ctx ends.
func MountOps(ctx context.Context, cfg config.Config, api *API, log *slog.Logger) error {
	reg := metrics.NewRegistry()
	httpMetrics := metrics.NewHTTP(reg)
	if prev := api.Server.Observe; prev != nil {
		api.Server.Observe = func(route string, status int, d time.Duration) {
			prev(route, status, d)
			httpMetrics.Observe(route, status, d)
		}
	} else {
		api.Server.Observe = httpMetrics.Observe
	}
	reg.MustRegister(&metrics.State{
		DB:        api.Deps.Store,
		Inspector: asynq.NewInspectorFromRedisClient(api.Deps.Redis),
		Queues:    slices.Sorted(maps.Keys(queue.Priorities)),
	})
	deliveries := metrics.NewDeliveries(reg, api.Deps.Store, log)
	go deliveries.Run(ctx, DeliveryPollInterval)

	connOpt, err := AsynqConnOpt(cfg)
	if err != nil {
		return fmt.Errorf("PAYRAIL_REDIS_URL for asynqmon: %w", err)
	}
	mon := asynqmon.New(asynqmon.Options{RootPath: "/ops/queues", RedisConnOpt: connOpt})
	go func() {
		<-ctx.Done()
		mon.Close()
	}()
	console := &ops.Console{
		Store:    api.Deps.Store,
		Queue:    api.Deps.Queue,
		Sessions: &ops.Sessions{Redis: api.Deps.Redis},
		Queues:   mon,
		Log:      log.With("component", "ops"),
	}
	api.Server.Extra["/ops/"] = console.Handler()
	api.Server.Extra["GET /metrics"] = metrics.Handler(reg)
	// Profiles of the api, behind the admin token.
	api.Server.Extra["/debug/pprof/"] = api.Server.AdminOnly(http.HandlerFunc(pprof.Index))
	api.Server.Extra["/debug/pprof/profile"] = api.Server.AdminOnly(http.HandlerFunc(pprof.Profile))
	return nil
}

// WorkerMetrics points the worker's hooks at a fresh registry and returns
// the handler that serves it. Call it before the worker runs: the hooks are
// read, unlocked, by every task.
func WorkerMetrics(w *Worker) http.Handler {
	reg := metrics.NewRegistry()
	m := metrics.NewWorker(reg)
	w.Handler.Hooks = worker.Hooks{PGCall: m.PGCall, Task: m.Task}
	if d, ok := w.Handler.Callbacks.(*callback.Deliverer); ok {
		d.Observe = m.CallbackAttempt
	}
	return metrics.Handler(reg)
}

// ServeWorkerMetrics serves the worker's /metrics and /healthz on
// cfg.MetricsAddr; it returns a stop function. Call it before w.Run.
func ServeWorkerMetrics(ctx context.Context, cfg config.Config, w *Worker, log *slog.Logger) func() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) { rw.Write([]byte("ok\n")) })
	mux.Handle("GET /metrics", WorkerMetrics(w))
	// Profiles on the worker's metrics port (keep it off the public edge).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Addr: cfg.MetricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Warn("worker metrics server", "err", err)
		}
	}()
	return func() { srv.Close() }
}
