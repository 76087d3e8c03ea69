package chaos

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/callback"
	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/testenv"
	"github.com/payrail/payrail/internal/testredis"
)

const (
	adminToken    = "chaos_admin_4e7b2a5d8036e1f2a3b4c5d6e7f89c1f"
	pgSecretKey   = "test_sk_chaos"
	pgHookSecret  = "whsec_chaos_4f1c9b2e7a6d03851fe2c4b9a07d6e13"
	numAPIs       = 2
	numWorkers    = 3
	outageGrace   = 3 * time.Second
	requestTries  = 40
	retryPause    = 250 * time.Millisecond
	callbackSched = "300ms,1s,2s,3s,4s,5s,5s,5s,5s,5s"
)

// scenario is one fault injected into a fresh system under load.
type scenario struct {
	name     string
	payments int
	// duration spreads the load's payments over this long.
	duration time.Duration
	// quiesce bounds the wait for the system to settle after the load.
	quiesce time.Duration
	// privateRedis runs a redis-server of the test's own (restartable)
	// instead of an index of the shared test Redis.
	privateRedis bool
	// privatePG runs a PostgreSQL cluster of the test's own (restartable).
	privatePG bool
	// topology runs Redis as "sentinel" (master, replica, three sentinels)
	// or "cluster" (three masters with a replica each) of the test's own.
	topology string
	// pgReplica runs a private primary with a synchronous streaming replica,
	// both behind a PgBouncer that is the processes' stable address.
	pgReplica bool
	// env overrides PAYRAIL_* for every process.
	env map[string]string
	// faults are mockpg's faults while the load runs.
	faults mockpg.Faults
	// setup runs before the processes start (e.g. to put toxiproxy between
	// the workers and their dependencies through c.workerEnv).
	setup func(t *testing.T, c *cluster)
	// inject runs beside the load and must leave everything healthy when it
	// returns; ctx ends with the load.
	inject func(ctx context.Context, t *testing.T, c *cluster)
	// callbackWithin, when set, is how soon after PAID every payment.paid
	// callback of the load's merchant must be delivered (scenario 8: a
	// neighbour's hung endpoint must not delay it).
	callbackWithin time.Duration
	// vaShare of the load's payments are 가상계좌: the confirm issues an
	// account, and the load deposits into it as soon as mockpg shows it
	// waiting (so deposits race the confirm's answer, the faults and the
	// kills).
	vaShare float64
}

// cluster is one running payrail: its own database, Redis, mockpg, callback
// sink, 2 api and 3 worker processes.
type cluster struct {
	t         *testing.T
	sc        scenario
	db        *sqlx.DB
	dbURL     string
	redisURL  string
	rdb       redis.UniversalClient
	redis     *redisServer // private Redis, or nil
	pgsrv     *pgServer    // private PostgreSQL, or nil
	pgReplica *pgServer    // its streaming replica (scenario 11), or nil
	bouncer   *testenv.PgBouncer
	sentinel  *testredis.Sentinel // scenario 9, or nil
	rcluster  *testredis.Cluster  // scenario 10, or nil
	env       map[string]string   // set up for every process (topology addresses)
	// failoverAt is when a scenario killed a primary (Redis or PostgreSQL):
	// the failover figures are measured from it; promoted is how long the
	// topology took to serve from a new one.
	failoverAt time.Time
	promoted   time.Duration
	toxi       *toxi // toxiproxy between the workers and their dependencies, or nil
	pg         *mockpg.Server
	pgURL      string
	pgLn       net.Listener
	sink       *sink
	apiURLs    []string
	started    time.Time // when the cluster started: the reconciliation window opens here
	apis       []*proc
	workers    []*proc
	workerEnv  map[string]string
	logDir     string
	merchant   merchant
	// others are merchants a scenario added (scenario 8's hung neighbour);
	// their callbacks are not the load's and are left out of quiescence.
	others []string
	http   *http.Client

	outMu   sync.Mutex
	outages []outage

	load loadStats
}

type outage struct {
	what     string
	from, to time.Time // to is zero while the outage lasts
}

type merchant struct {
	MerchantID     string `json:"merchantId"`
	ClientID       string `json:"clientId"`
	ClientSecret   string `json:"clientSecret"`
	CallbackSecret string `json:"callbackSecret"`
}

func startCluster(t *testing.T, sc scenario) *cluster {
	t.Helper()
	if err := buildOnce(); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, sc: sc, started: time.Now(), workerEnv: map[string]string{}, http: &http.Client{Timeout: 20 * time.Second}}
	dir, err := os.MkdirTemp("", "payrail-chaos-"+strings.ReplaceAll(sc.name, " ", "_")+"-")
	testenv.Must(t, err)
	c.logDir = dir
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})

	c.env = map[string]string{}
	if sc.pgReplica {
		c.pgsrv, c.dbURL = startPostgres(t)
		c.pgReplica = startReplica(t, c.pgsrv)
		c.bouncer = testenv.StartPgBouncer(t, c.dbURL, 20)
		c.dbURL = c.bouncer.URL(c.dbURL)
		c.db, err = sqlx.Open("postgres", c.dbURL+"&binary_parameters=yes")
		testenv.Must(t, err)
		c.db.SetMaxOpenConns(5)
		t.Cleanup(func() { c.db.Close() })
	} else if sc.privatePG {
		c.pgsrv, c.dbURL = startPostgres(t)
		c.db, err = sqlx.Open("postgres", c.dbURL)
		testenv.Must(t, err)
		c.db.SetMaxOpenConns(5)
		t.Cleanup(func() { c.db.Close() })
	} else {
		d := testenv.NewDatabase(t)
		c.db, c.dbURL = d.DB, d.URL
	}
	switch {
	case sc.topology == "sentinel":
		c.sentinel = testredis.StartSentinel(t)
		c.redisURL = "redis://" + c.sentinel.Master.Addr() + "/0"
		c.env["PAYRAIL_REDIS_SENTINEL_ADDRS"] = strings.Join(c.sentinel.SentinelAddrs(), ",")
		c.env["PAYRAIL_REDIS_MASTER_NAME"] = c.sentinel.MasterName
		c.rdb = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: c.sentinel.MasterName, SentinelAddrs: c.sentinel.SentinelAddrs()})
		t.Cleanup(func() { c.rdb.Close() })
	case sc.topology == "cluster":
		c.rcluster = testredis.StartCluster(t, 3, 1)
		c.redisURL = "redis://" + c.rcluster.Addrs()[0] + "/0"
		c.env["PAYRAIL_REDIS_CLUSTER_ADDRS"] = strings.Join(c.rcluster.Addrs(), ",")
		c.rdb = c.rcluster.Client(t)
	case sc.privateRedis:
		c.redis = startRedis(t)
		c.redisURL = c.redis.url()
		opt, _ := redis.ParseURL(c.redisURL)
		c.rdb = redis.NewClient(opt)
		t.Cleanup(func() { c.rdb.Close() })
	default:
		r := testenv.NewRedis(t)
		c.redisURL, c.rdb = r.URL, r.Client
	}

	c.sink = newSink()
	sinkSrv := httptest.NewServer(c.sink)
	t.Cleanup(sinkSrv.Close)

	// mockpg's listener is bound before the api ports are picked: picked
	// first, a port the kernel had just handed back could become mockpg's
	// too, and the api then never bound it (seen once, scenario 8).
	pgSrv := httptest.NewUnstartedServer(nil)
	ports := make([]int, numAPIs)
	for i := range ports {
		ports[i] = freePort(t)
		c.apiURLs = append(c.apiURLs, "http://127.0.0.1:"+strconv.Itoa(ports[i]))
	}
	c.pg = mockpg.New(mockpg.Config{SecretKey: pgSecretKey, WebhookSecret: pgHookSecret,
		WebhookURL: c.apiURLs[0] + "/pg/webhooks/mockpg"})
	pgSrv.Config.Handler = c.pg
	pgSrv.Start()
	c.pgURL = pgSrv.URL
	t.Cleanup(func() { c.pg.Close(); pgSrv.Close() })

	if sc.setup != nil {
		sc.setup(t, c)
	}
	env := c.baseEnv()
	for i := range numAPIs {
		e := clone(env)
		e["PAYRAIL_ADDR"] = "127.0.0.1:" + strconv.Itoa(ports[i])
		c.apis = append(c.apis, newProc("api"+strconv.Itoa(i+1), filepath.Join(binDir, "api"), dir, e))
	}
	for i := range numWorkers {
		e := clone(env)
		for k, v := range c.workerEnv {
			e[k] = v
		}
		c.workers = append(c.workers, newProc("worker"+strconv.Itoa(i+1), filepath.Join(binDir, "worker"), dir, e))
	}
	// Cleanup runs last-registered first: processes stop before the
	// database, Redis and mockpg they use go away.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, p := range append(append([]*proc{}, c.workers...), c.apis...) {
			wg.Add(1)
			go func() { defer wg.Done(); p.stop() }()
		}
		wg.Wait()
		if t.Failed() {
			for _, p := range append(append([]*proc{}, c.apis...), c.workers...) {
				t.Logf("---- %s (last lines)\n%s", p.name, p.tail(25))
			}
		}
	})
	for _, p := range append(append([]*proc{}, c.apis...), c.workers...) {
		testenv.Must(t, p.start())
	}
	for _, u := range c.apiURLs {
		testenv.Poll(t, 30*time.Second, "api "+u+" to answer /healthz", func() bool {
			resp, err := c.http.Get(u + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
	}
	c.newMerchant(sinkSrv.URL + "/callbacks")
	c.pg.SetFaults(sc.faults)
	return c
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// baseEnv is the configuration every process gets, built like systest's,
// with short sweeps, backoffs and callback schedule so recovery is quick.
func (c *cluster) baseEnv() map[string]string {
	env := map[string]string{
		"PAYRAIL_DATABASE_URL":      c.dbURL,
		"PAYRAIL_REDIS_URL":         c.redisURL,
		"PAYRAIL_ADMIN_TOKEN":       adminToken,
		"PAYRAIL_ENCRYPTION_KEYS":   testenv.KeysString,
		"PAYRAIL_PG_BASE_URL":       c.pgURL,
		"PAYRAIL_PG_SECRET_KEY":     pgSecretKey,
		"PAYRAIL_PG_PROVIDER":       "mockpg",
		"PAYRAIL_PG_WEBHOOK_SECRET": pgHookSecret,
		"PAYRAIL_CHECKOUT_URL":      c.pgURL + "/checkout",
		"PAYRAIL_METRICS_ADDR":      "127.0.0.1:0",
		"PAYRAIL_API_METRICS_ADDR":  "127.0.0.1:0",
		// The chaos load is one merchant; its limit is not what is tested.
		"PAYRAIL_RATE_LIMIT": "100000", "PAYRAIL_RATE_BURST": "200000",
		"PAYRAIL_CALLBACK_ALLOW_PRIVATE": "true",
		"PAYRAIL_PG_TIMEOUT":             "2s",
		"PAYRAIL_SWEEP_INTERVAL":         "1s",
		"PAYRAIL_DB_MAX_CONNS":           "10",
		// Prepared statements on direct connections; behind PgBouncer 1.18
		// (the replica scenario) unnamed ones.
		"PAYRAIL_DB_STATEMENT_CACHE":    strconv.FormatBool(c.bouncer == nil),
		"PAYRAIL_WORKER_CONCURRENCY":    "10",
		"PAYRAIL_CONFIRM_BACKOFF":       "100ms",
		"PAYRAIL_CONFIRM_BACKOFF_MAX":   "1s",
		"PAYRAIL_RECONCILE_BACKOFF":     "300ms",
		"PAYRAIL_RECONCILE_BACKOFF_MAX": "2s",
		"PAYRAIL_CONFIRM_STUCK_AFTER":   "3s",
		"PAYRAIL_CALLBACK_SCHEDULE":     callbackSched,
		"PAYRAIL_CALLBACK_TIMEOUT":      "3s",
		"PAYRAIL_LOG_LEVEL":             "info",
	}
	for k, v := range c.env {
		env[k] = v
	}
	for k, v := range c.sc.env {
		env[k] = v
	}
	return env
}

func (c *cluster) newMerchant(callbackURL string) {
	c.t.Helper()
	c.merchant = c.createMerchant("Chaos Shop", callbackURL)
	c.sink.setSecret(c.merchant.CallbackSecret)
}

// othersSnapshot is c.others, safe to read while inject may append.
func (c *cluster) othersSnapshot() []string {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return append([]string{}, c.others...)
}

func (c *cluster) createMerchant(name, callbackURL string) merchant {
	c.t.Helper()
	body, _ := json.Marshal(map[string]any{"name": name, "callbackUrl": callbackURL, "returnUrl": "http://127.0.0.1:9/return"})
	req, _ := http.NewRequest("POST", c.apiURLs[0]+"/admin/merchants", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	testenv.Must(c.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 {
		c.t.Fatalf("create merchant: %d %s", resp.StatusCode, b)
	}
	var m merchant
	testenv.Must(c.t, json.Unmarshal(b, &m))
	return m
}

// ---- outages -------------------------------------------------------------------------

// beginOutage records that a dependency of the api is down from now on; a
// 5xx of a request that overlaps an outage (plus a grace for pools to
// reconnect) is expected and counted apart.
func (c *cluster) beginOutage(what string) int {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	c.outages = append(c.outages, outage{what: what, from: time.Now()})
	c.t.Logf("%s: outage begins: %s", time.Now().Format("15:04:05.000"), what)
	return len(c.outages) - 1
}

func (c *cluster) endOutage(i int) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	c.outages[i].to = time.Now()
	c.t.Logf("%s: outage ends: %s", time.Now().Format("15:04:05.000"), c.outages[i].what)
}

func (c *cluster) duringOutage(from, to time.Time) bool {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	for _, o := range c.outages {
		end := o.to
		if end.IsZero() {
			end = time.Now().Add(time.Hour)
		}
		if !from.After(end.Add(outageGrace)) && !to.Before(o.from) {
			return true
		}
	}
	return false
}

// ---- load ----------------------------------------------------------------------------

type loadStats struct {
	mu         sync.Mutex
	accepted   []string // orderIds whose confirm was accepted (202, or 200 after a retry)
	problems   []string // unexpected answers, first few
	created    atomic.Int64
	e5xxDuring atomic.Int64
	e5xxOut    atomic.Int64
	netDuring  atomic.Int64 // transport errors (connection refused/reset) during an outage
	netOut     atomic.Int64
	limited    atomic.Int64 // 429s, retried after their Retry-After as a merchant would
	unexpected atomic.Int64 // 4xx to valid requests, gave-up requests outside outages
	deposits   sync.WaitGroup
	deposited  atomic.Int64 // deposits mockpg took
	samples    []sample     // every attempt at the ingress, for the failover figures
}

// sample is one request attempt at the ingress.
type sample struct {
	at     time.Time
	took   time.Duration
	status int // 0: transport error
	what   string
}

func (l *loadStats) problem(format string, args ...any) {
	l.unexpected.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.problems) < 10 {
		l.problems = append(l.problems, fmt.Sprintf(format, args...))
	}
}

type answer struct {
	status     int
	body       []byte
	err        error
	retryAfter time.Duration
	policy     string // RateLimit-Policy
}

func (a answer) code() string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(a.body, &p)
	return p.Code
}

// send signs (as the merchant) and sends one request to an api.
func (c *cluster) send(api, method, path string, body any, hdr ...string) answer {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(method, api+path, bytes.NewReader(raw))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if err := auth.SignRequest(req, c.merchant.ClientID, c.merchant.ClientSecret, time.Now()); err != nil {
		return answer{err: err}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return answer{status: resp.StatusCode, body: b, retryAfter: time.Duration(secs) * time.Second, policy: resp.Header.Get("RateLimit-Policy")}
}

// call sends a valid request, retrying (on the other api too) what a careful
// merchant retries: 5xx, transport errors, a key still in flight and a 429
// of a lowered rate (after its Retry-After). It
// classifies every 5xx and transport error as during or outside an outage.
func (c *cluster) call(i int, what, method, path string, body any, ok func(answer) bool, hdr ...string) (answer, bool) {
	for try := 0; try < requestTries; try++ {
		api := c.apiURLs[(i+try)%len(c.apiURLs)]
		start := time.Now()
		a := c.send(api, method, path, body, hdr...)
		c.load.mu.Lock()
		c.load.samples = append(c.load.samples, sample{at: start, took: time.Since(start), status: a.status, what: what})
		c.load.mu.Unlock()
		during := c.duringOutage(start, time.Now())
		switch {
		case a.err != nil:
			if during {
				c.load.netDuring.Add(1)
			} else {
				c.load.netOut.Add(1)
				c.load.problem("%s %s: transport error outside an outage: %v", what, path, a.err)
			}
		case a.status >= 500:
			if during {
				c.load.e5xxDuring.Add(1)
			} else {
				c.load.e5xxOut.Add(1)
				c.load.problem("%s %s: %d outside an outage: %.200s", what, path, a.status, a.body)
			}
		case a.status == 409 && a.code() == "IDEMPOTENCY_KEY_IN_USE":
		case a.status == 429 && a.code() == "RATE_LIMITED" && strings.Contains(a.policy, "merchant-lowered"):
			// payrail lowered this merchant's rate under load (admission
			// control): a merchant waits Retry-After and tries again. Any
			// other 429 (the merchant's own bucket, its in-flight bound)
			// stays unexpected: the load is well within both.
			c.load.limited.Add(1)
			time.Sleep(min(a.retryAfter, 2*time.Second))
		case ok(a):
			return a, true
		default:
			c.load.problem("%s %s: unexpected %d %.300s", what, path, a.status, a.body)
			return a, false
		}
		time.Sleep(retryPause)
	}
	c.load.problem("%s %s: gave up after %d tries", what, path, requestTries)
	return answer{}, false
}

// runLoad creates, pays (mockpg session) and confirms sc.payments orders,
// spread evenly over sc.duration, and returns when all are done.
func (c *cluster) runLoad(ctx context.Context) {
	n, d := c.sc.payments, c.sc.duration
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				c.onePayment(i)
			}
		}()
	}
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(d * time.Duration(i) / time.Duration(n))); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	c.load.deposits.Wait()
}

// virtualAccount reports whether payment i is a 가상계좌 one: vaShare of
// them, spread evenly.
func (c *cluster) virtualAccount(i int) bool {
	f := c.sc.vaShare
	return f > 0 && int(float64(i+1)*f) > int(float64(i)*f)
}

// deposit is the buyer's transfer: it retries until mockpg shows the
// account issued (the confirm may still be on its way, or retried through
// faults) and takes the deposit, or the payment cannot be paid any more.
func (c *cluster) deposit(orderID, key string) {
	deadline := time.Now().Add(c.sc.duration + 60*time.Second)
	for time.Now().Before(deadline) {
		b, _ := json.Marshal(map[string]string{"paymentKey": key})
		resp, err := c.http.Post(c.pgURL+"/sandbox/deposits", "application/json", bytes.NewReader(b))
		if err == nil {
			rb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200:
				c.load.deposited.Add(1)
				return
			case resp.StatusCode == 409 && !strings.Contains(string(rb), "status READY"):
				// Declined, expired or cancelled: nothing to deposit into.
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.load.problem("deposit into %s: the account was never issued", orderID)
}

func (c *cluster) onePayment(i int) {
	mo := fmt.Sprintf("chaos-%05d", i)
	amount := int64(1000 + i)
	created, ok := c.call(i, "create", "POST", "/v1/orders",
		map[string]any{"merchantOrderId": mo, "amount": amount, "orderName": "chaos order"},
		func(a answer) bool { return a.status == 201 }, "Idempotency-Key", "create-"+mo)
	if !ok {
		return
	}
	c.load.created.Add(1)
	var o struct {
		OrderID      string `json:"orderId"`
		PaymentToken string `json:"paymentToken"`
	}
	if err := json.Unmarshal(created.body, &o); err != nil || o.PaymentToken == "" {
		c.load.problem("create %s: undecodable answer %.200s", mo, created.body)
		return
	}
	method := "카드"
	if c.virtualAccount(i) {
		method = "가상계좌"
	}
	key, err := c.session(o.OrderID, amount, method)
	if err != nil {
		c.load.problem("mockpg session for %s: %v", o.OrderID, err)
		return
	}
	body := map[string]any{"paymentKey": key, "amount": amount, "paymentToken": o.PaymentToken}
	_, ok = c.call(i, "confirm", "POST", "/v1/orders/"+o.OrderID+"/confirm", body, func(a answer) bool {
		// 202 ACCEPTED; a retry of a confirm that did commit may find the
		// order already settled and answer 200 with the stored result.
		return a.status == 202 || a.status == 200
	})
	if ok {
		c.load.mu.Lock()
		c.load.accepted = append(c.load.accepted, o.OrderID)
		c.load.mu.Unlock()
		if method == "가상계좌" {
			c.load.deposits.Go(func() { c.deposit(o.OrderID, key) })
		}
	}
}

// session opens a mockpg payment session through POST /sandbox/sessions.
func (c *cluster) session(orderID string, amount int64, method string) (string, error) {
	b, _ := json.Marshal(map[string]any{"orderId": orderID, "amount": amount, "orderName": "chaos order", "method": method})
	resp, err := c.http.Post(c.pgURL+"/sandbox/sessions", "application/json", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		PaymentKey string `json:"paymentKey"`
	}
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(rb, &out) != nil {
		return "", fmt.Errorf("%d %s", resp.StatusCode, rb)
	}
	return out.PaymentKey, nil
}

// ---- callback sink ---------------------------------------------------------------------

// sink is the merchant's callback endpoint: it verifies Standard Webhooks
// signatures and counts deliveries by webhook-id.
type sink struct {
	mu        sync.Mutex
	key       []byte
	downUntil time.Time
	received  map[string]int                 // webhook-id → deliveries
	ids       map[string]map[string][]string // type → orderId → distinct webhook-ids
	badSig    int
	refused   int
}

func newSink() *sink {
	return &sink{received: map[string]int{}, ids: map[string]map[string][]string{}}
}

func (s *sink) setSecret(secret string) {
	key, err := callback.SecretKey(secret)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.key = key
	s.mu.Unlock()
}

func (s *sink) setDownUntil(t time.Time) {
	s.mu.Lock()
	s.downUntil = t
	s.mu.Unlock()
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	id, ts := r.Header.Get(callback.HeaderID), r.Header.Get(callback.HeaderTimestamp)
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Now().Before(s.downUntil) {
		s.refused++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	valid := false
	for _, sig := range strings.Fields(r.Header.Get(callback.HeaderSignature)) {
		if v, ok := strings.CutPrefix(sig, "v1,"); ok && hmac.Equal([]byte(v), []byte(want)) {
			valid = true
		}
	}
	var ev struct {
		Type string `json:"type"`
		Data struct {
			OrderID string `json:"orderId"`
		} `json:"data"`
	}
	if !valid || id == "" || json.Unmarshal(body, &ev) != nil {
		s.badSig++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if s.received[id] == 0 {
		if s.ids[ev.Type] == nil {
			s.ids[ev.Type] = map[string][]string{}
		}
		s.ids[ev.Type][ev.Data.OrderID] = append(s.ids[ev.Type][ev.Data.OrderID], id)
	}
	s.received[id]++
	w.WriteHeader(http.StatusNoContent)
}

// counts returns the distinct webhook-ids per orderId of one event type, the
// duplicate deliveries, and the refused and badly signed requests.
func (s *sink) counts(typ string) (ids map[string][]string, dups, refused, badSig int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids = map[string][]string{}
	for k, v := range s.ids[typ] {
		ids[k] = append([]string(nil), v...)
	}
	for _, n := range s.received {
		dups += n - 1
	}
	return ids, dups, s.refused, s.badSig
}

// ---- quiescence ------------------------------------------------------------------------

// pending describes the work still outstanding, or "" when the system is
// quiet: no unflagged confirm in flight, no PENDING callback, refund, cancel
// or unapplied PG event, and the payments and callbacks queues empty (active
// tasks of a killed worker, which asynq only recovers after their lease, do
// not count: the sweep has already re-enqueued their work).
func (c *cluster) pending(ctx context.Context) string {
	var n struct {
		Confirming int `db:"confirming"`
		Callbacks  int `db:"callbacks"`
		Refunds    int `db:"refunds"`
		Cancels    int `db:"cancels"`
		Events     int `db:"events"`
	}
	err := c.db.GetContext(ctx, &n, `SELECT
  (SELECT count(*) FROM orders WHERE NOT needs_reconciliation
      AND (status = 'CONFIRMING' OR (status = 'CREATED' AND confirm_requested_at IS NOT NULL))) AS confirming,
  (SELECT count(*) FROM callbacks WHERE status = 'PENDING' AND NOT merchant_id = ANY($1)) AS callbacks,
  (SELECT count(*) FROM refunds WHERE status = 'PENDING') AS refunds,
  (SELECT count(*) FROM cancels WHERE status = 'PENDING') AS cancels,
  (SELECT count(*) FROM pg_events WHERE state = 'RECEIVED') AS events`, pq.Array(c.othersSnapshot()))
	if err != nil {
		return "database: " + err.Error()
	}
	var parts []string
	for _, p := range []struct {
		what string
		n    int
	}{{"confirms in flight", n.Confirming}, {"PENDING callbacks", n.Callbacks}, {"PENDING refunds", n.Refunds},
		{"PENDING cancels", n.Cancels}, {"unapplied PG events", n.Events}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	insp := asynq.NewInspectorFromRedisClient(c.rdb)
	live := map[string]bool{}
	servers, err := insp.Servers()
	if err != nil {
		return "asynq servers: " + err.Error()
	}
	for _, s := range servers {
		for _, w := range s.ActiveWorkers {
			live[w.TaskID] = true
		}
	}
	queues, err := insp.Queues()
	if err != nil {
		return "asynq queues: " + err.Error()
	}
	for _, q := range queues {
		if !slices.Contains(queue.PaymentQueues, q) && q != queue.QueueCallbacks {
			continue // the maintenance queue always holds the next sweep tick
		}
		info, err := insp.GetQueueInfo(q)
		if err != nil && strings.Contains(err.Error(), "does not exist") {
			continue // flushed meanwhile
		}
		if err != nil {
			return "asynq queue " + q + ": " + err.Error()
		}
		if w := info.Pending + info.Scheduled + info.Retry; w > 0 {
			parts = append(parts, fmt.Sprintf("%d tasks waiting in %s", w, q))
		}
		if info.Active > 0 {
			active, err := insp.ListActiveTasks(q, asynq.PageSize(1000))
			if err != nil {
				return "asynq active " + q + ": " + err.Error()
			}
			held := 0
			for _, a := range active {
				if live[a.ID] {
					held++
				}
			}
			if held > 0 {
				parts = append(parts, fmt.Sprintf("%d tasks running in %s", held, q))
			}
		}
	}
	return strings.Join(parts, ", ")
}

// waitQuiet polls until nothing is pending; it returns what was still
// pending at the deadline, or "".
func (c *cluster) waitQuiet(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p := c.pending(ctx)
		cancel()
		if p == "" {
			// Twice in a row, a sweep apart: a task may be between queues.
			time.Sleep(1200 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			p = c.pending(ctx)
			cancel()
			if p == "" {
				return ""
			}
		}
		if p != last {
			c.t.Logf("%s: waiting for quiescence: %s", time.Now().Format("15:04:05.000"), p)
			last = p
		}
		if time.Now().After(deadline) {
			return p
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// ---- invariants ------------------------------------------------------------------------

// result is one row of the chaos table.
type result struct {
	scenario                 string
	orders, paid, approvals  int
	refunded, flagged        int
	delivered, dups, refused int
	e5xxDuring, e5xxOut      int
	netDuring                int
	limited                  int
	crashes                  int
	confirmCalls             int
	accounts, deposits       int // 가상계좌 issued and deposited at mockpg
	reconRepaired            int // reconciliation's repairs (logged)
	reconFlagged             int
	elapsed                  time.Duration
	violations               []string
	failover                 *failover // scenarios that kill a primary
}

// failover is how payrail rode out a primary's death (Redis master or
// PostgreSQL primary), measured from the kill.
type failover struct {
	scenario string
	// promoted: until the new primary answered (the topology's own time).
	promoted time.Duration
	// firstOK: until the first 2xx to a request sent after the kill.
	firstOK time.Duration
	// ingressP99 of every attempt sent in the 10 s after the kill (5xx
	// and transport errors included), and the baseline before it.
	ingressP99, baselineP99 time.Duration
	e5xx, netErrs           int
	// fullIngress / fullPaid: until accepted confirms / PAID transitions
	// per second were back to 90 % of their rate before the kill.
	fullIngress, fullPaid time.Duration
}

const failoverHeader = "| scenario | promoted after | first 2xx after | ingress p99 before | ingress p99, 10 s after | 5xx | transport errors | accepted confirms/s at 90 % after | PAID/s at 90 % after |\n|---|---|---|---|---|---|---|---|---|"

func (f failover) row() string {
	d := func(x time.Duration) string {
		if x < 0 {
			return "not within the run"
		}
		return fmt.Sprintf("%.2f s", x.Seconds())
	}
	return fmt.Sprintf("| %s | %s | %s | %.0f ms | %.0f ms | %d | %d | %s | %s |", f.scenario, d(f.promoted), d(f.firstOK),
		float64(f.baselineP99.Microseconds())/1000, float64(f.ingressP99.Microseconds())/1000, f.e5xx, f.netErrs, d(f.fullIngress), d(f.fullPaid))
}

// measureFailover computes the failover figures from the load's samples
// and the PAID transitions in payment_log.
func (c *cluster) measureFailover(promoted time.Duration) *failover {
	kill := c.failoverAt
	f := &failover{scenario: c.sc.name, promoted: promoted, firstOK: -1, fullIngress: -1, fullPaid: -1}
	c.load.mu.Lock()
	samples := append([]sample(nil), c.load.samples...)
	c.load.mu.Unlock()
	var before, after []time.Duration
	var accepted []time.Time
	for _, s := range samples {
		switch {
		case s.at.Before(kill) && s.at.After(kill.Add(-10*time.Second)):
			before = append(before, s.took)
		case !s.at.Before(kill) && s.at.Before(kill.Add(10*time.Second)):
			after = append(after, s.took)
		}
		if !s.at.Before(kill) {
			if s.status >= 500 {
				f.e5xx++
			}
			if s.status == 0 {
				f.netErrs++
			}
			if s.status >= 200 && s.status < 300 && (f.firstOK < 0 || s.at.Add(s.took).Sub(kill) < f.firstOK) {
				f.firstOK = s.at.Add(s.took).Sub(kill)
			}
		}
		if s.what == "confirm" && s.status >= 200 && s.status < 300 {
			accepted = append(accepted, s.at.Add(s.took))
		}
	}
	f.baselineP99, f.ingressP99 = p99(before), p99(after)
	f.fullIngress = backToRate(accepted, c.started, kill)
	var paid []time.Time
	if err := c.db.Select(&paid, `SELECT at FROM payment_log WHERE to_status = 'PAID' ORDER BY at`); err == nil {
		f.fullPaid = backToRate(paid, c.started, kill)
	}
	return f
}

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*99/100)]
}

// backToRate is how long after kill the events' rate over a sliding second
// was back to 90 % of their mean rate between start+2 s and the kill (the
// end of the first such second); 0 when it never dipped, -1 when it never
// came back.
func backToRate(events []time.Time, start, kill time.Time) time.Duration {
	from := start.Add(2 * time.Second)
	var n int
	for _, e := range events {
		if e.After(from) && e.Before(kill) {
			n++
		}
	}
	if span := kill.Sub(from).Seconds(); span < 1 || n == 0 {
		return -1
	} else {
		want := 0.9 * float64(n) / span
		rate := func(t time.Time) float64 {
			k := 0
			for _, e := range events {
				if !e.Before(t) && e.Before(t.Add(time.Second)) {
					k++
				}
			}
			return float64(k)
		}
		// First the dip (work answered in the instant after the kill was
		// already under way), then the recovery.
		dipped := false
		for t := kill; t.Before(kill.Add(2 * time.Minute)); t = t.Add(100 * time.Millisecond) {
			switch r := rate(t); {
			case !dipped && r < want:
				dipped = true
			case !dipped && t.After(kill.Add(10*time.Second)):
				return 0 // it never dipped
			case dipped && r >= want:
				return t.Add(time.Second).Sub(kill) // by the window's end
			}
		}
	}
	return -1
}

func (r result) verdict() string {
	if len(r.violations) == 0 {
		return "PASS"
	}
	return fmt.Sprintf("FAIL (%d)", len(r.violations))
}

const tableHeader = "| scenario | orders (202) | paid | approvals at mockpg | refunded late | flagged | paid callbacks delivered | duplicates at sink | 5xx during outage | 5xx outside | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|"

func (r result) row() string {
	return fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s |", r.scenario, r.orders, r.paid, r.approvals,
		r.refunded, r.flagged, r.delivered, r.dups, r.e5xxDuring, r.e5xxOut, r.verdict())
}

type orderRow struct {
	OrderID string `db:"order_id"`
	Status  string `db:"status"`
	Flagged bool   `db:"needs_reconciliation"`
}

// check verifies the invariants on the settled system.
func (c *cluster) check(quiet string) result {
	t := c.t
	r := result{scenario: c.sc.name}
	bad := func(format string, args ...any) { r.violations = append(r.violations, fmt.Sprintf(format, args...)) }
	suspects := map[string]bool{}
	if quiet != "" {
		bad("not quiescent after %s: %s", c.sc.quiesce, quiet)
	}

	var orders []orderRow
	testenv.Must(t, c.db.Select(&orders, `SELECT order_id, status, needs_reconciliation FROM orders`))
	byID := map[string]orderRow{}
	for _, o := range orders {
		byID[o.OrderID] = o
	}
	// AWAITING_DEPOSIT is settled for this check (the buyer has not paid);
	// invariant 2 requires mockpg to agree that no deposit was made.
	terminal := map[string]bool{"PAID": true, "PARTIALLY_CANCELED": true, "CANCELED": true, "FAILED": true, "EXPIRED": true, "AWAITING_DEPOSIT": true}
	paidLike := map[string]bool{"PAID": true, "PARTIALLY_CANCELED": true, "CANCELED": true}

	c.load.mu.Lock()
	accepted := append([]string(nil), c.load.accepted...)
	problems := append([]string(nil), c.load.problems...)
	c.load.mu.Unlock()
	r.orders = len(accepted)
	// 1. Every accepted order is terminal or flagged: none silently stuck.
	for _, id := range accepted {
		o, ok := byID[id]
		switch {
		case !ok:
			bad("order %s got a 202 but is not in the database", id)
		case !terminal[o.Status] && !o.Flagged:
			bad("order %s got a 202 and is stuck in %s without needsReconciliation", id, o.Status)
			suspects[id] = true
		}
	}
	for _, o := range orders {
		if o.Flagged {
			r.flagged++
		}
		if o.Status == "CONFIRMING" && !o.Flagged {
			if !suspects[o.OrderID] {
				bad("order %s is stuck in CONFIRMING without needsReconciliation", o.OrderID)
				suspects[o.OrderID] = true
			}
		}
	}

	// 2. No order approved, cancelled or refunded twice at the PG; PAID
	//    orders are exactly the approvals, minus approvals refunded late.
	stats := c.pg.Stats()
	var refunds []struct {
		OrderID string `db:"order_id"`
		Status  string `db:"status"`
	}
	testenv.Must(t, c.db.Select(&refunds, `SELECT order_id, status FROM refunds`))
	refunded := map[string]bool{}
	for _, rf := range refunds {
		if rf.Status == "SUCCEEDED" {
			refunded[rf.OrderID] = true
			r.refunded++
		}
	}
	for id, st := range stats {
		r.approvals += st.Approvals
		r.confirmCalls += st.ConfirmCalls
		r.deposits += st.Deposits
		r.accounts += st.VirtualAccounts
		if st.Deposits > 1 || st.VirtualAccounts > 1 {
			bad("order %s: mockpg issued %d accounts and took %d deposits for it", id, st.VirtualAccounts, st.Deposits)
			suspects[id] = true
		}
		if st.Approvals > 1 {
			bad("order %s approved %d times at mockpg", id, st.Approvals)
			suspects[id] = true
		}
		if st.Cancels > 1 {
			bad("order %s cancelled/refunded %d times at mockpg", id, st.Cancels)
			suspects[id] = true
		}
	}
	for _, o := range orders {
		st := stats[o.OrderID]
		if paidLike[o.Status] {
			r.paid++
			if st.Approvals != 1 {
				bad("order %s is %s but mockpg approved it %d times", o.OrderID, o.Status, st.Approvals)
				suspects[o.OrderID] = true
			}
			continue
		}
		if o.Status == "AWAITING_DEPOSIT" && (st.VirtualAccounts != 1 || st.Deposits != 0) {
			// Waiting is right only for an issued account nobody paid into:
			// a deposit at mockpg must be PAID here.
			bad("order %s is AWAITING_DEPOSIT but mockpg issued %d accounts and took %d deposits", o.OrderID, st.VirtualAccounts, st.Deposits)
			suspects[o.OrderID] = true
		}
		if st.Approvals > 0 && !refunded[o.OrderID] && !o.Flagged {
			bad("order %s is %s but mockpg approved it and no refund succeeded", o.OrderID, o.Status)
			suspects[o.OrderID] = true
		}
	}
	if r.paid != r.approvals-r.refunded && r.flagged == 0 {
		bad("paid orders %d != approvals %d - refunded %d", r.paid, r.approvals, r.refunded)
	}
	var twice []string
	testenv.Must(t, c.db.Select(&twice, `SELECT order_id FROM payment_log WHERE to_status = 'PAID' GROUP BY order_id HAVING count(*) > 1`))
	for _, id := range twice {
		bad("order %s entered PAID more than once in payment_log", id)
		suspects[id] = true
	}

	// 3. Every PAID order has exactly one payment.paid callback, DELIVERED,
	//    and the sink saw exactly one webhook-id for it (repeated deliveries
	//    of that id are at-least-once delivery: counted, not a failure).
	var cbs []struct {
		OrderID    string `db:"order_id"`
		CallbackID string `db:"callback_id"`
		Status     string `db:"status"`
	}
	testenv.Must(t, c.db.Select(&cbs, `SELECT order_id, callback_id, status FROM callbacks WHERE event_type = 'payment.paid'`))
	cbByOrder := map[string][]string{}
	for _, cb := range cbs {
		cbByOrder[cb.OrderID] = append(cbByOrder[cb.OrderID], cb.CallbackID+"="+cb.Status)
		if cb.Status == "DELIVERED" {
			r.delivered++
		}
	}
	sinkIDs, dups, refused, badSig := c.sink.counts("payment.paid")
	r.dups, r.refused = dups, refused
	for _, o := range orders {
		if !paidLike[o.Status] {
			continue
		}
		rows := cbByOrder[o.OrderID]
		if len(rows) != 1 || !strings.HasSuffix(rows[0], "=DELIVERED") {
			bad("order %s is %s with payment.paid callbacks %v (want exactly one DELIVERED)", o.OrderID, o.Status, rows)
			suspects[o.OrderID] = true
		}
		if ids := sinkIDs[o.OrderID]; len(ids) != 1 {
			bad("order %s: the sink received payment.paid with %d distinct webhook-ids %v (want 1)", o.OrderID, len(ids), ids)
			suspects[o.OrderID] = true
		} else if len(rows) == 1 && !strings.HasPrefix(rows[0], ids[0]+"=") {
			bad("order %s: the sink's webhook-id %s is not the callback %s", o.OrderID, ids[0], rows[0])
		}
	}
	if badSig > 0 {
		bad("%d callbacks reached the sink with a bad signature", badSig)
	}
	if c.sc.callbackWithin > 0 {
		var late []struct {
			OrderID string  `db:"order_id"`
			Secs    float64 `db:"secs"`
		}
		testenv.Must(t, c.db.Select(&late, `SELECT c.order_id, EXTRACT(EPOCH FROM c.delivered_at - l.at)::float8 AS secs
FROM callbacks c JOIN payment_log l ON l.order_id = c.order_id AND l.to_status = 'PAID'
WHERE c.event_type = 'payment.paid' AND c.merchant_id = $1 AND c.status = 'DELIVERED'
ORDER BY secs DESC`, c.merchant.MerchantID))
		if len(late) > 0 {
			t.Logf("slowest PAID → callback delivered: %.3f s (%s); limit %s", late[0].Secs, late[0].OrderID, c.sc.callbackWithin)
		}
		for _, l := range late {
			if l.Secs > c.sc.callbackWithin.Seconds() {
				bad("order %s: callback delivered %.2f s after PAID (limit %s)", l.OrderID, l.Secs, c.sc.callbackWithin)
			}
		}
	}

	// 4. No 5xx (nor a dropped connection) for a valid request outside an
	//    outage of a dependency; no unexpected answer.
	r.e5xxDuring, r.e5xxOut = int(c.load.e5xxDuring.Load()), int(c.load.e5xxOut.Load())
	r.netDuring = int(c.load.netDuring.Load())
	r.limited = int(c.load.limited.Load())
	if n := c.load.unexpected.Load(); n > 0 {
		bad("%d unexpected answers to valid requests, e.g. %s", n, strings.Join(problems, "; "))
	}
	for _, p := range append(append([]*proc{}, c.apis...), c.workers...) {
		for _, u := range p.unexpectedExits() {
			r.crashes++
			t.Logf("note: %s (restarted)", u)
		}
	}

	// 5. The PG's books agree: a reconciliation of the scenario's window
	//    (through the admin API, run by a worker) finds nothing it could
	//    not repair.
	if run, items, err := c.reconcile(); err != nil {
		bad("reconciliation: %v", err)
	} else {
		r.reconRepaired, r.reconFlagged = run.Counts.Repaired, run.Counts.Flagged
		for _, it := range items {
			if it.NeedsAttention {
				bad("reconciliation flagged %s %s (%s): %s", it.Class, it.OrderID, it.PaymentKey, it.Detail)
			}
		}
		t.Logf("reconciliation %s: %d PG rows, %d matched, %d repaired, %d flagged", run.RunID, run.PGRows, run.Counts.Matched, run.Counts.Repaired, run.Counts.Flagged)
	}

	n := 0
	for id := range suspects {
		if n++; n > 5 {
			break
		}
		t.Logf("order %s: mockpg %+v\n%s", id, stats[id], c.history(id))
	}
	return r
}

// history renders an order's payment_log.
func (c *cluster) history(orderID string) string {
	var rows []struct {
		At      time.Time `db:"at"`
		Action  string    `db:"action"`
		From    *string   `db:"from_status"`
		To      *string   `db:"to_status"`
		Actor   string    `db:"actor"`
		Details string    `db:"details"`
	}
	if err := c.db.Select(&rows, `SELECT at, action, from_status, to_status, actor, details::text AS details FROM payment_log WHERE order_id = $1 ORDER BY id`, orderID); err != nil {
		return err.Error()
	}
	var b strings.Builder
	s := func(p *string) string {
		if p == nil {
			return "-"
		}
		return *p
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "  %s %-28s %s→%s %s %s\n", r.At.Format("15:04:05.000"), r.Action, s(r.From), s(r.To), r.Actor, r.Details)
	}
	var o struct {
		Status  string `db:"status"`
		Version int    `db:"version"`
		Flagged bool   `db:"needs_reconciliation"`
		Unknown bool   `db:"outcome_unknown"`
		Tries   int    `db:"confirm_attempts"`
	}
	if err := c.db.Get(&o, `SELECT status, version, needs_reconciliation, outcome_unknown, confirm_attempts FROM orders WHERE order_id = $1`, orderID); err == nil {
		fmt.Fprintf(&b, "  now: %+v\n", o)
	}
	return b.String()
}

// ---- running scenarios -------------------------------------------------------------------

var (
	tableMu sync.Mutex
	table   []result
)

// run starts a fresh system for sc, loads it while sc.inject breaks it,
// waits for it to settle, checks the invariants and records the row.
func run(t *testing.T, sc scenario) {
	start := time.Now()
	c := startCluster(t, sc)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if sc.inject != nil {
		wg.Add(1)
		go func() { defer wg.Done(); sc.inject(ctx, t, c) }()
	}
	c.runLoad(ctx)
	cancel()
	wg.Wait()
	c.pg.SetFaults(mockpg.Faults{})
	t.Logf("%s: load done (%d created, %d accepted); waiting for quiescence", time.Now().Format("15:04:05.000"),
		c.load.created.Load(), len(c.load.accepted))
	quiet := c.waitQuiet(sc.quiesce)
	r := c.check(quiet)
	r.elapsed = time.Since(start)
	if !c.failoverAt.IsZero() {
		r.failover = c.measureFailover(c.promoted)
		t.Logf("failover:\n%s\n%s", failoverHeader, r.failover.row())
	}
	tableMu.Lock()
	table = append(table, r)
	tableMu.Unlock()
	t.Logf("\n%s\n%s\n(%s; %d confirm calls at mockpg; %d virtual accounts issued, %d deposited; %d transport errors during outages; %d 429s retried; %d callbacks refused by the sink while down; %d process crashes)",
		tableHeader, r.row(), r.elapsed.Round(time.Second), r.confirmCalls, r.accounts, r.deposits, r.netDuring, r.limited, r.refused, r.crashes)
	for _, v := range r.violations {
		t.Errorf("%s: %s", sc.name, v)
	}
}

// printTable logs every row recorded so far.
func printTable(t *testing.T) {
	tableMu.Lock()
	defer tableMu.Unlock()
	rows := []string{tableHeader}
	for _, r := range table {
		rows = append(rows, r.row())
	}
	fo := []string{failoverHeader}
	for _, r := range table {
		if r.failover != nil {
			fo = append(fo, r.failover.row())
		}
	}
	if len(fo) > 1 {
		rows = append(rows, "", "failovers:", strings.Join(fo, "\n"))
	}
	t.Logf("chaos results:\n%s", strings.Join(rows, "\n"))
	fmt.Fprintf(os.Stdout, "\nchaos results:\n%s\n\n", strings.Join(rows, "\n"))
}

// hostPort returns the host:port of a URL.
func hostPort(tb testing.TB, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return u.Host
}

// withHost returns raw with its host:port replaced.
func withHost(raw, hostport string) string {
	u, _ := url.Parse(raw)
	u.Host = hostport
	return u.String()
}

// reconRun is what the chaos check reads of a reconciliation.
type reconRun struct {
	RunID  string `json:"runId"`
	Status string `json:"status"`
	Error  string `json:"error"`
	PGRows int64  `json:"pgRows"`
	Counts struct {
		Matched  int64 `json:"matched"`
		Repaired int   `json:"repaired"`
		Flagged  int   `json:"flagged"`
	} `json:"counts"`
}

type reconItem struct {
	Class          string `json:"class"`
	OrderID        string `json:"orderId"`
	PaymentKey     string `json:"paymentKey"`
	NeedsAttention bool   `json:"needsAttention"`
	Detail         string `json:"detail"`
}

// reconcile runs the reconciliation of the scenario's window (from the
// cluster's start to a minute ahead) and returns it with its items.
func (c *cluster) reconcile() (reconRun, []reconItem, error) {
	admin := func(method, path string, body any) (int, []byte, error) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, c.apiURLs[0]+path, rd)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.http.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	st, b, err := admin("POST", "/admin/recon", map[string]string{
		"from": c.started.Add(-time.Minute).UTC().Format(time.RFC3339Nano), "to": time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)})
	if err != nil || (st != 200 && st != 202) {
		return reconRun{}, nil, fmt.Errorf("POST /admin/recon: %d %s %v", st, b, err)
	}
	var run reconRun
	if err := json.Unmarshal(b, &run); err != nil {
		return run, nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, b, err := admin("GET", "/admin/recon/"+run.RunID, nil)
		var out struct {
			Run   reconRun    `json:"run"`
			Items []reconItem `json:"items"`
		}
		if err == nil && st == 200 && json.Unmarshal(b, &out) == nil && out.Run.Status != "PENDING" && out.Run.Status != "RUNNING" {
			if out.Run.Status != "SUCCEEDED" {
				return out.Run, nil, fmt.Errorf("run %s %s: %s", out.Run.RunID, out.Run.Status, out.Run.Error)
			}
			return out.Run, out.Items, nil
		}
		if time.Now().After(deadline) {
			return run, nil, fmt.Errorf("run %s did not end within 2 min", run.RunID)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
