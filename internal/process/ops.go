package process

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/payrail/payrail/internal/config"
)

// MountOps mounts the operator surfaces (console, asynqmon, metrics) on the
// api. Until the ops console lands, only /metrics placeholders are absent.
func MountOps(ctx context.Context, cfg config.Config, api *API, log *slog.Logger) error {
	return nil
}

// ServeWorkerMetrics serves the worker's /metrics and /healthz on
// cfg.MetricsAddr; it returns a stop function.
func ServeWorkerMetrics(ctx context.Context, cfg config.Config, w *Worker, log *slog.Logger) func() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) { rw.Write([]byte("ok\n")) })
	srv := &http.Server{Addr: cfg.MetricsAddr, Handler: mux}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Warn("worker metrics server", "err", err)
		}
	}()
	return func() { srv.Close() }
}
