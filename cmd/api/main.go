// Command api is payrail's HTTP ingress.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
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
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	log := process.NewLogger(cfg.LogLevel, os.Stdout).With("process", "api")
	log.Info("starting", "config", cfg.String())
	deps, err := process.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer deps.Close()
	api := process.NewAPI(cfg, deps, log)
	if err := process.MountOps(ctx, cfg, api, log); err != nil {
		return err
	}
	if addr, stop := process.ServeAPIMetrics(cfg, api, log); addr != "" {
		defer stop()
		log.Info("metrics listening", "addr", addr)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "{\"msg\":\"listening\",\"addr\":%q}\n", ln.Addr().String())
	return api.Serve(ctx, ln)
}
