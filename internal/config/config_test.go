package config

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
)

// sandboxEnv is a valid sandbox (mockpg) configuration; prodEnv a valid
// production (toss) one.
func sandboxEnv() map[string]string {
	return map[string]string{
		"PAYRAIL_PG_PROVIDER":       ProviderMockPG,
		"PAYRAIL_PG_WEBHOOK_SECRET": "whsec_4b7e1c9a2f6d08e3b5a1c7f9d2e4b6a8",
		"PAYRAIL_ADMIN_TOKEN":       "test-admin-token-0123456789",
		"PAYRAIL_ENCRYPTION_KEYS":   "t1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
	}
}

func prodEnv() map[string]string {
	return map[string]string{
		"PAYRAIL_PG_PROVIDER":     ProviderToss,
		"PAYRAIL_PG_BASE_URL":     "https://api.tosspayments.com",
		"PAYRAIL_PG_SECRET_KEY":   "live_sk_Lx8QmZ2pV7rT4wY9bN3cK6dF",
		"PAYRAIL_ADMIN_TOKEN":     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"PAYRAIL_ENCRYPTION_KEYS": "k1:q5Yk0cU9l1sWcJm1C1Yw0yM2v3g8bRrZ0bD2o0mQm7Y=",
	}
}

func load(t *testing.T, env map[string]string) (Config, error) {
	t.Helper()
	return Load(func(k string) string { return env[k] })
}

func with(env map[string]string, kv ...string) map[string]string {
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return env
}

func TestValidConfigurationsLoad(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{"sandbox": sandboxEnv(), "production": prodEnv()} {
		if _, err := load(t, env); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Item 9 of issue #20: placeholders, all-zero and low-entropy values are
// refused; outside sandbox mode the admin token needs 32 random bytes.
func TestWeakSecretsAreRefused(t *testing.T) {
	t.Parallel()
	allZero := "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for name, tc := range map[string]struct {
		env  map[string]string
		name string // the variable the error must name
	}{
		"compose's default admin token (sandbox)":  {with(sandboxEnv(), "PAYRAIL_ADMIN_TOKEN", "dev-admin-token-change-me"), "PAYRAIL_ADMIN_TOKEN"},
		"CHANGE-ME admin token (sandbox)":          {with(sandboxEnv(), "PAYRAIL_ADMIN_TOKEN", "CHANGE-ME-CHANGE-ME"), "PAYRAIL_ADMIN_TOKEN"},
		"short admin token (sandbox)":              {with(sandboxEnv(), "PAYRAIL_ADMIN_TOKEN", "Xq3rT9vW1y"), "PAYRAIL_ADMIN_TOKEN"},
		"k8s placeholder admin token":              {with(prodEnv(), "PAYRAIL_ADMIN_TOKEN", "CHANGE_ME_64_hex_chars"), "PAYRAIL_ADMIN_TOKEN"},
		"27-character admin token (production)":    {with(prodEnv(), "PAYRAIL_ADMIN_TOKEN", "test-admin-token-0123456789"), "PAYRAIL_ADMIN_TOKEN"},
		"repeated admin token (production)":        {with(prodEnv(), "PAYRAIL_ADMIN_TOKEN", strings.Repeat("ab12", 10)), "PAYRAIL_ADMIN_TOKEN"},
		"all-zero key (sandbox)":                   {with(sandboxEnv(), "PAYRAIL_ENCRYPTION_KEYS", allZero), "PAYRAIL_ENCRYPTION_KEYS"},
		"all-zero key (production)":                {with(prodEnv(), "PAYRAIL_ENCRYPTION_KEYS", allZero), "PAYRAIL_ENCRYPTION_KEYS"},
		"all-zero second key":                      {with(prodEnv(), "PAYRAIL_ENCRYPTION_KEYS", prodEnv()["PAYRAIL_ENCRYPTION_KEYS"]+",k0:"+allZero[3:]), "PAYRAIL_ENCRYPTION_KEYS"},
		"low-entropy key (0x0101…)":                {with(prodEnv(), "PAYRAIL_ENCRYPTION_KEYS", "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="), "PAYRAIL_ENCRYPTION_KEYS"},
		"k8s placeholder key":                      {with(prodEnv(), "PAYRAIL_ENCRYPTION_KEYS", "k1:CHANGE_ME_base64_32_bytes"), "PAYRAIL_ENCRYPTION_KEYS"},
		"placeholder database password":            {with(prodEnv(), "PAYRAIL_DATABASE_URL", "postgres://payrail:CHANGE_ME@db.internal:5432/payrail"), "PAYRAIL_DATABASE_URL"},
		"placeholder Redis password":               {with(prodEnv(), "PAYRAIL_REDIS_URL", "rediss://:CHANGE_ME@redis.internal:6379/0"), "PAYRAIL_REDIS_URL"},
		"placeholder PG secret key":                {with(prodEnv(), "PAYRAIL_PG_SECRET_KEY", "CHANGE_ME_live_sk"), "PAYRAIL_PG_SECRET_KEY"},
		"compose's default webhook secret":         {with(sandboxEnv(), "PAYRAIL_PG_WEBHOOK_SECRET", "whsec_compose_dev"), "PAYRAIL_PG_WEBHOOK_SECRET"},
		"placeholder webhook secret (long enough)": {with(sandboxEnv(), "PAYRAIL_PG_WEBHOOK_SECRET", "CHANGE_ME_to_32_random_bytes_hex"), "PAYRAIL_PG_WEBHOOK_SECRET"},
		"weak token in a rotation (production)":    {with(prodEnv(), "PAYRAIL_ADMIN_TOKENS", "test-admin-token-0123456789"), "PAYRAIL_ADMIN_TOKENS"},
		"three tokens in a rotation":               {with(prodEnv(), "PAYRAIL_ADMIN_TOKENS", strongToken(1)+","+strongToken(2)+","+strongToken(3)), "PAYRAIL_ADMIN_TOKENS"},
	} {
		_, err := load(t, tc.env)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%s: error does not name %s: %v", name, tc.name, err)
		}
	}
}

func TestPlaceholderMessageIsClear(t *testing.T) {
	t.Parallel()
	_, err := load(t, with(prodEnv(), "PAYRAIL_ADMIN_TOKEN", "CHANGE_ME (openssl rand -hex 32)"))
	if err == nil || !strings.Contains(err.Error(), "PAYRAIL_ADMIN_TOKEN: is a placeholder") {
		t.Fatalf("err = %v, want PAYRAIL_ADMIN_TOKEN: is a placeholder", err)
	}
}

// Item 7 of issue #20: errors name the variable, never its value, and
// String never prints a password.
func TestURLsAreNeverPrinted(t *testing.T) {
	t.Parallel()
	const pw = "Sup3rS3cretPw"
	for name, v := range map[string]string{
		"key=value DSN":     "host=db.internal user=payrail password=" + pw + " dbname=payrail",
		"unparsable URL":    "postgres://payrail:" + pw + "%zz@db.internal/payrail",
		"bad port":          "postgres://payrail:" + pw + "@db.internal:port/payrail",
		"no scheme":         "payrail:" + pw + "@db.internal/payrail",
		"password in query": "postgres://db.internal/payrail?user=payrail&password=" + pw,
	} {
		for _, variable := range []string{"PAYRAIL_DATABASE_URL", "PAYRAIL_REDIS_URL"} {
			c, err := load(t, with(sandboxEnv(), variable, v))
			if err != nil && strings.Contains(err.Error(), pw) {
				t.Errorf("%s in %s: the error shows the password: %v", name, variable, err)
			}
			if name != "password in query" && (err == nil || !strings.Contains(err.Error(), variable)) {
				t.Errorf("%s in %s: err = %v, want one naming %s", name, variable, err, variable)
			}
			if s := c.String(); strings.Contains(s, pw) {
				t.Errorf("%s in %s: String shows the password: %s", name, variable, s)
			}
		}
	}
	c, err := load(t, with(sandboxEnv(), "PAYRAIL_DATABASE_URL", "postgres://payrail:"+pw+"@db.internal/payrail?sslmode=disable"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.String(); strings.Contains(s, pw) || !strings.Contains(s, "db=postgres://payrail:****@db.internal/payrail?sslmode=disable") {
		t.Errorf("String = %s, want the URL with its password masked", s)
	}
}

// Item 12 of issue #20: HSTS and Secure cookies on by default outside
// sandbox mode; forwarded headers believed only from listed proxies.
func TestHTTPSDefaults(t *testing.T) {
	t.Parallel()
	prod, err := load(t, prodEnv())
	if err != nil {
		t.Fatal(err)
	}
	if !prod.HSTS || !prod.SecureCookies || len(prod.TrustedProxies) != 0 {
		t.Errorf("production: HSTS %v SecureCookies %v TrustedProxies %v, want on, on, none", prod.HSTS, prod.SecureCookies, prod.TrustedProxies)
	}
	sb, err := load(t, sandboxEnv())
	if err != nil {
		t.Fatal(err)
	}
	if sb.HSTS || sb.SecureCookies {
		t.Errorf("sandbox: HSTS %v SecureCookies %v, want off (local dev is plain http)", sb.HSTS, sb.SecureCookies)
	}
	c, err := load(t, with(sandboxEnv(), "PAYRAIL_HSTS", "true", "PAYRAIL_SECURE_COOKIES", "true", "PAYRAIL_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,::1"))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("::1/128")}
	if !c.HSTS || !c.SecureCookies || len(c.TrustedProxies) != 3 || c.TrustedProxies[0] != want[0] || c.TrustedProxies[1] != want[1] || c.TrustedProxies[2] != want[2] {
		t.Errorf("overrides: HSTS %v SecureCookies %v TrustedProxies %v", c.HSTS, c.SecureCookies, c.TrustedProxies)
	}
	for _, env := range []map[string]string{
		with(prodEnv(), "PAYRAIL_HSTS", "yes"),
		with(prodEnv(), "PAYRAIL_TRUSTED_PROXIES", "10.0.0.0/33"),
		with(prodEnv(), "PAYRAIL_TRUSTED_PROXIES", "proxy.internal"),
	} {
		if _, err := load(t, env); err == nil {
			t.Errorf("%v: accepted", env)
		}
	}
}

func TestAPIMetricsAddr(t *testing.T) {
	t.Parallel()
	c, err := load(t, sandboxEnv())
	if err != nil {
		t.Fatal(err)
	}
	if c.APIMetricsAddr != "127.0.0.1:9091" || c.Addr == c.APIMetricsAddr {
		t.Errorf("APIMetricsAddr = %q, want 127.0.0.1:9091", c.APIMetricsAddr)
	}
}

// manifestEnv reads the PAYRAIL_* values of a manifest's `KEY: "value"`
// lines.
func manifestEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(PAYRAIL_[A-Z_]+): "(.*)"\s*$`).FindAllStringSubmatch(string(b), -1) {
		env[m[1]] = m[2]
	}
	return env
}

// deployments/k8s is production: every placeholder Secret value is
// refused with a message that says so, and mockpg's secret is not there.
func TestK8sPlaceholdersAreRefused(t *testing.T) {
	t.Parallel()
	env := manifestEnv(t, "../../deployments/k8s/config.yaml")
	if env["PAYRAIL_PG_PROVIDER"] != ProviderToss {
		t.Errorf("PAYRAIL_PG_PROVIDER = %q, want toss", env["PAYRAIL_PG_PROVIDER"])
	}
	if _, ok := env["PAYRAIL_PG_WEBHOOK_SECRET"]; ok {
		t.Error("the manifest sets mockpg's PAYRAIL_PG_WEBHOOK_SECRET")
	}
	_, err := load(t, env)
	if err == nil {
		t.Fatal("the placeholder Secret is accepted")
	}
	for _, name := range []string{"PAYRAIL_ADMIN_TOKEN", "PAYRAIL_ENCRYPTION_KEYS", "PAYRAIL_DATABASE_URL", "PAYRAIL_DATABASE_LISTEN_URL", "PAYRAIL_REDIS_URL", "PAYRAIL_PG_SECRET_KEY"} {
		if !regexp.MustCompile(`(?m)^\s*` + name + `: .*placeholder`).MatchString(err.Error()) {
			t.Errorf("%s is not refused as a placeholder:\n%v", name, err)
		}
	}
	// Filled in, it loads.
	for k, v := range prodEnv() {
		env[k] = v
	}
	env["PAYRAIL_DATABASE_URL"] = "postgres://payrail:Vd8Qm2LpX7@pgbouncer.payrail:6432/payrail?sslmode=require"
	env["PAYRAIL_DATABASE_LISTEN_URL"] = "postgres://payrail:Vd8Qm2LpX7@db.internal:5432/payrail?sslmode=verify-full"
	env["PAYRAIL_REDIS_URL"] = "rediss://:Vd8Qm2LpX7@redis.internal:6379/0"
	if _, err := load(t, env); err != nil {
		t.Errorf("the filled-in manifest: %v", err)
	}
}

func strongToken(seed byte) string {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(i*37+int(seed)*101) ^ 0x5a
	}
	return fmt.Sprintf("%x", b)
}

// PAYRAIL_ADMIN_TOKENS adds a second token during a rotation; the old
// single variable keeps working, and each token counts once.
func TestAdminTokenRotation(t *testing.T) {
	t.Parallel()
	oldTok, newTok := strongToken(7), strongToken(9)
	c, err := load(t, with(with(prodEnv(), "PAYRAIL_ADMIN_TOKEN", oldTok), "PAYRAIL_ADMIN_TOKENS", newTok))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.AdminTokens) != 2 || c.AdminTokens[0] != newTok || c.AdminTokens[1] != oldTok {
		t.Fatalf("tokens = %d, want the new then the old", len(c.AdminTokens))
	}
	c, err = load(t, with(with(prodEnv(), "PAYRAIL_ADMIN_TOKEN", oldTok), "PAYRAIL_ADMIN_TOKENS", oldTok+", "+newTok))
	if err != nil || len(c.AdminTokens) != 2 {
		t.Fatalf("a token named twice counts once: %d tokens, %v", len(c.AdminTokens), err)
	}
	if strings.Contains(c.String(), oldTok) || strings.Contains(c.String(), newTok) {
		t.Fatal("Config.String prints an admin token")
	}
}

// Issue 17: a Redis Cluster is one topology, on database 0.
func TestRedisTopologies(t *testing.T) {
	t.Parallel()
	c, err := load(t, with(sandboxEnv(), "PAYRAIL_REDIS_CLUSTER_ADDRS", "127.0.0.1:7001, 127.0.0.1:7002,", "PAYRAIL_REDIS_URL", "redis://127.0.0.1:7001/0"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.RedisClusterAddrs, ","); got != "127.0.0.1:7001,127.0.0.1:7002" {
		t.Fatalf("cluster addrs = %q", got)
	}
	for name, env := range map[string]map[string]string{
		"cluster on db 3":     with(sandboxEnv(), "PAYRAIL_REDIS_CLUSTER_ADDRS", "127.0.0.1:7001", "PAYRAIL_REDIS_URL", "redis://127.0.0.1:7001/3"),
		"cluster + sentinel":  with(sandboxEnv(), "PAYRAIL_REDIS_CLUSTER_ADDRS", "127.0.0.1:7001", "PAYRAIL_REDIS_SENTINEL_ADDRS", "127.0.0.1:26379", "PAYRAIL_REDIS_MASTER_NAME", "m"),
		"sentinel, no master": with(sandboxEnv(), "PAYRAIL_REDIS_SENTINEL_ADDRS", "127.0.0.1:26379"),
	} {
		if _, err := load(t, env); err == nil {
			t.Errorf("%s: loaded, want refused", name)
		}
	}
}

// PAYRAIL_RATE_LEASE: 100 ms by default, 0/off turns drawing ahead off,
// and more than a second (tokens held that long) is refused.
func TestRateLease(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]string{"": "100ms", "0": "0s", "off": "0s", "250ms": "250ms"} {
		c, err := load(t, with(sandboxEnv(), "PAYRAIL_RATE_LEASE", v))
		if err != nil || c.RateLease.String() != want {
			t.Errorf("PAYRAIL_RATE_LEASE=%q: %s %v, want %s", v, c.RateLease, err, want)
		}
	}
	for _, v := range []string{"2s", "-1s", "fast"} {
		if _, err := load(t, with(sandboxEnv(), "PAYRAIL_RATE_LEASE", v)); err == nil || !strings.Contains(err.Error(), "PAYRAIL_RATE_LEASE") {
			t.Errorf("PAYRAIL_RATE_LEASE=%q loaded (%v)", v, err)
		}
	}
}
