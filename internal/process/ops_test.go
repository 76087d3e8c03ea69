package process_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/config"
	"github.com/payrail/payrail/internal/process"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

func get(t *testing.T, url, token string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	testenv.Must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Item 3 of issue #20: the api's port, which merchants and PGs reach,
// serves no /metrics; its own listener does.
func TestAPIMetricsAreOnTheirOwnListener(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	if status, _, body := get(t, sys.URL+"/metrics", ""); status != http.StatusNotFound {
		t.Errorf("GET /metrics on the api port: %d %.200s, want 404", status, body)
	}
	cfg := sys.Config
	cfg.APIMetricsAddr = "127.0.0.1:0"
	addr, stop := process.ServeAPIMetrics(cfg, sys.API, quiet)
	t.Cleanup(stop)
	if addr == "" {
		t.Fatal("the metrics listener did not start")
	}
	status, _, body := get(t, "http://"+addr+"/metrics", "")
	if status != 200 || !strings.Contains(body, "payrail_http_request_duration_seconds") || !strings.Contains(body, `payrail_orders{status="CREATED"}`) {
		t.Errorf("GET /metrics on the metrics listener: %d %.300s", status, body)
	}
	// Settled orders are business volume, not an operator's gauge.
	if strings.Contains(body, `payrail_orders{status="PAID"}`) {
		t.Errorf("metrics show the number of paid orders")
	}
}

// Item 12 of issue #20: HSTS on every api answer when PAYRAIL_HSTS is on
// (the default outside sandbox mode).
func TestHSTS(t *testing.T) {
	t.Parallel()
	on := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_HSTS": "true"}})
	for _, path := range []string{"/healthz", "/v1/orders", "/no/such/route"} {
		_, h, _ := get(t, on.URL+path, "")
		if got := h.Get("Strict-Transport-Security"); !strings.HasPrefix(got, "max-age=63072000") {
			t.Errorf("GET %s: Strict-Transport-Security %q", path, got)
		}
	}
	off := systest.Start(t, systest.Options{})
	if _, h, _ := get(t, off.URL+"/healthz", ""); h.Get("Strict-Transport-Security") != "" {
		t.Errorf("sandbox mode over plain http sends HSTS by default")
	}
}

// Item 6 of issue #20: the worker's profiles need the admin token, and the
// server has a write timeout a profile cannot outlast.
func TestWorkerProfilesNeedTheAdminToken(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	deps, err := process.Connect(t.Context(), sys.Config)
	testenv.Must(t, err)
	t.Cleanup(deps.Close)
	cfg := sys.Config
	cfg.MetricsAddr = "127.0.0.1:0"
	addr, stop := process.ServeWorkerMetrics(cfg, process.NewWorker(cfg, deps, quiet), quiet)
	t.Cleanup(stop)
	if addr == "" {
		t.Fatal("the worker metrics listener did not start")
	}
	base := "http://" + addr
	if status, _, _ := get(t, base+"/metrics", ""); status != 200 {
		t.Errorf("GET /metrics: %d, want 200 without a token (Prometheus)", status)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=2", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1", "/debug/pprof/symbol"} {
		for _, token := range []string{"", "wrong-token-0123456789", systest.AdminToken[:10]} {
			if status, _, body := get(t, base+path, token); status != http.StatusUnauthorized {
				t.Errorf("GET %s with token %q: %d %.100s, want 401", path, token, status, body)
			}
		}
	}
	if status, _, body := get(t, base+"/debug/pprof/", systest.AdminToken); status != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/ with the admin token: %d %.100s", status, body)
	}
	// A long profile is refused at once instead of holding the connection
	// (the client gives up after 5 s).
	for _, path := range []string{"/debug/pprof/profile?seconds=600", "/debug/pprof/heap?seconds=600", "/debug/pprof/profile?seconds=1e9"} {
		if status, _, body := get(t, base+path, systest.AdminToken); status != http.StatusBadRequest {
			t.Errorf("GET %s: %d %.100s, want 400", path, status, body)
		}
	}
	if d := process.OpsWriteTimeout(); d <= 0 || d > time.Minute {
		t.Errorf("the metrics servers' WriteTimeout is %s", d)
	}
}

func TestWorkerProfilesAreOffWithoutAnAdminToken(t *testing.T) {
	t.Parallel()
	h := process.WorkerOpsHandler(config.Config{}, http.NotFoundHandler())
	for _, auth := range []string{"", "Bearer ", "Bearer x"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/debug/pprof/", nil)
		req.Header.Set("Authorization", auth)
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("no admin token configured, Authorization %q: %d, want 401", auth, rec.Code)
		}
	}
}
