// Package systest assembles a whole payrail in process for end-to-end tests:
// a fresh database and Redis index, the real api handler on a real listener,
// the real worker (asynq server), and mockpg as a real HTTP server. Only the
// merchant and the PG are stand-ins, as they are outside the system.
package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/config"
	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/process"
	"github.com/payrail/payrail/internal/testenv"
)

// AdminToken is the admin bearer token of every test system.
const AdminToken = "test_admin_9c1f4e7b2a5d8036e1f2a3b4c5d6e7f8"

// WebhookSecret is the system's mockpg webhook secret (sandbox mode wants
// 32 random bytes).
const WebhookSecret = "whsec_systest_9b3e5a1f70c24d86e1a2b3c4d5e6f708"

// Options shapes a test system.
type Options struct {
	// Worker starts an in-process worker.
	Worker bool
	// Env overrides PAYRAIL_* settings.
	Env map[string]string
	// Faults are mockpg's faults at start.
	Faults mockpg.Faults
	// VirtualAccountDue is mockpg's virtual account due date (default 72h).
	VirtualAccountDue time.Duration
	// PGNow is mockpg's clock.
	PGNow func() time.Time
	// WorkerHook adjusts an in-process worker before it starts.
	WorkerHook func(*process.Worker)
	// PgBouncerPool, when set, puts a real pgbouncer (transaction mode,
	// this many server connections) between payrail and its database, with
	// Prefer: wait's LISTEN on a direct connection, as docs/scaling.md says.
	PgBouncerPool int
}

// System is a running payrail for one test.
type System struct {
	T       testing.TB
	opt     Options
	DB      testenv.Database
	Redis   testenv.Redis
	Bouncer *testenv.PgBouncer // nil unless Options.PgBouncerPool
	Config  config.Config
	Env     map[string]string
	Deps    *process.Deps
	API     *process.API
	URL     string
	PG      *mockpg.Server
	PGURL   string
	Worker  *process.Worker
	Log     *slog.Logger
	cancel  context.CancelFunc
	stopped chan struct{}
}

// Start builds and starts a system; it stops when t ends.
func Start(t testing.TB, opt Options) *System {
	t.Helper()
	s := &System{T: t, opt: opt, DB: testenv.NewDatabase(t), Redis: testenv.NewRedis(t)}
	level := slog.LevelWarn
	if os.Getenv("PAYRAIL_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	s.Log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	s.PG = mockpg.New(mockpg.Config{SecretKey: "test_sk_systest", WebhookSecret: WebhookSecret, Faults: opt.Faults, Now: opt.PGNow, VirtualAccountDue: opt.VirtualAccountDue})
	pgSrv := httptest.NewServer(s.PG)
	s.PGURL = pgSrv.URL
	t.Cleanup(func() { pgSrv.Close(); s.PG.Close() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err)
	s.URL = "http://" + ln.Addr().String()
	// mockpg tells payrail of every status change, as Toss does.
	s.PG.SetWebhookURL(s.URL + "/pg/webhooks/mockpg")
	s.Env = map[string]string{
		"PAYRAIL_DATABASE_URL":           s.DB.URL,
		"PAYRAIL_REDIS_URL":              s.Redis.URL,
		"PAYRAIL_ADMIN_TOKEN":            AdminToken,
		"PAYRAIL_ENCRYPTION_KEYS":        testenv.KeysString,
		"PAYRAIL_PG_BASE_URL":            s.PGURL,
		"PAYRAIL_PG_SECRET_KEY":          "test_sk_systest",
		"PAYRAIL_PG_PROVIDER":            "mockpg",
		"PAYRAIL_PG_WEBHOOK_SECRET":      WebhookSecret,
		"PAYRAIL_CHECKOUT_URL":           s.PGURL + "/checkout",
		"PAYRAIL_CALLBACK_ALLOW_PRIVATE": "true",
		"PAYRAIL_OPS_REQUIRE_TOTP":       "false",
		"PAYRAIL_PG_TIMEOUT":             "2s",
		"PAYRAIL_SWEEP_INTERVAL":         "1s",
		"PAYRAIL_DB_MAX_CONNS":           "20",
		"PAYRAIL_DB_STATEMENT_CACHE":     "true",
		"PAYRAIL_WORKER_CONCURRENCY":     "10",
		"PAYRAIL_METRICS_ADDR":           "127.0.0.1:0",
		"PAYRAIL_CONFIRM_BACKOFF":        "50ms",
		"PAYRAIL_CONFIRM_BACKOFF_MAX":    "400ms",
		"PAYRAIL_RECONCILE_BACKOFF":      "200ms",
		"PAYRAIL_RECONCILE_BACKOFF_MAX":  "1s",
		"PAYRAIL_CONFIRM_STUCK_AFTER":    "2s",
		"PAYRAIL_PG_LAG_WINDOW":          "1s",
	}
	if opt.PgBouncerPool > 0 {
		s.Bouncer = testenv.StartPgBouncer(t, s.DB.URL, opt.PgBouncerPool)
		s.Env["PAYRAIL_DATABASE_URL"] = s.Bouncer.URL(s.DB.URL)
		s.Env["PAYRAIL_DATABASE_LISTEN_URL"] = s.DB.URL
		s.Env["PAYRAIL_DB_STATEMENT_CACHE"] = "false" // pgbouncer 1.18, transaction mode
	}
	for k, v := range opt.Env {
		s.Env[k] = v
	}
	s.Config, err = config.Load(func(k string) string { return s.Env[k] })
	testenv.Must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.Deps, err = process.Connect(ctx, s.Config)
	testenv.Must(t, err)
	s.API = process.NewAPI(s.Config, s.Deps, s.Log)
	testenv.Must(t, process.MountOps(ctx, s.Config, s.API, s.Log))
	s.stopped = make(chan struct{})
	go func() {
		defer close(s.stopped)
		if err := s.API.Serve(ctx, ln); err != nil && err != http.ErrServerClosed {
			t.Errorf("api serve: %v", err)
		}
	}()
	// Registered before any worker, so workers stop before Redis closes.
	t.Cleanup(s.stop)
	if opt.Worker {
		s.StartWorker()
	}
	return s
}

// StartWorker starts an in-process worker (another one, if one runs).
func (s *System) StartWorker() *process.Worker {
	// Its own pools, as a separate process would have.
	deps, err := process.Connect(context.Background(), s.Config)
	testenv.Must(s.T, err)
	w := process.NewWorker(s.Config, deps, s.Log)
	if s.opt.WorkerHook != nil {
		s.opt.WorkerHook(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			s.T.Errorf("worker: %v", err)
		}
	}()
	s.T.Cleanup(func() { cancel(); <-done; deps.Close() })
	if s.Worker == nil {
		s.Worker = w
	}
	return w
}

func (s *System) stop() {
	s.cancel()
	<-s.stopped
	s.Deps.Close()
}

// merchantClient keeps up to 64 idle connections per api (the default
// transport keeps 2): a test's concurrent clients otherwise dial for
// nearly every request, and on a loaded machine the dials spread what the
// test sends at once (the slow-start test's flood).
var merchantClient = &http.Client{Transport: func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}()}

// Merchant is a merchant's credentials.
type Merchant struct {
	sys              *System
	MerchantID       string `json:"merchantId"`
	ClientID         string `json:"clientId"`
	ClientSecret     string `json:"clientSecret"`
	ClientSecretID   string `json:"clientSecretId"`
	CallbackSecret   string `json:"callbackSecret"`
	CallbackSecretID string `json:"callbackSecretId"`
}

// Admin sends an admin request.
func (s *System) Admin(method, path string, body any) (int, []byte) {
	s.T.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	testenv.Must(s.T, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// NewMerchant creates a merchant whose callbacks go to callbackURL.
func (s *System) NewMerchant(callbackURL string) *Merchant {
	s.T.Helper()
	if callbackURL == "" {
		callbackURL = "http://127.0.0.1:9/callbacks"
	}
	status, b := s.Admin("POST", "/admin/merchants", map[string]any{"name": "Test Shop", "callbackUrl": callbackURL, "returnUrl": "http://127.0.0.1:9/return"})
	if status != 201 {
		s.T.Fatalf("create merchant: %d %s", status, b)
	}
	m := &Merchant{sys: s}
	testenv.Must(s.T, json.Unmarshal(b, m))
	return m
}

// Response is a merchant request's answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r Response) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// Code is the problem code of an error answer.
func (r Response) Code() string {
	c, _ := r.JSON()["code"].(string)
	return c
}

// Do signs (as this merchant) and sends a request.
func (m *Merchant) Do(method, path string, body any, hdr ...string) Response {
	m.sys.T.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		raw, _ = json.Marshal(b)
	}
	req, err := http.NewRequest(method, m.sys.URL+path, bytes.NewReader(raw))
	testenv.Must(m.sys.T, err)
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	testenv.Must(m.sys.T, auth.SignRequest(req, m.ClientID, m.ClientSecret, time.Now()))
	resp, err := merchantClient.Do(req)
	if err != nil {
		m.sys.T.Errorf("%s %s: %v", method, path, err)
		return Response{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Order is a created order with its one-time token.
type Order struct {
	OrderID      string `json:"orderId"`
	PaymentToken string `json:"paymentToken"`
	Amount       int64  `json:"amount"`
	Status       string `json:"status"`
}

// CreateOrder creates an order for amount.
func (m *Merchant) CreateOrder(amount int64) Order {
	m.sys.T.Helper()
	r := m.Do("POST", "/v1/orders", map[string]any{"amount": amount, "orderName": "Test order"})
	if r.Status != 201 {
		m.sys.T.Fatalf("create order: %d %s", r.Status, r.Body)
	}
	var o Order
	testenv.Must(m.sys.T, json.Unmarshal(r.Body, &o))
	return o
}

// PGClient is a client of the system's mockpg, for acting as the PG's
// console or as a third party in tests.
func (s *System) PGClient() *pgclient.Client { return pgclient.New(s.PGURL, "test_sk_systest", nil) }

// SignedPGWebhook posts a mockpg-signed PAYMENT_STATUS_CHANGED event with the
// given event id; data is the payment object.
func (s *System) SignedPGWebhook(eventID string, data map[string]any) int {
	s.T.Helper()
	body, _ := json.Marshal(map[string]any{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-11-24T00:00:00.000", "data": data})
	req, _ := http.NewRequest("POST", s.URL+"/pg/webhooks/mockpg", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set(mockpg.SignatureHeader, mockpg.Sign(WebhookSecret, ts, eventID, body))
	req.Header.Set(mockpg.TimestampHeader, ts)
	req.Header.Set(mockpg.EventIDHeader, eventID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.T.Errorf("post webhook: %v", err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Session opens a mockpg session for the order and returns its paymentKey.
func (s *System) Session(o Order) string {
	s.T.Helper()
	key, err := s.PG.CreateSession(o.OrderID, o.Amount, "Test order")
	testenv.Must(s.T, err)
	return key
}

// Confirm posts a confirm.
func (m *Merchant) Confirm(o Order, paymentKey string, hdr ...string) Response {
	return m.Do("POST", "/v1/orders/"+o.OrderID+"/confirm", map[string]any{"paymentKey": paymentKey, "amount": o.Amount, "paymentToken": o.PaymentToken}, hdr...)
}

// Status reads an order's status through the API.
func (m *Merchant) Status(orderID string) string {
	r := m.Do("GET", "/v1/orders/"+orderID, nil)
	st, _ := r.JSON()["status"].(string)
	return st
}

// WaitStatus polls until the order reaches want.
func (m *Merchant) WaitStatus(orderID, want string, timeout time.Duration) {
	m.sys.T.Helper()
	testenv.Poll(m.sys.T, timeout, "order "+orderID+" to become "+want, func() bool {
		return m.Status(orderID) == want
	})
}

// QuietPGWebhooks stops the PG's webhooks and waits until those it had
// already queued (the approval of a payment just made) have reached
// payrail and been settled there. Without the wait, a late approval
// notice, which payrail answers with a lookup of the PG's current state,
// could tell payrail of what the test does at the PG next (a console
// cancel) by a path the test means to be closed.
func (s *System) QuietPGWebhooks() {
	s.T.Helper()
	s.PG.SetWebhookURL("")
	testenv.Poll(s.T, 30*time.Second, "the PG's queued webhooks to be sent", func() bool { return s.PG.WebhooksPending() == 0 })
	testenv.Poll(s.T, 30*time.Second, "payrail to settle the PG's webhooks", func() bool {
		return s.Count(`SELECT count(*) FROM pg_events WHERE state = 'RECEIVED'`) == 0
	})
}

// Count runs a count query on the test database.
func (s *System) Count(query string, args ...any) int {
	s.T.Helper()
	var n int
	testenv.Must(s.T, s.DB.DB.Get(&n, query, args...))
	return n
}

// Exec runs a statement on the system's database (test set-up only).
func (s *System) Exec(query string, args ...any) error {
	_, err := s.DB.DB.Exec(query, args...)
	return err
}

// VASession opens a mockpg 가상계좌 session for the order: its confirm
// issues a virtual account that waits for Deposit.
func (s *System) VASession(o Order) string {
	s.T.Helper()
	key, err := s.PG.CreateSessionMethod(o.OrderID, o.Amount, "Test order", mockpg.MethodVirtualAccount)
	testenv.Must(s.T, err)
	return key
}

// Deposit is the buyer's transfer into the payment's virtual account.
func (s *System) Deposit(paymentKey string) {
	s.T.Helper()
	_, err := s.PG.Deposit(paymentKey)
	testenv.Must(s.T, err)
}

// DepositCallback posts a Toss-shaped DEPOSIT_CALLBACK (unsigned, to the
// toss door) and returns the status.
func (s *System) DepositCallback(orderID, secret, status string) int {
	s.T.Helper()
	body, _ := json.Marshal(map[string]any{"createdAt": "2026-12-03T10:00:00.000", "secret": secret, "status": status,
		"transactionKey": "ttx_test", "orderId": orderID})
	resp, err := http.Post(s.URL+"/pg/webhooks/toss", "application/json", bytes.NewReader(body))
	if err != nil {
		s.T.Errorf("post deposit callback: %v", err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
