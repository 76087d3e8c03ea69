// Package process assembles payrail's api and worker processes from their
// configuration, so the binaries and the end-to-end tests run the same
// wiring.
package process

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/admit"
	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/callback"
	"github.com/payrail/payrail/internal/config"
	"github.com/payrail/payrail/internal/httpapi"
	"github.com/payrail/payrail/internal/lock"
	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/ratelimit"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/worker"
)

// NewLogger returns the JSON logger every process uses.
func NewLogger(level string, w *os.File) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// Deps are the connections both processes share.
type Deps struct {
	DB    *sqlx.DB
	Redis redis.UniversalClient
	Store *store.Store
	Queue *queue.Client
}

// Connect opens PostgreSQL and Redis.
func Connect(ctx context.Context, cfg config.Config) (*Deps, error) {
	db, err := store.Open(ctx, cfg.DatabaseURL, store.Pool{MaxConns: cfg.DBMaxConns, StatementCache: cfg.DBStatementCache})
	if err != nil {
		return nil, err
	}
	rdb, err := NewRedis(cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	d := &Deps{DB: db, Redis: rdb, Store: store.New(db, cfg.Keyring, store.Options{ConfirmStuckAfter: cfg.ConfirmStuckAfter}),
		Queue: queue.NewClient(asynq.NewClientFromRedisClient(rdb))}
	d.Queue.Fair = queue.NewFair(rdb, cfg.ConfirmFairShare)
	d.Queue.Inspector = asynq.NewInspectorFromRedisClient(rdb)
	d.Queue.Redis = rdb
	// Idle workers sleep behind their IdleGate until an enqueue says so.
	d.Queue.Wake = func(ctx context.Context, q string) { _ = rdb.Publish(ctx, queue.WakeChannel, q).Err() }
	// Start a woken merchant lane at once; the sweep is the safety net.
	d.Store.OnLanes(func(ctx context.Context, wakes []store.LaneWake) {
		for _, w := range wakes {
			_ = d.Queue.CallbackLane(ctx, w.MerchantID, w.Gen)
		}
	})
	return d, nil
}

// NewRedis connects to Redis: the URL's server, the master that
// PAYRAIL_REDIS_SENTINEL_ADDRS names, or the cluster PAYRAIL_REDIS_CLUSTER_ADDRS
// seeds. asynq, redsync, the nonces, the rate limits and the fair shares all
// work through the one client it returns; every key they use in one command
// or script is a single key (or hash-tagged, asynq's), so the cluster never
// answers CROSSSLOT.
func NewRedis(cfg config.Config) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("PAYRAIL_REDIS_URL: %w", err)
	}
	opt.PoolSize = max(opt.PoolSize, 50)
	switch {
	case len(cfg.RedisClusterAddrs) > 0:
		cc := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: cfg.RedisClusterAddrs, Username: opt.Username, Password: opt.Password, PoolSize: opt.PoolSize, TLSConfig: opt.TLSConfig,
			ClusterStateReloadInterval: 10 * time.Second,
		})
		cc.AddHook(reloadOnNodeLoss{cc})
		return cc, nil
	case len(cfg.RedisSentinelAddrs) > 0:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: cfg.RedisMasterName, SentinelAddrs: cfg.RedisSentinelAddrs,
			Username: opt.Username, Password: opt.Password, DB: opt.DB, PoolSize: opt.PoolSize, TLSConfig: opt.TLSConfig,
		}), nil
	}
	return redis.NewClient(opt), nil
}

// reloadOnNodeLoss re-reads the slot map when a command fails for want of
// its node. go-redis reloads it on MOVED and otherwise only every
// ClusterStateReloadInterval, and keeps sending a dead master's slots to
// it meanwhile: chaos scenario 10 saw 503s for seconds after the cluster
// had promoted the replica. The reload is coalesced (and cooled down) by
// go-redis, so a storm of failures asks once.
type reloadOnNodeLoss struct{ cc *redis.ClusterClient }

func (h reloadOnNodeLoss) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnNodeLoss) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(err)
		return err
	}
}

func (h reloadOnNodeLoss) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(err)
		return err
	}
}

func (h reloadOnNodeLoss) check(err error) {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || strings.HasPrefix(err.Error(), "CLUSTERDOWN") {
		h.cc.ReloadState(context.Background())
	}
}

// AsynqConnOpt is the asynq connection option for cfg (asynqmon needs one).
func AsynqConnOpt(cfg config.Config) (asynq.RedisConnOpt, error) {
	if len(cfg.RedisClusterAddrs) == 0 && len(cfg.RedisSentinelAddrs) == 0 {
		return asynq.ParseRedisURI(cfg.RedisURL)
	}
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	if len(cfg.RedisClusterAddrs) > 0 {
		return asynq.RedisClusterClientOpt{Addrs: cfg.RedisClusterAddrs, Username: opt.Username, Password: opt.Password, TLSConfig: opt.TLSConfig}, nil
	}
	return asynq.RedisFailoverClientOpt{MasterName: cfg.RedisMasterName, SentinelAddrs: cfg.RedisSentinelAddrs,
		Username: opt.Username, Password: opt.Password, DB: opt.DB, TLSConfig: opt.TLSConfig}, nil
}

// Close closes the connections.
func (d *Deps) Close() {
	d.Queue.Close()
	d.Redis.Close()
	d.DB.Close()
}

// Ready pings PostgreSQL and Redis.
func (d *Deps) Ready(ctx context.Context) error {
	return errors.Join(d.DB.PingContext(ctx), d.Redis.Ping(ctx).Err())
}

// API is an assembled ingress.
type API struct {
	Deps   *Deps
	Server *httpapi.Server
	Waiter *httpapi.Waiter
	HTTP   *http.Server
	// Metrics is the api's /metrics, set by MountOps and served by
	// ServeAPIMetrics on its own listener, never on the api's port.
	Metrics http.Handler
	cfg     config.Config
}

// NewAPI wires the ingress. extra handlers (ops console, metrics) are mounted
// by the caller through Server.Extra before Serve.
func NewAPI(cfg config.Config, deps *Deps, log *slog.Logger) *API {
	waiter := httpapi.NewWaiter(deps.Store, log, cfg.MaxWaiters)
	creds := &auth.CachedCredentials{Store: deps.Store, TTL: cfg.AuthCacheTTL}
	srv := &httpapi.Server{
		Store:              deps.Store,
		Verifier:           &auth.Verifier{Store: creds, Nonces: auth.RedisNonces{Client: deps.Redis}},
		CredentialsChanged: creds.Invalidate,
		Queue:              deps.Queue,
		Waiter:             waiter,
		Log:                log,
		AdminTokens:        cfg.AdminTokens,
		CheckoutURL:        cfg.CheckoutURL,
		Sandbox:            cfg.Sandbox(),
		PGWebhookSecret:    cfg.PGWebhookSecret,
		Limiter:            leasing(ratelimit.New(deps.Redis), cfg.RateLease),
		Shedder: &httpapi.Shedder{After: cfg.ShedAfter,
			Backlog: backlog{rdb: deps.Redis, store: deps.Store}},
		MerchantLimits: &httpapi.MerchantLimits{Store: deps.Store, TTL: cfg.AuthCacheTTL, MaxInFlight: cfg.MerchantMaxInFlight,
			Default: ratelimit.Limit{PerSecond: cfg.RateLimit, Burst: cfg.RateBurst}},
		WebhookLimit:   ratelimit.Limit{PerSecond: cfg.PGWebhookRate, Burst: cfg.PGWebhookBurst},
		WebhookAllow:   cfg.PGWebhookAllowCIDRs,
		TrustedProxies: cfg.TrustedProxies,
		OrderTTL:       cfg.OrderTTL,
		Ready:          deps.Ready,
		Extra:          map[string]http.Handler{},
	}
	if cfg.AdmitTolerance > 0 {
		srv.Admission = admit.New(admit.Options{Tolerance: cfg.AdmitTolerance, Floor: cfg.AdmitFloor, Ceiling: cfg.AdmitCeiling})
		srv.FairInFlight = cfg.DBMaxConns
	}
	srv.ValidateCallbackURL = (&callback.Guard{AllowPrivate: cfg.CallbackAllowPrivate}).ValidateURL
	return &API{Deps: deps, Server: srv, Waiter: waiter, cfg: cfg}
}

// Serve listens on ln until ctx ends, then shuts down gracefully.
func (a *API) Serve(ctx context.Context, ln net.Listener) error {
	a.HTTP = &http.Server{
		Handler:           hsts(a.cfg.HSTS, a.Server.Handler()),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		// Longer than the longest `Prefer: wait` (30 s).
		WriteTimeout:   45 * time.Second,
		IdleTimeout:    90 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(a.Server.Log.Handler(), slog.LevelWarn),
	}
	wctx, stopWaiter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWaiter()
	go a.Waiter.Run(wctx, cmp.Or(a.cfg.DatabaseListenURL, a.cfg.DatabaseURL))
	errc := make(chan error, 1)
	go func() { errc <- a.HTTP.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
	defer cancel()
	return a.HTTP.Shutdown(sctx)
}

// hsts tells browsers to reach payrail over HTTPS only, on every answer, when
// on (PAYRAIL_HSTS; the default outside sandbox mode).
func hsts(on bool, h http.Handler) http.Handler {
	if !on {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		h.ServeHTTP(w, r)
	})
}

// leasing lets l draw a busy bucket's tokens ahead for lease (issue 19:
// three buckets a payment were 12 of its Redis commands).
func leasing(l *ratelimit.Limiter, lease time.Duration) *ratelimit.Limiter {
	l.Lease = lease
	return l
}

// Worker is an assembled worker process.
type Worker struct {
	Deps    *Deps
	Handler *worker.Worker
	Server  *asynq.Server
	// Gate answers asynq's empty-queue polls while nothing can be queued.
	Gate *queue.IdleGate
	// Deliverer sends callbacks: lane tasks, and while Run runs the turns
	// of lanes this worker's transactions wake (store.InlineTurns).
	Deliverer *callback.Deliverer
	cfg       config.Config
	log       *slog.Logger
}

// NewWorker wires the worker.
func NewWorker(cfg config.Config, deps *Deps, log *slog.Logger) *Worker {
	pg := pgclient.New(cfg.PGBaseURL, cfg.PGSecretKey, nil)
	w := &worker.Worker{
		Books: pg,
		Env: worker.Env{
			PG:     pg,
			Locks:  lock.New(deps.Redis, cfg.LockTTL, log),
			Log:    log,
			Alerts: deps.Store,
			Timing: worker.Timing{
				PGTimeout:           cfg.PGTimeout,
				SessionWindow:       cfg.PGSessionWindow,
				ConfirmBackoff:      cfg.ConfirmBackoff,
				ConfirmBackoffMax:   cfg.ConfirmBackoffMax,
				ReconcileBackoff:    cfg.ReconcileBackoff,
				ReconcileBackoffMax: cfg.ReconcileBackoffMax,
				SweepInterval:       cfg.SweepInterval,
				PGEventRetention:    cfg.PGEventRetention,
				PGLagWindow:         cfg.PGLagWindow,
				DepositGrace:        cfg.DepositGrace,
			},
		},
		Store: deps.Store,
		Queue: deps.Queue,
	}
	w.Callbacks = callback.NewDeliverer(callback.Options{Store: deps.Store, Queue: deps.Queue, Log: log,
		Guard: &callback.Guard{AllowPrivate: cfg.CallbackAllowPrivate}, Schedule: cfg.CallbackSchedule,
		Timeout: cfg.CallbackTimeout, MaxInFlight: max(cfg.WorkerConcurrency/2, 4*cfg.CallbackConcurrency),
		MaxTurns: max(1, cfg.WorkerConcurrency/2), PerMerchant: cfg.CallbackConcurrency})
	gate := queue.NewIdleGate(slices.Collect(maps.Keys(queue.Priorities))...)
	gate.Redis = deps.Redis // probes and forwarder rounds look with one pipeline
	deps.Redis.AddHook(gate.Hook())
	srv := asynq.NewServerFromRedisClient(deps.Redis, asynq.Config{
		Concurrency:              cfg.WorkerConcurrency,
		Queues:                   queue.Priorities,
		RetryDelayFunc:           w.RetryDelay,
		IsFailure:                worker.IsFailure,
		ShutdownTimeout:          cfg.PGTimeout + 5*time.Second,
		TaskCheckInterval:        cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: cfg.DelayedCheckInterval,
		Logger:                   asynqLogger{log},
		LogLevel:                 asynq.WarnLevel,
	})
	return &Worker{Deps: deps, Handler: w, Server: srv, Gate: gate, Deliverer: w.Callbacks.(*callback.Deliverer), cfg: cfg, log: log}
}

// Run processes tasks and ticks the sweep until ctx ends; then it stops
// taking tasks and waits for running ones (their ctx is cancelled at the
// shutdown timeout and they are re-queued, not lost).
func (w *Worker) Run(ctx context.Context) error {
	gctx, stopGate := context.WithCancel(context.WithoutCancel(ctx))
	defer stopGate()
	go w.Gate.Listen(gctx, w.Deps.Redis, w.log)
	if err := w.Server.Start(w.Handler.Mux()); err != nil {
		return fmt.Errorf("start asynq server: %w", err)
	}
	w.Deps.Store.InlineTurns(w.Deliverer)
	interval := w.cfg.SweepInterval
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			w.Deps.Store.InlineTurns(nil)
			w.Deliverer.Stop()
			w.Gate.Close() // asynq's forwarder and processor stop only between scripts
			w.Server.Shutdown()
			if !w.Deliverer.Wait(w.cfg.CallbackTimeout + 5*time.Second) {
				w.log.Warn("callback turns still sending at shutdown; their claims lapse and they are sent again")
			}
			return nil
		case now := <-t.C:
			tick := now.Truncate(interval).Unix()
			if err := w.Deps.Queue.Sweep(ctx, tick, 3*interval); err != nil {
				w.log.Warn("enqueue sweep", "err", err)
			}
			if day, due := reconDay(now, w.cfg.ReconDaily, w.cfg.ReconDelay); due {
				// Every worker offers it; the task ID (kept 15 min) and the
				// run's row make it one run, retried after a failure.
				if err := w.Deps.Queue.ReconDaily(ctx, day, 15*time.Minute); err != nil {
					w.log.Warn("enqueue daily reconciliation", "err", err)
				}
			}
		}
	}
}

type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }

// reconDay is the UTC day the daily reconciliation covers at now: the
// previous day, once delay has passed since midnight (the PG's list
// settles late rows; default 1 h).
func reconDay(now time.Time, on bool, delay time.Duration) (time.Time, bool) {
	if !on {
		return time.Time{}, false
	}
	today := now.UTC().Truncate(24 * time.Hour)
	if now.UTC().Sub(today) < delay {
		return time.Time{}, false
	}
	return today.Add(-24 * time.Hour), true
}
