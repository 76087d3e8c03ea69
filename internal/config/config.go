// Package config reads payrail's typed configuration from PAYRAIL_* variables,
// applies local-development defaults, validates it at start with messages
// that name the variable, and prints it with secrets masked.
package config

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/payrail/payrail/internal/secretbox"
)

// Config is every setting of the api and worker processes.
type Config struct {
	Addr           string // PAYRAIL_ADDR
	MetricsAddr    string // PAYRAIL_METRICS_ADDR (worker)
	APIMetricsAddr string // PAYRAIL_API_METRICS_ADDR (the api's /metrics, never on PAYRAIL_ADDR)
	DatabaseURL    string // PAYRAIL_DATABASE_URL
	// DatabaseListenURL is the session connection Prefer: wait LISTENs on
	// (PAYRAIL_DATABASE_LISTEN_URL; default DatabaseURL). Behind PgBouncer in
	// transaction mode it must be a direct connection to the primary.
	DatabaseListenURL string
	DBMaxConns        int // PAYRAIL_DB_MAX_CONNS
	// DBStatementCache keeps statements prepared per connection
	// (PAYRAIL_DB_STATEMENT_CACHE, default false): only where connections
	// are sessions, never behind a transaction-mode PgBouncer before 1.21.
	DBStatementCache bool
	RedisURL         string // PAYRAIL_REDIS_URL
	AdminToken       string // PAYRAIL_ADMIN_TOKEN
	// AdminTokens are every admin token accepted: PAYRAIL_ADMIN_TOKENS
	// (comma-separated, at most two, while one is rotated out) and
	// PAYRAIL_ADMIN_TOKEN. Clients send AdminTokens[0].
	AdminTokens          []string
	EncryptionKeys       string // PAYRAIL_ENCRYPTION_KEYS
	Keyring              *secretbox.Keyring
	PGProvider           string          // PAYRAIL_PG_PROVIDER: toss (default) or mockpg (sandbox mode)
	PGBaseURL            string          // PAYRAIL_PG_BASE_URL
	PGSecretKey          string          // PAYRAIL_PG_SECRET_KEY
	PGWebhookSecret      string          // PAYRAIL_PG_WEBHOOK_SECRET (mockpg's X-MockPG-Signature)
	PGTimeout            time.Duration   // PAYRAIL_PG_TIMEOUT
	PGSessionWindow      time.Duration   // PAYRAIL_PG_SESSION_WINDOW
	CheckoutURL          string          // PAYRAIL_CHECKOUT_URL
	OrderTTL             time.Duration   // PAYRAIL_ORDER_TTL
	CallbackAllowPrivate bool            // PAYRAIL_CALLBACK_ALLOW_PRIVATE
	OpsRequireTOTP       bool            // PAYRAIL_OPS_REQUIRE_TOTP (default true; make up sets false for the demo)
	CallbackSchedule     []time.Duration // PAYRAIL_CALLBACK_SCHEDULE
	CallbackTimeout      time.Duration   // PAYRAIL_CALLBACK_TIMEOUT
	CallbackConcurrency  int             // PAYRAIL_CALLBACK_CONCURRENCY (one merchant's callbacks in flight per worker, 1–16; default 8)
	WorkerConcurrency    int             // PAYRAIL_WORKER_CONCURRENCY
	SweepInterval        time.Duration   // PAYRAIL_SWEEP_INTERVAL
	PGEventRetention     time.Duration   // PAYRAIL_PG_EVENT_RETENTION (settled PG events; default 720h)
	PGLagWindow          time.Duration   // PAYRAIL_PG_LAG_WINDOW (an event ahead of the PG's record is re-checked this long; default 2m)
	DepositGrace         time.Duration   // PAYRAIL_DEPOSIT_GRACE (an unpaid virtual account is expired this long after its due date; default 10m)
	ReconDaily           bool            // PAYRAIL_RECON_DAILY (reconcile the previous UTC day with the PG's books; default true)
	ReconDelay           time.Duration   // PAYRAIL_RECON_DELAY (how long after midnight UTC the daily run starts; default 1h)
	OpsSessionIdle       time.Duration   // PAYRAIL_OPS_SESSION_IDLE (an unused console session ends; default 30m)
	OpsSessionMax        time.Duration   // PAYRAIL_OPS_SESSION_MAX (a console session's lifetime from login; default 12h)
	ShedAfter            time.Duration   // PAYRAIL_SHED_AFTER (oldest waiting confirm older than this: shed new orders; default 5s)
	AdmitTolerance       float64         // PAYRAIL_ADMIT_TOLERANCE (serving slower than this × unloaded lowers the heaviest merchants' new-order rate; default 2; "off" disables)
	AdmitFloor           time.Duration   // PAYRAIL_ADMIT_FLOOR (a median service time at or below this is never overload; default 5ms)
	AdmitCeiling         time.Duration   // PAYRAIL_ADMIT_CEILING (a median service time above this is overload whatever the baseline; default 50ms)
	RateLimit            int             // PAYRAIL_RATE_LIMIT (per merchant and second; default 100)
	RateBurst            int             // PAYRAIL_RATE_BURST (default 200)
	RateLease            time.Duration   // PAYRAIL_RATE_LEASE (a busy bucket's tokens drawn ahead are spent for at most this; default 100ms, at most 1s; 0 or off: one draw per request)
	MerchantMaxInFlight  int             // PAYRAIL_MERCHANT_MAX_IN_FLIGHT (requests of one merchant an api process serves at once: this or the merchant's burst, whichever is larger; confirms twice; default 64)
	ConfirmFairShare     int             // PAYRAIL_CONFIRM_FAIR_SHARE (a merchant's confirms outstanding in the payments queue before the rest go to payments_bulk; default 4)
	PGWebhookRate        int             // PAYRAIL_PG_WEBHOOK_RATE (per source address and second; default 50)
	PGWebhookBurst       int             // PAYRAIL_PG_WEBHOOK_BURST (default 100)
	PGWebhookAllowCIDRs  []netip.Prefix  // PAYRAIL_PG_WEBHOOK_ALLOW_CIDRS (empty: any source)
	MaxWaiters           int             // PAYRAIL_MAX_WAITERS
	ConfirmBackoff       time.Duration   // PAYRAIL_CONFIRM_BACKOFF (first retry; doubles)
	ConfirmBackoffMax    time.Duration   // PAYRAIL_CONFIRM_BACKOFF_MAX
	ReconcileBackoff     time.Duration   // PAYRAIL_RECONCILE_BACKOFF
	ReconcileBackoffMax  time.Duration   // PAYRAIL_RECONCILE_BACKOFF_MAX
	ConfirmStuckAfter    time.Duration   // PAYRAIL_CONFIRM_STUCK_AFTER
	LockTTL              time.Duration   // PAYRAIL_LOCK_TTL
	RedisSentinelAddrs   []string        // PAYRAIL_REDIS_SENTINEL_ADDRS (host:port,…; overrides the URL's host)
	RedisMasterName      string          // PAYRAIL_REDIS_MASTER_NAME
	RedisClusterAddrs    []string        // PAYRAIL_REDIS_CLUSTER_ADDRS (seed nodes host:port,…; overrides the URL's host, DB must be 0)
	TaskCheckInterval    time.Duration   // PAYRAIL_TASK_CHECK_INTERVAL (idle poll of the queues)
	DelayedCheckInterval time.Duration   // PAYRAIL_DELAYED_CHECK_INTERVAL (retries becoming due)
	AuthCacheTTL         time.Duration   // PAYRAIL_AUTH_CACHE_TTL (0 = off)
	LogLevel             string          // PAYRAIL_LOG_LEVEL
	// SecureCookies marks the ops session cookie Secure whatever the request
	// says; HSTS sends Strict-Transport-Security on every api response. Both
	// default to on outside sandbox mode.
	SecureCookies bool // PAYRAIL_SECURE_COOKIES
	HSTS          bool // PAYRAIL_HSTS
	// TrustedProxies are the peers whose X-Forwarded-* headers are believed
	// (none by default).
	TrustedProxies []netip.Prefix // PAYRAIL_TRUSTED_PROXIES
}

// DefaultCallbackSchedule is DESIGN.md's retry schedule; after the last, DEAD.
var DefaultCallbackSchedule = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
	30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}

// Load reads the configuration through getenv.
func Load(getenv func(string) string) (Config, error) {
	c := Config{
		Addr:                 or(getenv("PAYRAIL_ADDR"), "127.0.0.1:8080"),
		MetricsAddr:          or(getenv("PAYRAIL_METRICS_ADDR"), "127.0.0.1:9090"),
		APIMetricsAddr:       or(getenv("PAYRAIL_API_METRICS_ADDR"), "127.0.0.1:9091"),
		DatabaseURL:          or(getenv("PAYRAIL_DATABASE_URL"), "postgres://payrail:payrail@127.0.0.1:55432/payrail?sslmode=disable"),
		DatabaseListenURL:    getenv("PAYRAIL_DATABASE_LISTEN_URL"),
		RedisURL:             or(getenv("PAYRAIL_REDIS_URL"), "redis://127.0.0.1:56379/0"),
		AdminToken:           getenv("PAYRAIL_ADMIN_TOKEN"),
		AdminTokens:          adminTokens(getenv("PAYRAIL_ADMIN_TOKENS"), getenv("PAYRAIL_ADMIN_TOKEN")),
		EncryptionKeys:       getenv("PAYRAIL_ENCRYPTION_KEYS"),
		PGProvider:           or(getenv("PAYRAIL_PG_PROVIDER"), ProviderToss),
		PGBaseURL:            or(getenv("PAYRAIL_PG_BASE_URL"), "http://127.0.0.1:8070"),
		PGSecretKey:          or(getenv("PAYRAIL_PG_SECRET_KEY"), "test_sk_mockpg"),
		PGWebhookSecret:      getenv("PAYRAIL_PG_WEBHOOK_SECRET"),
		CheckoutURL:          or(getenv("PAYRAIL_CHECKOUT_URL"), "http://127.0.0.1:8070/checkout"),
		CallbackAllowPrivate: getenv("PAYRAIL_CALLBACK_ALLOW_PRIVATE") == "true",
		OpsRequireTOTP:       getenv("PAYRAIL_OPS_REQUIRE_TOTP") != "false",
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
	durVar("PAYRAIL_PG_EVENT_RETENTION", 30*24*time.Hour, &c.PGEventRetention)
	durVar("PAYRAIL_PG_LAG_WINDOW", 2*time.Minute, &c.PGLagWindow)
	durVar("PAYRAIL_DEPOSIT_GRACE", 10*time.Minute, &c.DepositGrace)
	durVar("PAYRAIL_RECON_DELAY", time.Hour, &c.ReconDelay)
	durVar("PAYRAIL_SHED_AFTER", 5*time.Second, &c.ShedAfter)
	durVar("PAYRAIL_ADMIT_FLOOR", 5*time.Millisecond, &c.AdmitFloor)
	durVar("PAYRAIL_ADMIT_CEILING", 50*time.Millisecond, &c.AdmitCeiling)
	c.AdmitTolerance = 2
	switch v := getenv("PAYRAIL_ADMIT_TOLERANCE"); v {
	case "":
	case "off":
		c.AdmitTolerance = 0
	default:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 1 || f > 100 {
			bad("PAYRAIL_ADMIT_TOLERANCE", "want a number from 1 to 100 or off, got %q", v)
		} else {
			c.AdmitTolerance = f
		}
	}
	durVar("PAYRAIL_OPS_SESSION_IDLE", 30*time.Minute, &c.OpsSessionIdle)
	durVar("PAYRAIL_OPS_SESSION_MAX", 12*time.Hour, &c.OpsSessionMax)
	intVar("PAYRAIL_RATE_LIMIT", 100, &c.RateLimit)
	intVar("PAYRAIL_RATE_BURST", 200, &c.RateBurst)
	if v := getenv("PAYRAIL_RATE_LEASE"); v == "0" || v == "off" {
		c.RateLease = 0
	} else if durVar("PAYRAIL_RATE_LEASE", 100*time.Millisecond, &c.RateLease); c.RateLease > time.Second {
		bad("PAYRAIL_RATE_LEASE", "want 0 (off) to 1s, got %s", c.RateLease)
	}
	intVar("PAYRAIL_CONFIRM_FAIR_SHARE", 4, &c.ConfirmFairShare)
	intVar("PAYRAIL_CALLBACK_CONCURRENCY", 8, &c.CallbackConcurrency)
	if c.CallbackConcurrency > 16 {
		bad("PAYRAIL_CALLBACK_CONCURRENCY", "want 1 to 16, got %d", c.CallbackConcurrency)
	}
	intVar("PAYRAIL_MERCHANT_MAX_IN_FLIGHT", 64, &c.MerchantMaxInFlight)
	intVar("PAYRAIL_PG_WEBHOOK_RATE", 50, &c.PGWebhookRate)
	intVar("PAYRAIL_PG_WEBHOOK_BURST", 100, &c.PGWebhookBurst)
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
	if v := getenv("PAYRAIL_REDIS_CLUSTER_ADDRS"); v != "" {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.RedisClusterAddrs = append(c.RedisClusterAddrs, a)
			}
		}
		if len(c.RedisSentinelAddrs) > 0 {
			bad("PAYRAIL_REDIS_CLUSTER_ADDRS", "and PAYRAIL_REDIS_SENTINEL_ADDRS are two topologies: set one")
		}
		// A cluster has only database 0; a URL naming another would be
		// silently ignored, and two deployments sharing a cluster collide.
		if u, err := url.Parse(c.RedisURL); err == nil && strings.Trim(u.Path, "/") != "" && strings.Trim(u.Path, "/") != "0" {
			bad("PAYRAIL_REDIS_URL", "names database %s, but a Redis Cluster has only database 0 (PAYRAIL_REDIS_CLUSTER_ADDRS is set)", strings.Trim(u.Path, "/"))
		}
	}
	switch c.PGProvider {
	case ProviderToss:
		// mockpg's signed door must not exist next to the real PG: its
		// events would be a second, weaker way to say "paid".
		if c.PGWebhookSecret != "" {
			bad("PAYRAIL_PG_WEBHOOK_SECRET", "is mockpg's webhook secret and is refused unless PAYRAIL_PG_PROVIDER=mockpg (the /pg/webhooks/mockpg door exists only in sandbox mode)")
		}
	case ProviderMockPG:
		if u, err := url.Parse(c.PGBaseURL); err == nil && isTossHost(u.Hostname()) {
			bad("PAYRAIL_PG_PROVIDER", "mockpg (sandbox mode) with PAYRAIL_PG_BASE_URL at TossPayments: set PAYRAIL_PG_PROVIDER=toss")
		}
		if c.PGWebhookSecret == "" {
			bad("PAYRAIL_PG_WEBHOOK_SECRET", "required in sandbox mode (PAYRAIL_PG_PROVIDER=mockpg): mockpg's webhook secret, at least 32 random bytes")
		} else if err := StrongSecret(c.PGWebhookSecret); err != nil {
			bad("PAYRAIL_PG_WEBHOOK_SECRET", "%v", err)
		}
	default:
		bad("PAYRAIL_PG_PROVIDER", "want toss or mockpg, got %q", c.PGProvider)
	}
	if p, ok := placeholder(c.PGSecretKey); ok {
		bad("PAYRAIL_PG_SECRET_KEY", "is a placeholder (%q): set the PG's secret key", p)
	}
	if len(c.AdminTokens) > 2 {
		bad("PAYRAIL_ADMIN_TOKENS", "takes at most two tokens (the new one and the one being rotated out), got %d", len(c.AdminTokens))
	}
	for i, tok := range c.AdminTokens {
		name := "PAYRAIL_ADMIN_TOKEN"
		if i < len(c.AdminTokens)-1 || c.AdminToken == "" {
			name = fmt.Sprintf("PAYRAIL_ADMIN_TOKENS (token %d)", i+1)
		}
		switch {
		case c.Sandbox():
			// Local development keeps its shorter tokens, never a placeholder.
			if p, ok := placeholder(tok); ok {
				bad(name, "is a placeholder (%q); generate one, e.g. openssl rand -hex 32", p)
			} else if len(tok) < 16 {
				bad(name, "must be at least 16 characters")
			}
		default:
			if err := StrongSecret(tok); err != nil {
				bad(name, "%v", err)
			}
		}
	}
	if c.EncryptionKeys == "" {
		bad("PAYRAIL_ENCRYPTION_KEYS", "required: id:base64key[,id:base64key…] with 32-byte keys (make up writes one to .run/env)")
	} else if p, ok := placeholder(c.EncryptionKeys); ok {
		bad("PAYRAIL_ENCRYPTION_KEYS", "is a placeholder (%q); generate a key, e.g. k1:$(openssl rand -base64 32)", p)
	} else if k, err := secretbox.ParseKeys(c.EncryptionKeys); err != nil {
		bad("PAYRAIL_ENCRYPTION_KEYS", "%v", err)
	} else if err := randomKeys(c.EncryptionKeys); err != nil {
		bad("PAYRAIL_ENCRYPTION_KEYS", "%v", err)
	} else {
		c.Keyring = k
	}
	// Errors name the variable, never its value: a URL that does not parse
	// may still hold a password.
	for name, v := range map[string]string{"PAYRAIL_DATABASE_URL": c.DatabaseURL, "PAYRAIL_DATABASE_LISTEN_URL": c.DatabaseListenURL, "PAYRAIL_REDIS_URL": c.RedisURL, "PAYRAIL_PG_BASE_URL": c.PGBaseURL, "PAYRAIL_CHECKOUT_URL": c.CheckoutURL} {
		if v == "" && name == "PAYRAIL_DATABASE_LISTEN_URL" {
			continue // optional: the pool's URL is used
		}
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || u.Host == "" {
			bad(name, "not a URL like scheme://host[:port]/… (the value is not shown)")
			continue
		}
		if pw, ok := u.User.Password(); ok {
			if p, ok := placeholder(pw); ok {
				bad(name, "its password is a placeholder (%q)", p)
			}
		}
	}
	boolVar := func(name string, def bool, dst *bool) {
		*dst = def
		switch v := getenv(name); v {
		case "":
		case "true", "1":
			*dst = true
		case "false", "0":
			*dst = false
		default:
			bad(name, "want true or false, got %q", v)
		}
	}
	// Outside sandbox mode payrail is reached over HTTPS (a TLS-terminating
	// proxy in front): the session cookie must never travel in clear, and
	// browsers are told to use HTTPS only, whatever a request's headers say.
	boolVar("PAYRAIL_SECURE_COOKIES", !c.Sandbox(), &c.SecureCookies)
	boolVar("PAYRAIL_HSTS", !c.Sandbox(), &c.HSTS)
	boolVar("PAYRAIL_RECON_DAILY", true, &c.ReconDaily)
	boolVar("PAYRAIL_DB_STATEMENT_CACHE", false, &c.DBStatementCache)
	prefixesVar := func(name string, dst *[]netip.Prefix) {
		v := getenv(name)
		if v == "" {
			return
		}
		for _, p := range strings.Split(v, ",") {
			pfx, err := parsePrefix(strings.TrimSpace(p))
			if err != nil {
				bad(name, "want comma-separated CIDRs or addresses like 10.0.0.0/8,192.168.1.7, got %q", p)
				continue
			}
			*dst = append(*dst, pfx)
		}
	}
	prefixesVar("PAYRAIL_TRUSTED_PROXIES", &c.TrustedProxies)
	prefixesVar("PAYRAIL_PG_WEBHOOK_ALLOW_CIDRS", &c.PGWebhookAllowCIDRs)
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

// The PG providers. mockpg is sandbox mode: its signed webhook door is open
// and the PG is the bundled sandbox, never TossPayments.
const (
	ProviderToss   = "toss"
	ProviderMockPG = "mockpg"
)

// Sandbox reports whether payrail runs against the bundled sandbox PG.
func (c Config) Sandbox() bool { return c.PGProvider == ProviderMockPG }

func isTossHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "tosspayments.com" || strings.HasSuffix(host, ".tosspayments.com")
}

// placeholders are values copied from examples that must never run.
var placeholders = []string{"change_me", "changeme", "replace_me", "replaceme", "example", "placeholder", "secret", "password", "dev"}

// placeholder reports the known placeholder v is made of, if any: one that
// leaves fewer than 32 other characters (so "CHANGE-ME", "dev-admin-token"
// and "k1:CHANGE_ME_base64_32_bytes" are placeholders, while a random value
// that happens to contain "dev" is not).
func placeholder(v string) (string, bool) {
	low := strings.NewReplacer("-", "_", " ", "_").Replace(strings.ToLower(v))
	for _, p := range placeholders {
		if strings.Contains(low, p) && len(strings.ReplaceAll(low, p, "")) < 32 {
			return p, true
		}
	}
	return "", false
}

// StrongSecret refuses values that cannot hold 32 random bytes: a known
// placeholder, shorter than 32 characters, or too few distinct characters
// to be random (an all-zero or repeated pattern).
func StrongSecret(v string) error {
	if p, ok := placeholder(v); ok {
		return fmt.Errorf("is a placeholder (%q); generate one, e.g. openssl rand -hex 32", p)
	}
	if len(v) < 32 {
		return fmt.Errorf("must be at least 32 random bytes (got %d characters)", len(v))
	}
	distinct := map[rune]bool{}
	for _, r := range v {
		distinct[r] = true
	}
	if len(distinct) < 10 {
		return fmt.Errorf("has only %d distinct characters: not random; generate one, e.g. openssl rand -hex 32", len(distinct))
	}
	return nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// randomKeys refuses encryption keys with too few distinct bytes to be
// random: 32 random bytes hold about 30 distinct values, a key typed by
// hand or a repeated pattern far fewer. (secretbox.ParseKeys has already
// refused malformed and all-zero keys.)
func randomKeys(s string) error {
	for _, entry := range strings.Split(s, ",") {
		id, enc, _ := strings.Cut(strings.TrimSpace(entry), ":")
		key, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			key, _ = base64.RawStdEncoding.DecodeString(enc)
		}
		distinct := map[byte]bool{}
		for _, b := range key {
			distinct[b] = true
		}
		if len(distinct) < 12 {
			return fmt.Errorf("key %q has only %d distinct bytes: not random; generate one, e.g. openssl rand -base64 32", id, len(distinct))
		}
	}
	return nil
}

// parsePrefix reads a CIDR, or a single address as its own /32 or /128.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// maskDSN prints a database or Redis URL without its password: the
// userinfo password and any password-like query parameter become ****.
// Anything that is not a clean URL (a key=value DSN, a value that does not
// parse) is not printed at all, as it may hold a password in any form.
func maskDSN(v string) string {
	if v == "" {
		return "(unset)"
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return "(set; not a URL, not shown)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "****")
		}
	}
	if q := u.Query(); len(q) > 0 {
		for k := range q {
			if lk := strings.ToLower(k); strings.Contains(lk, "pass") || strings.Contains(lk, "secret") || strings.Contains(lk, "key") || strings.Contains(lk, "token") {
				q.Set(k, "****")
			}
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment, u.RawFragment = "", ""
	return strings.ReplaceAll(u.String(), "%2A%2A%2A%2A", "****")
}

// String prints the configuration with every secret masked.
func (c Config) String() string {
	secret := func(s string) string {
		if s == "" {
			return "(unset)"
		}
		return "****"
	}
	return fmt.Sprintf("addr=%s api_metrics=%s db=%s redis=%s pg_provider=%s pg=%s pg_key=%s admin_token=%s encryption_keys=%s order_ttl=%s pg_timeout=%s callback_allow_private=%v secure_cookies=%v hsts=%v trusted_proxies=%v",
		c.Addr, c.APIMetricsAddr, maskDSN(c.DatabaseURL), maskDSN(c.RedisURL), c.PGProvider, c.PGBaseURL, secret(c.PGSecretKey), secret(c.AdminToken),
		secret(c.EncryptionKeys), c.OrderTTL, c.PGTimeout, c.CallbackAllowPrivate, c.SecureCookies, c.HSTS, c.TrustedProxies)
}

// adminTokens is PAYRAIL_ADMIN_TOKENS then PAYRAIL_ADMIN_TOKEN, each once.
func adminTokens(list, single string) []string {
	var out []string
	for _, t := range append(strings.Split(list, ","), single) {
		if t = strings.TrimSpace(t); t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
