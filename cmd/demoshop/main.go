// Command demoshop runs the demo merchant (internal/demoshop): a product
// page, mockpg's payment window, a confirm with one of three badges, a live
// panel of signed callbacks and an API playground.
//
// Configuration comes from the environment, falling back to .run/merchant.env
// and .run/env (what `make up` writes):
//
//	DEMOSHOP_ADDR             listen address (127.0.0.1:8090)
//	DEMOSHOP_PUBLIC_URL       where browsers and callbacks reach it (http://127.0.0.1:8090;
//	                          DEMOSHOP_URL is read when it is unset)
//	PAYRAIL_API_URL           payrail's api (http://127.0.0.1:8080)
//	PAYRAIL_ADMIN_TOKEN       to register demoshop as a merchant
//	DEMOSHOP_CLIENT_ID, DEMOSHOP_CLIENT_SECRET, DEMOSHOP_CALLBACK_SECRET
//	                          existing credentials; without them demoshop registers
//	                          itself and keeps the credentials in .run/demoshop.env
//	MOCKPG_URL                linked from the header as the PG's console
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/payrail/payrail/internal/demoshop"
	"github.com/payrail/payrail/internal/envfile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], envfile.Getenv(".run/merchant.env", ".run/env"), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demoshop:", err)
		os.Exit(1)
	}
}

// config is demoshop's process configuration.
type config struct {
	Addr            string
	PublicURL       string
	APIURL          string
	AdminToken      string
	ClientID        string
	ClientSecret    string
	CallbackSecret  string
	CredentialsFile string
	PGConsoleURL    string
}

// LogValue masks the secrets whenever the config is logged.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("publicUrl", c.PublicURL),
		slog.String("apiUrl", c.APIURL),
		slog.String("adminToken", mask(c.AdminToken)),
		slog.String("clientId", c.ClientID),
		slog.String("clientSecret", mask(c.ClientSecret)),
		slog.String("callbackSecret", mask(c.CallbackSecret)),
		slog.String("credentialsFile", c.CredentialsFile),
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
	if len(args) > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q (demoshop is configured by environment)", args)
	}
	or := func(v, def string) string {
		if v != "" {
			return v
		}
		return def
	}
	c := config{
		Addr:           or(getenv("DEMOSHOP_ADDR"), "127.0.0.1:8090"),
		PublicURL:      or(getenv("DEMOSHOP_PUBLIC_URL"), or(getenv("DEMOSHOP_URL"), "http://127.0.0.1:8090")),
		APIURL:         or(getenv("PAYRAIL_API_URL"), "http://127.0.0.1:8080"),
		AdminToken:     getenv("PAYRAIL_ADMIN_TOKEN"),
		ClientID:       getenv("DEMOSHOP_CLIENT_ID"),
		ClientSecret:   getenv("DEMOSHOP_CLIENT_SECRET"),
		CallbackSecret: getenv("DEMOSHOP_CALLBACK_SECRET"),
		PGConsoleURL:   getenv("MOCKPG_URL"),
	}
	if (c.ClientID == "") != (c.ClientSecret == "") {
		return c, errors.New("set both DEMOSHOP_CLIENT_ID and DEMOSHOP_CLIENT_SECRET, or neither")
	}
	if c.ClientID == "" {
		c.CredentialsFile = credentialsFile()
	}
	return c, nil
}

// credentialsFile is .run/demoshop.env in the nearest ancestor of the working
// directory that has a .run directory (make up creates it), or "" when there
// is none: then demoshop registers anew at every start.
func credentialsFile() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, ".run")); err == nil && fi.IsDir() {
			return filepath.Join(dir, ".run", "demoshop.env")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stdout, nil))
	cfg, err := parseConfig(args, getenv)
	if err != nil {
		return err
	}
	log.Info("demoshop: starting", "config", cfg)
	shop, err := demoshop.New(demoshop.Config{
		PublicURL: cfg.PublicURL, APIURL: cfg.APIURL, AdminToken: cfg.AdminToken,
		ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, CallbackSecret: cfg.CallbackSecret,
		CredentialsFile: cfg.CredentialsFile, PGConsoleURL: cfg.PGConsoleURL, Logger: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           shop,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A confirm waits up to 10 s for the outcome, and /events streams
		// clear their own write deadline.
		WriteTimeout: 60 * time.Second,
		IdleTimeout:  2 * time.Minute,
	}
	log.Info("demoshop: listening", "addr", ln.Addr().String(), "url", cfg.PublicURL, "clientId", shop.Credentials().ClientID)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shop.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("demoshop: stopped")
	return nil
}
