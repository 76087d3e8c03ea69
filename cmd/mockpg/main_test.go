package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRunServesAndShutsDown(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"MOCKPG_ADDR":           "127.0.0.1:0",
		"MOCKPG_FAULTS":         `{"declineRate":0.25,"seed":7}`,
		"MOCKPG_WEBHOOK_SECRET": hookSecret,
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-secret-key", "test_sk_flag"}, func(k string) string { return env[k] }, pw)
		pw.Close()
	}()

	// The first log line announces the URL; secrets appear masked.
	sc := bufio.NewScanner(pr)
	if !sc.Scan() {
		t.Fatalf("no log line: %v", sc.Err())
	}
	var line struct {
		Msg    string         `json:"msg"`
		URL    string         `json:"url"`
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Msg != "listening" {
		t.Fatalf("first line %s (%v)", sc.Bytes(), err)
	}
	// Secrets show as set or unset, never a prefix of their value.
	if line.Config["secretKey"] != "set" || line.Config["webhookSecret"] != "set" {
		t.Errorf("secrets not shown as set: %s", sc.Text())
	}
	noPrefix(t, sc.Text(), "test_sk_flag", hookSecret)
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	resp, err := http.Get(line.URL + "/sandbox/faults")
	if err != nil {
		t.Fatal(err)
	}
	var faults map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&faults)
	resp.Body.Close()
	if faults["declineRate"] != 0.25 || faults["seed"] != 7.0 {
		t.Errorf("faults from MOCKPG_FAULTS not applied: %v", faults)
	}
	req, _ := http.NewRequest("GET", line.URL+"/v1/payments/x", nil)
	req.SetBasicAuth("test_sk_flag", "")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the -secret-key flag was not used: %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

const hookSecret = "whsec_Zq8rT3vW1yB6nM4kP0sX9cJ2"

// noPrefix fails t when out holds the first 4 or more characters of a secret.
func noPrefix(t *testing.T, out string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for n := 4; n <= len(s); n++ {
			if strings.Contains(out, s[:n]) {
				t.Errorf("output shows %q, a prefix of a secret: %s", s[:n], out)
				break
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{
		"bad ttl":       {"MOCKPG_SESSION_TTL": "ten minutes"},
		"negative ttl":  {"MOCKPG_SESSION_TTL": "-1m"},
		"bad faults":    {"MOCKPG_FAULTS": `{"declineRate":2}`},
		"faults typo":   {"MOCKPG_FAULTS": `{"declineRatio":0.5}`},
		"faults syntax": {"MOCKPG_FAULTS": `{`},
	} {
		if _, err := parseConfig(nil, func(k string) string { return env[k] }); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c, err := parseConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8070" || c.SecretKey != "test_sk_mockpg" || c.WebhookSecret != "whsec_mockpg_dev" || c.SessionTTL != 10*time.Minute || c.WebhookURL != "" {
		t.Errorf("defaults %+v", c)
	}
}
