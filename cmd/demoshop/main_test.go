package main

import (
	"log/slog"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8090" || c.PublicURL != "http://127.0.0.1:8090" || c.APIURL != "http://127.0.0.1:8080" {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestParseConfigPublicURLFallsBackToDemoshopURL(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, env(map[string]string{"DEMOSHOP_URL": "http://demoshop:8090"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "http://demoshop:8090" {
		t.Fatalf("PublicURL = %q", c.PublicURL)
	}
	c, _ = parseConfig(nil, env(map[string]string{"DEMOSHOP_URL": "http://a", "DEMOSHOP_PUBLIC_URL": "http://b"}))
	if c.PublicURL != "http://b" {
		t.Fatalf("PublicURL = %q, want DEMOSHOP_PUBLIC_URL to win", c.PublicURL)
	}
}

func TestParseConfigRefusesHalfCredentials(t *testing.T) {
	t.Parallel()
	if _, err := parseConfig(nil, env(map[string]string{"DEMOSHOP_CLIENT_ID": "ck_x"})); err == nil {
		t.Fatal("want an error for a client id without a secret")
	}
	if _, err := parseConfig([]string{"extra"}, env(nil)); err == nil {
		t.Fatal("want an error for arguments")
	}
}

func TestConfigLogValueMasksSecrets(t *testing.T) {
	t.Parallel()
	secrets := []string{"Kd93hQx7admintoken", "cs_Vb72LmQ4secret", "whsec_Pw81ZrT6value"}
	c := config{AdminToken: secrets[0], ClientSecret: secrets[1], CallbackSecret: secrets[2]}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "config", c)
	// Not even a prefix: only whether each is set.
	for _, secret := range secrets {
		for n := 4; n <= len(secret); n++ {
			if strings.Contains(b.String(), secret[:n]) {
				t.Fatalf("log shows %q, a prefix of a secret: %s", secret[:n], b.String())
			}
		}
	}
	for _, want := range []string{`"adminToken":"set"`, `"clientSecret":"set"`, `"callbackSecret":"set"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("log lacks %s: %s", want, b.String())
		}
	}
	b.Reset()
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "config", config{})
	if !strings.Contains(b.String(), `"adminToken":"unset"`) {
		t.Errorf("an empty token is not shown as unset: %s", b.String())
	}
}
