// Package config reads payrail's typed configuration from PAYRAIL_* variables,
// applies local-development defaults, validates it at start with messages
// that name the variable, and prints it with secrets masked.
package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/payrail/payrail/internal/secretbox"
)

// Config is every setting of the api and worker processes.
type Config struct {
	Addr                 string // PAYRAIL_ADDR
	MetricsAddr          string // PAYRAIL_METRICS_ADDR (worker)
	DatabaseURL          string // PAYRAIL_DATABASE_URL
	DBMaxConns           int    // PAYRAIL_DB_MAX_CONNS
	RedisURL             string // PAYRAIL_REDIS_URL
	AdminToken           string // PAYRAIL_ADMIN_TOKEN
	EncryptionKeys       string // PAYRAIL_ENCRYPTION_KEYS
	Keyring              *secretbox.Keyring
	PGBaseURL            string          // PAYRAIL_PG_BASE_URL
	PGSecretKey          string          // PAYRAIL_PG_SECRET_KEY
	PGWebhookSecret      string          // PAYRAIL_PG_WEBHOOK_SECRET (mockpg's X-MockPG-Signature)
	PGTimeout            time.Duration   // PAYRAIL_PG_TIMEOUT
	PGSessionWindow      time.Duration   // PAYRAIL_PG_SESSION_WINDOW
	CheckoutURL          string          // PAYRAIL_CHECKOUT_URL
	OrderTTL             time.Duration   // PAYRAIL_ORDER_TTL
	CallbackAllowPrivate bool            // PAYRAIL_CALLBACK_ALLOW_PRIVATE
	CallbackSchedule     []time.Duration // PAYRAIL_CALLBACK_SCHEDULE
	CallbackTimeout      time.Duration   // PAYRAIL_CALLBACK_TIMEOUT
	WorkerConcurrency    int             // PAYRAIL_WORKER_CONCURRENCY
	SweepInterval        time.Duration   // PAYRAIL_SWEEP_INTERVAL
	MaxWaiters           int             // PAYRAIL_MAX_WAITERS
	ConfirmBackoff       time.Duration   // PAYRAIL_CONFIRM_BACKOFF (first retry; doubles)
	ConfirmBackoffMax    time.Duration   // PAYRAIL_CONFIRM_BACKOFF_MAX
	ReconcileBackoff     time.Duration   // PAYRAIL_RECONCILE_BACKOFF
	ReconcileBackoffMax  time.Duration   // PAYRAIL_RECONCILE_BACKOFF_MAX
	ConfirmStuckAfter    time.Duration   // PAYRAIL_CONFIRM_STUCK_AFTER
	LockTTL              time.Duration   // PAYRAIL_LOCK_TTL
	RedisSentinelAddrs   []string        // PAYRAIL_REDIS_SENTINEL_ADDRS (host:port,…; overrides the URL's host)
	RedisMasterName      string          // PAYRAIL_REDIS_MASTER_NAME
	TaskCheckInterval    time.Duration   // PAYRAIL_TASK_CHECK_INTERVAL (idle poll of the queues)
	DelayedCheckInterval time.Duration   // PAYRAIL_DELAYED_CHECK_INTERVAL (retries becoming due)
	AuthCacheTTL         time.Duration   // PAYRAIL_AUTH_CACHE_TTL (0 = off)
	LogLevel             string          // PAYRAIL_LOG_LEVEL
}

// DefaultCallbackSchedule is DESIGN.md's retry schedule; after the last, DEAD.
var DefaultCallbackSchedule = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
	30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}

// Load reads the configuration through getenv.
func Load(getenv func(string) string) (Config, error) {
	c := Config{
		Addr:                 or(getenv("PAYRAIL_ADDR"), "127.0.0.1:8080"),
		MetricsAddr:          or(getenv("PAYRAIL_METRICS_ADDR"), "127.0.0.1:9090"),
		DatabaseURL:          or(getenv("PAYRAIL_DATABASE_URL"), "postgres://payrail:payrail@127.0.0.1:55432/payrail?sslmode=disable"),
		RedisURL:             or(getenv("PAYRAIL_REDIS_URL"), "redis://127.0.0.1:56379/0"),
		AdminToken:           getenv("PAYRAIL_ADMIN_TOKEN"),
		EncryptionKeys:       getenv("PAYRAIL_ENCRYPTION_KEYS"),
		PGBaseURL:            or(getenv("PAYRAIL_PG_BASE_URL"), "http://127.0.0.1:8070"),
		PGSecretKey:          or(getenv("PAYRAIL_PG_SECRET_KEY"), "test_sk_mockpg"),
		PGWebhookSecret:      getenv("PAYRAIL_PG_WEBHOOK_SECRET"),
		CheckoutURL:          or(getenv("PAYRAIL_CHECKOUT_URL"), "http://127.0.0.1:8070/checkout"),
		CallbackAllowPrivate: getenv("PAYRAIL_CALLBACK_ALLOW_PRIVATE") == "true",
		LogLevel:             or(getenv("PAYRAIL_LOG_LEVEL"), "info"),
		CallbackSchedule:     DefaultCallbackSchedule,
	}
	var errs []string
	bad := func(name, format string, args ...any) {
		errs = append(errs, name+": "+fmt.Sprintf(format, args...))
	}
	intVar := func(name string, def int, dst *int) {
		*dst = def
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				bad(name, "want a positive integer, got %q", v)
				return
			}
			*dst = n
		}
	}
	durVar := func(name string, def time.Duration, dst *time.Duration) {
		*dst = def
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				bad(name, "want a positive duration like 10s or 5m, got %q", v)
				return
			}
			*dst = d
		}
	}
	intVar("PAYRAIL_DB_MAX_CONNS", 20, &c.DBMaxConns)
	intVar("PAYRAIL_WORKER_CONCURRENCY", 20, &c.WorkerConcurrency)
	intVar("PAYRAIL_MAX_WAITERS", 2000, &c.MaxWaiters)
	durVar("PAYRAIL_PG_TIMEOUT", 10*time.Second, &c.PGTimeout)
	durVar("PAYRAIL_PG_SESSION_WINDOW", 9*time.Minute, &c.PGSessionWindow)
	durVar("PAYRAIL_ORDER_TTL", 30*time.Minute, &c.OrderTTL)
	durVar("PAYRAIL_CALLBACK_TIMEOUT", 10*time.Second, &c.CallbackTimeout)
	durVar("PAYRAIL_SWEEP_INTERVAL", 5*time.Second, &c.SweepInterval)
	durVar("PAYRAIL_CONFIRM_BACKOFF", time.Second, &c.ConfirmBackoff)
	durVar("PAYRAIL_CONFIRM_BACKOFF_MAX", time.Minute, &c.ConfirmBackoffMax)
	durVar("PAYRAIL_RECONCILE_BACKOFF", 30*time.Second, &c.ReconcileBackoff)
	durVar("PAYRAIL_RECONCILE_BACKOFF_MAX", 10*time.Minute, &c.ReconcileBackoffMax)
	durVar("PAYRAIL_CONFIRM_STUCK_AFTER", 30*time.Second, &c.ConfirmStuckAfter)
	durVar("PAYRAIL_LOCK_TTL", c.PGTimeout+5*time.Second, &c.LockTTL)
	// asynq polls an idle queue every second and moves due retries every
	// 5 s by default; a payment pipeline wants both far shorter.
	c.AuthCacheTTL = time.Second
	if v := getenv("PAYRAIL_AUTH_CACHE_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			bad("PAYRAIL_AUTH_CACHE_TTL", "want a duration from 0 (off) to 1m, got %q", v)
		}
		c.AuthCacheTTL = d
	}
	durVar("PAYRAIL_TASK_CHECK_INTERVAL", 20*time.Millisecond, &c.TaskCheckInterval)
	durVar("PAYRAIL_DELAYED_CHECK_INTERVAL", 250*time.Millisecond, &c.DelayedCheckInterval)
	if v := getenv("PAYRAIL_CALLBACK_SCHEDULE"); v != "" {
		var sched []time.Duration
		for _, p := range strings.Split(v, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(p))
			if err != nil || d <= 0 {
				bad("PAYRAIL_CALLBACK_SCHEDULE", "want comma-separated durations like 5s,30s,2m, got %q", v)
				break
			}
			sched = append(sched, d)
		}
		c.CallbackSchedule = sched
	}
	if v := getenv("PAYRAIL_REDIS_SENTINEL_ADDRS"); v != "" {
		for _, a := range strings.Split(v, ",") {
			c.RedisSentinelAddrs = append(c.RedisSentinelAddrs, strings.TrimSpace(a))
		}
		c.RedisMasterName = getenv("PAYRAIL_REDIS_MASTER_NAME")
		if c.RedisMasterName == "" {
			bad("PAYRAIL_REDIS_MASTER_NAME", "required with PAYRAIL_REDIS_SENTINEL_ADDRS")
		}
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		bad("PAYRAIL_ADMIN_TOKEN", "must be at least 16 characters")
	}
	if c.EncryptionKeys == "" {
		bad("PAYRAIL_ENCRYPTION_KEYS", "required: id:base64key[,id:base64key…] with 32-byte keys (make up writes one to .run/env)")
	} else if k, err := secretbox.ParseKeys(c.EncryptionKeys); err != nil {
		bad("PAYRAIL_ENCRYPTION_KEYS", "%v", err)
	} else {
		c.Keyring = k
	}
	for name, v := range map[string]string{"PAYRAIL_DATABASE_URL": c.DatabaseURL, "PAYRAIL_REDIS_URL": c.RedisURL, "PAYRAIL_PG_BASE_URL": c.PGBaseURL, "PAYRAIL_CHECKOUT_URL": c.CheckoutURL} {
		if u, err := url.Parse(v); err != nil || u.Scheme == "" || u.Host == "" {
			bad(name, "not a URL: %q", mask(v))
		}
	}
	if c.LockTTL <= c.PGTimeout {
		bad("PAYRAIL_LOCK_TTL", "must exceed PAYRAIL_PG_TIMEOUT (%s) so a lock outlives the PG call it guards", c.PGTimeout)
	}
	if c.PGTimeout >= c.PGSessionWindow {
		bad("PAYRAIL_PG_TIMEOUT", "must be shorter than PAYRAIL_PG_SESSION_WINDOW")
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return c, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// mask hides a URL's password.
func mask(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.User == nil {
		return v
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "****")
	}
	return u.String()
}

// String prints the configuration with every secret masked.
func (c Config) String() string {
	secret := func(s string) string {
		if s == "" {
			return "(unset)"
		}
		return "****"
	}
	return fmt.Sprintf("addr=%s db=%s redis=%s pg=%s pg_key=%s admin_token=%s encryption_keys=%s order_ttl=%s pg_timeout=%s callback_allow_private=%v",
		c.Addr, mask(c.DatabaseURL), mask(c.RedisURL), c.PGBaseURL, secret(c.PGSecretKey), secret(c.AdminToken),
		secret(c.EncryptionKeys), c.OrderTTL, c.PGTimeout, c.CallbackAllowPrivate)
}
