// Command worker runs payrail's asynq handlers and periodic sweeps.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/payrail/payrail/internal/config"
	"github.com/payrail/payrail/internal/process"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, _ []string, getenv func(string) string, _ io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	log := process.NewLogger(cfg.LogLevel, os.Stdout).With("process", "worker", "pid", os.Getpid())
	log.Info("starting", "config", cfg.String())
	deps, err := process.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer deps.Close()
	w := process.NewWorker(cfg, deps, log)
	_, stopMetrics := process.ServeWorkerMetrics(cfg, w, log)
	defer stopMetrics()
	return w.Run(ctx)
}
