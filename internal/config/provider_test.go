package config_test

import (
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/config"
)

// sandboxEnv is a valid sandbox configuration; tests change one thing.
func sandboxEnv() map[string]string {
	return map[string]string{
		"PAYRAIL_ENCRYPTION_KEYS":   "k1:66HhDdPQSLmu6kaAZ+TjdEluvC4I/22GAgKZdumnwu0=",
		"PAYRAIL_PG_PROVIDER":       "mockpg",
		"PAYRAIL_PG_WEBHOOK_SECRET": "whsec_9b3e5a1f70c24d86e1a2b3c4d5e6f708",
	}
}

func load(env map[string]string) error {
	_, err := config.Load(func(k string) string { return env[k] })
	return err
}

// The mockpg door and its secret exist only in sandbox mode, never next
// to TossPayments, and the secret must be strong.
func TestProviderAndWebhookSecret(t *testing.T) {
	t.Parallel()
	if err := load(sandboxEnv()); err != nil && strings.Contains(err.Error(), "PAYRAIL_PG_") {
		t.Fatalf("valid sandbox config refused: %v", err)
	}
	for _, tc := range []struct {
		name, want string
		change     map[string]string
	}{
		{"toss with mockpg's webhook secret", "PAYRAIL_PG_WEBHOOK_SECRET", map[string]string{"PAYRAIL_PG_PROVIDER": "toss"}},
		{"default provider is toss", "PAYRAIL_PG_WEBHOOK_SECRET", map[string]string{"PAYRAIL_PG_PROVIDER": ""}},
		{"sandbox pointed at Toss", "PAYRAIL_PG_PROVIDER", map[string]string{"PAYRAIL_PG_BASE_URL": "https://api.tosspayments.com"}},
		{"sandbox without a secret", "PAYRAIL_PG_WEBHOOK_SECRET", map[string]string{"PAYRAIL_PG_WEBHOOK_SECRET": ""}},
		{"short secret", "PAYRAIL_PG_WEBHOOK_SECRET", map[string]string{"PAYRAIL_PG_WEBHOOK_SECRET": "whsec_short"}},
		{"placeholder secret", "PAYRAIL_PG_WEBHOOK_SECRET", map[string]string{"PAYRAIL_PG_WEBHOOK_SECRET": "CHANGE_ME_CHANGE_ME_CHANGE_ME_CHANGE_ME"}},
		{"repeated secret", "PAYRAIL_PG_WEBHOOK_SECRET", map[string]string{"PAYRAIL_PG_WEBHOOK_SECRET": strings.Repeat("ab", 32)}},
		{"unknown provider", "PAYRAIL_PG_PROVIDER", map[string]string{"PAYRAIL_PG_PROVIDER": "paypal"}},
	} {
		env := sandboxEnv()
		for k, v := range tc.change {
			env[k] = v
		}
		err := load(env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.want)
		}
	}
	// Toss without the secret is fine as far as the PG settings go.
	env := sandboxEnv()
	env["PAYRAIL_PG_PROVIDER"], env["PAYRAIL_PG_WEBHOOK_SECRET"] = "toss", ""
	if err := load(env); err != nil && strings.Contains(err.Error(), "PAYRAIL_PG_") {
		t.Fatalf("toss config refused: %v", err)
	}
}

func TestStrongSecret(t *testing.T) {
	t.Parallel()
	for v, ok := range map[string]bool{
		"4f1c9b2e7a6d03851fe2c4b9a07d6e134f1c9b2e7a6d03851fe2c4b9a07d6e13": true,
		"whsec_9b3e5a1f70c24d86e1a2b3c4d5e6f708":                           true,
		"short":                                                            false,
		strings.Repeat("0", 64):                                            false,
		"CHANGE_ME_64_hex_chars":                                           false,
		"CHANGE_ME_base64_32_bytes_xxxxxxxxxxxxxx":                         false,
	} {
		if err := config.StrongSecret(v); (err == nil) != ok {
			t.Errorf("StrongSecret(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}
