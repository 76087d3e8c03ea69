package process

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/callback"
	"github.com/payrail/payrail/internal/config"
	"github.com/payrail/payrail/internal/metrics"
	"github.com/payrail/payrail/internal/ops"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/ratelimit"
	"github.com/payrail/payrail/internal/worker"
)

// DeliveryPollInterval is how often the api reads new callback attempts
// into the delivery metrics.
const DeliveryPollInterval = 5 * time.Second

// MountOps mounts the operator surfaces on the api: the console at /ops/,
// asynqmon at /ops/queues/ (both behind the operator login) and the
// profiles (behind the admin token). The metrics are not on the api's
// port, which merchants and PGs reach: they go to api.Metrics, for
// ServeAPIMetrics to serve on their own listener. It must run before
// Serve; what it starts stops when ctx ends.
func MountOps(ctx context.Context, cfg config.Config, api *API, log *slog.Logger) error {
	reg := metrics.NewRegistry()
	httpMetrics := metrics.NewHTTP(reg)
	api.Server.PGEvent = metrics.NewPGEvents(reg).Count
	metrics.Admission(reg, api.Server.Admission)
	if prev := api.Server.Observe; prev != nil {
		api.Server.Observe = func(route string, status int, d time.Duration) {
			prev(route, status, d)
			httpMetrics.Observe(route, status, d)
		}
	} else {
		api.Server.Observe = httpMetrics.Observe
	}
	reg.MustRegister(&metrics.State{
		DB: api.Deps.Store,
		// The replicas share one read of the counts per interval.
		Redis:     api.Deps.Redis,
		Inspector: asynq.NewInspectorFromRedisClient(api.Deps.Redis),
		Queues:    slices.Sorted(maps.Keys(queue.Priorities)),
		Log:       log,
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
		Sessions: &ops.Sessions{Redis: api.Deps.Redis, TTL: cfg.OpsSessionMax, Idle: cfg.OpsSessionIdle},
		Queues:   mon,
		Log:      log.With("component", "ops"),

		SecureCookies:  cfg.SecureCookies,
		TrustedProxies: cfg.TrustedProxies,
		Throttle:       &ops.LoginThrottle{Redis: api.Deps.Redis, Limiter: ratelimit.New(api.Deps.Redis)},
		ObserveLogin:   metrics.NewLogins(reg).Observe,
		RequireTOTP:    cfg.OpsRequireTOTP,
		EnqueueRecon:   api.Deps.Queue.Recon,
	}
	api.Server.Extra["/ops/"] = console.Handler()
	api.Metrics = metrics.Handler(reg)
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

// ServeAPIMetrics serves the api's /metrics (and /healthz) on
// cfg.APIMetricsAddr, a listener of its own to keep off the public edge:
// call it after MountOps. It returns the address it listens on ("" when it
// could not listen; that is logged, and the api runs on) and a stop
// function.
func ServeAPIMetrics(cfg config.Config, api *API, log *slog.Logger) (string, func()) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) { rw.Write([]byte("ok\n")) })
	if api.Metrics != nil {
		mux.Handle("GET /metrics", api.Metrics)
	}
	return serveOps(cfg.APIMetricsAddr, mux, log.With("component", "api metrics"))
}

// ServeWorkerMetrics serves the worker's /metrics and /healthz on
// cfg.MetricsAddr, and its profiles behind the admin token. It returns the
// address it listens on ("" when it could not listen; that is logged, and
// the worker runs on) and a stop function. Call it before w.Run.
func ServeWorkerMetrics(cfg config.Config, w *Worker, log *slog.Logger) (string, func()) {
	return serveOps(cfg.MetricsAddr, WorkerOpsHandler(cfg, WorkerMetrics(w)), log.With("component", "worker metrics"))
}

// WorkerOpsHandler is the worker's metrics port: /healthz and /metrics
// open (Prometheus scrapes them; PAYRAIL_METRICS_ADDR may be a pod's
// address), /debug/pprof/ only with PAYRAIL_ADMIN_TOKEN as a bearer token,
// as the api's are: a profile shows memory, a goroutine dump shows
// requests in flight.
func WorkerOpsHandler(cfg config.Config, metricsHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) { rw.Write([]byte("ok\n")) })
	mux.Handle("GET /metrics", metricsHandler)
	admin := func(h http.HandlerFunc) http.Handler { return adminOnly(cfg.AdminTokens, capSeconds(h)) }
	mux.Handle("/debug/pprof/", admin(pprof.Index))
	mux.Handle("/debug/pprof/profile", admin(pprof.Profile))
	mux.Handle("/debug/pprof/symbol", admin(pprof.Symbol))
	return mux
}

// adminOnly lets through requests bearing token; none when token is empty.
func adminOnly(tokens []string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !auth.AdminTokenOK(tokens, r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="payrail-admin"`)
			http.Error(w, "admin bearer token required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// opsWriteTimeout bounds every answer of the metrics ports. net/http/pprof
// extends it by a profile's seconds, so those are capped (capSeconds).
const opsWriteTimeout = 30 * time.Second

// maxProfileSeconds caps the seconds of a profile (default 30) or a delta
// profile, so a request cannot hold a connection and a profiler for long.
const maxProfileSeconds = 60

// capSeconds refuses a seconds parameter that is not a number of at most
// maxProfileSeconds.
func capSeconds(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("seconds"); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n > maxProfileSeconds {
				http.Error(w, fmt.Sprintf("seconds must be a number of at most %d", maxProfileSeconds), http.StatusBadRequest)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func newOpsServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: opsWriteTimeout, IdleTimeout: 90 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
}

// serveOps listens on addr and serves h in the background.
func serveOps(addr string, h http.Handler, log *slog.Logger) (string, func()) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("cannot listen; serving no metrics", "addr", addr, "err", err)
		return "", func() {}
	}
	srv := newOpsServer(h, log)
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Warn("metrics server", "err", err)
		}
	}()
	return ln.Addr().String(), func() { srv.Close() }
}
