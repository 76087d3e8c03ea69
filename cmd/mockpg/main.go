// Command mockpg runs the sandbox payment gateway (internal/mockpg): the
// TossPayments v1 subset payrail uses, fault injection, signed webhooks, a
// payment window and a console. For local development and tests only.
//
// Configuration comes from the environment, and flags override it:
//
//	MOCKPG_ADDR            -addr            listen address (127.0.0.1:8070)
//	MOCKPG_SECRET_KEY      -secret-key      the accepted secret key (test_sk_mockpg)
//	MOCKPG_WEBHOOK_URL     -webhook-url     where PAYMENT_STATUS_CHANGED goes (none)
//	MOCKPG_WEBHOOK_SECRET  -webhook-secret  HMAC key of X-MockPG-Signature (whsec_mockpg_dev)
//	MOCKPG_SESSION_TTL     -session-ttl     how long a session may be confirmed (10m)
//	MOCKPG_FAULTS          -faults          fault config JSON, as POST /sandbox/faults takes
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/payrail/payrail/internal/mockpg"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mockpg:", err)
		os.Exit(1)
	}
}

// config is mockpg's typed configuration.
type config struct {
	Addr          string
	SecretKey     string
	WebhookURL    string
	WebhookSecret string
	SessionTTL    time.Duration
	Faults        mockpg.Faults
}

// LogValue masks the secrets whenever the config is logged.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("secretKey", mask(c.SecretKey)),
		slog.String("webhookUrl", c.WebhookURL),
		slog.String("webhookSecret", mask(c.WebhookSecret)),
		slog.Duration("sessionTtl", c.SessionTTL),
		slog.Any("faults", c.Faults),
	)
}

// mask says whether a secret is set, and nothing of its value: even a
// prefix narrows a guess and tells which of several secrets is in use.
func mask(s string) string {
	if s == "" {
		return "unset"
	}
	return "set"
}

func parseConfig(args []string, getenv func(string) string) (config, error) {
	envOr := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("mockpg", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c config
	var ttl, faults string
	fs.StringVar(&c.Addr, "addr", envOr("MOCKPG_ADDR", "127.0.0.1:8070"), "listen address")
	fs.StringVar(&c.SecretKey, "secret-key", envOr("MOCKPG_SECRET_KEY", "test_sk_mockpg"), "accepted secret key")
	fs.StringVar(&c.WebhookURL, "webhook-url", envOr("MOCKPG_WEBHOOK_URL", ""), "webhook target URL (empty: none)")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", envOr("MOCKPG_WEBHOOK_SECRET", "whsec_mockpg_dev"), "webhook signing secret")
	fs.StringVar(&ttl, "session-ttl", envOr("MOCKPG_SESSION_TTL", "10m"), "payment session lifetime")
	fs.StringVar(&faults, "faults", envOr("MOCKPG_FAULTS", ""), "fault configuration JSON")
	if err := fs.Parse(args); err != nil {
		return config{}, fmt.Errorf("flags: %w", err)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	d, err := time.ParseDuration(ttl)
	if err != nil || d <= 0 {
		return config{}, fmt.Errorf("session TTL %q: want a positive duration like 10m", ttl)
	}
	c.SessionTTL = d
	if faults != "" {
		if c.Faults, err = mockpg.ParseFaults([]byte(faults)); err != nil {
			return config{}, fmt.Errorf("faults: %w", err)
		}
	}
	if c.SecretKey == "" || c.WebhookSecret == "" {
		return config{}, errors.New("secret key and webhook secret must not be empty")
	}
	return c, nil
}

// run starts mockpg and serves until ctx is cancelled, then shuts down
// within 10 s. It prints the base URL to stdout once listening.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := parseConfig(args, getenv)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stdout, nil)).With(slog.String("service", "mockpg"))

	pg := mockpg.New(mockpg.Config{
		SecretKey:     cfg.SecretKey,
		WebhookURL:    cfg.WebhookURL,
		WebhookSecret: cfg.WebhookSecret,
		SessionTTL:    cfg.SessionTTL,
		Faults:        cfg.Faults,
		Logger:        logger,
	})
	defer pg.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           pg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: the timeout fault hangs on purpose, up to
		// timeoutMs (at most 10 minutes), until the client gives up.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("listening", slog.String("url", "http://"+ln.Addr().String()), slog.Any("config", cfg))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	pg.Close() // releases hanging fault requests so Shutdown need not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
