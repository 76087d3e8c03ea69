package ops_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/payrail/payrail/internal/ops"
	"github.com/payrail/payrail/internal/process"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

const (
	opName     = "alice.ops"
	opPassword = "correct horse battery"
)

func TestMain(m *testing.M) {
	// bcrypt at its default cost takes seconds under the race detector.
	ops.PasswordCost = bcrypt.MinCost
	os.Exit(m.Run())
}

// setup starts a system with one operator.
func setup(t *testing.T, opt systest.Options) *systest.System {
	t.Helper()
	sys := systest.Start(t, opt)
	status, b := sys.Admin("POST", "/admin/operators", map[string]string{"name": opName, "password": opPassword})
	if status != http.StatusCreated {
		t.Fatalf("create operator: %d %s", status, b)
	}
	if strings.Contains(string(b), opPassword) || strings.Contains(string(b), "$2a$") {
		t.Fatalf("operator answer leaks the password or its hash: %s", b)
	}
	return sys
}

// browser is an HTTP client with a cookie jar that does not follow redirects.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	Status int
	Header http.Header
	Body   string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	testenv.Must(b.t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Header, string(body)}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.base+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values, hdr ...string) page {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login signs in and remembers the page's CSRF token.
func (b *browser) login(name, password string) page {
	b.t.Helper()
	p := b.post("/ops/login", url.Values{"name": {name}, "password": {password}, "next": {"/ops/"}})
	if p.Status == http.StatusSeeOther {
		home := b.get("/ops/")
		if m := csrfRE.FindStringSubmatch(home.Body); m != nil {
			b.csrf = m[1]
		}
	}
	return p
}

func loggedIn(t *testing.T, sys *systest.System) *browser {
	t.Helper()
	b := newBrowser(t, sys.URL)
	if p := b.login(opName, opPassword); p.Status != http.StatusSeeOther {
		t.Fatalf("login: %d %s", p.Status, p.Body)
	}
	if b.csrf == "" {
		t.Fatal("no CSRF token on the orders page")
	}
	return b
}

func TestUnauthenticatedIsRefused(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	b := newBrowser(t, sys.URL)
	for _, path := range []string{"/ops/", "/ops/orders/ord_x", "/ops/callbacks", "/ops/attention", "/ops/merchants", "/ops/queues/", "/ops/queues/queues/payments"} {
		p := b.get(path)
		if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Header.Get("Location"), "/ops/login?next=") {
			t.Errorf("GET %s: %d Location=%q, want a redirect to the login", path, p.Status, p.Header.Get("Location"))
		}
	}
	if p := b.get("/ops/queues/api/queues"); p.Status != http.StatusUnauthorized {
		t.Errorf("GET /ops/queues/api/queues: %d, want 401", p.Status)
	}
	if p := b.post("/ops/callbacks/cb_x/redeliver", url.Values{"csrf": {"x"}}); p.Status != http.StatusSeeOther {
		t.Errorf("POST redeliver without session: %d, want a redirect to the login", p.Status)
	}
	req, _ := http.NewRequest("POST", sys.URL+"/admin/operators", strings.NewReader(`{"name":"mallory","password":"123456789012345"}`))
	req.Header.Set("Content-Type", "application/json")
	if p := b.do(req); p.Status != http.StatusUnauthorized {
		t.Errorf("POST /admin/operators without the admin token: %d, want 401", p.Status)
	}
	if n := sys.Count(`SELECT count(*) FROM operators`); n != 0 {
		t.Errorf("%d operators exist", n)
	}
	// A forged cookie is no session.
	u, _ := url.Parse(sys.URL + "/ops/")
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: ops.CookieName, Value: strings.Repeat("A", 43), Path: "/ops"}})
	if p := b.get("/ops/"); p.Status != http.StatusSeeOther {
		t.Errorf("forged cookie: %d, want a redirect to the login", p.Status)
	}
}

func TestOperatorAccountsAndLogin(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{})

	t.Run("admin api vets operators", func(t *testing.T) {
		if st, b := sys.Admin("POST", "/admin/operators", map[string]string{"name": "bob", "password": "short"}); st != http.StatusBadRequest {
			t.Errorf("short password: %d %s", st, b)
		}
		if st, b := sys.Admin("POST", "/admin/operators", map[string]string{"name": "bad name!", "password": opPassword}); st != http.StatusBadRequest {
			t.Errorf("bad name: %d %s", st, b)
		}
		if st, b := sys.Admin("POST", "/admin/operators", map[string]string{"name": opName, "password": opPassword}); st != http.StatusConflict {
			t.Errorf("duplicate: %d %s", st, b)
		}
		var hash string
		testenv.Must(t, sys.DB.DB.Get(&hash, `SELECT password_hash FROM operators WHERE name = $1`, opName))
		if !strings.HasPrefix(hash, "$2a$") {
			t.Errorf("stored password is not a bcrypt hash: %.7s…", hash)
		}
	})

	t.Run("login page has the stable ids", func(t *testing.T) {
		p := newBrowser(t, sys.URL).get("/ops/login")
		for _, id := range []string{`id="login-name"`, `id="login-password"`, `id="login-submit"`} {
			if !strings.Contains(p.Body, id) {
				t.Errorf("login page lacks %s", id)
			}
		}
	})

	t.Run("wrong password or name fails", func(t *testing.T) {
		for _, c := range [][2]string{{opName, "wrong password!!"}, {"nobody", opPassword}, {opName, ""}} {
			b := newBrowser(t, sys.URL)
			p := b.login(c[0], c[1])
			if p.Status != http.StatusUnauthorized || p.Header.Get("Set-Cookie") != "" {
				t.Errorf("login %q: %d Set-Cookie=%q, want 401 and no cookie", c[0], p.Status, p.Header.Get("Set-Cookie"))
			}
			if p := b.get("/ops/"); p.Status != http.StatusSeeOther {
				t.Errorf("after a failed login /ops/ answers %d", p.Status)
			}
		}
	})

	t.Run("right password sets a strict HttpOnly cookie", func(t *testing.T) {
		b := newBrowser(t, sys.URL)
		p := b.login(opName, opPassword)
		if p.Status != http.StatusSeeOther || p.Header.Get("Location") != "/ops/" {
			t.Fatalf("login: %d Location=%q", p.Status, p.Header.Get("Location"))
		}
		ck := (&http.Response{Header: p.Header}).Cookies()
		if len(ck) != 1 || ck[0].Name != ops.CookieName || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "/ops" || ck[0].Secure {
			t.Fatalf("cookie: %+v", ck)
		}
		if len(ck[0].Value) != 43 {
			t.Errorf("session id is %d characters, want 43 (256 bits)", len(ck[0].Value))
		}
		home := b.get("/ops/")
		if home.Status != 200 || !strings.Contains(home.Body, opName) {
			t.Fatalf("/ops/ after login: %d", home.Status)
		}
		if strings.Contains(fmtKeys(sys), ck[0].Value) {
			t.Error("the session id is stored in Redis in the clear")
		}
		// Logout needs the token too, and ends the session.
		if p := b.post("/ops/logout", url.Values{}); p.Status != http.StatusForbidden {
			t.Errorf("logout without csrf: %d", p.Status)
		}
		if p := b.post("/ops/logout", url.Values{"csrf": {b.csrf}}); p.Status != http.StatusSeeOther {
			t.Errorf("logout: %d", p.Status)
		}
		old := newBrowser(t, sys.URL)
		u, _ := url.Parse(sys.URL + "/ops/")
		old.c.Jar.SetCookies(u, []*http.Cookie{{Name: ops.CookieName, Value: ck[0].Value, Path: "/ops"}})
		if p := old.get("/ops/"); p.Status != http.StatusSeeOther {
			t.Errorf("a logged-out session still opens /ops/: %d", p.Status)
		}
	})

	t.Run("an untrusted peer's X-Forwarded-Proto is ignored", func(t *testing.T) {
		// Secure cookies behind a proxy: TestSessionCookieSecure.
		b := newBrowser(t, sys.URL)
		p := b.post("/ops/login", url.Values{"name": {opName}, "password": {opPassword}}, "X-Forwarded-Proto", "https")
		ck := (&http.Response{Header: p.Header}).Cookies()
		if len(ck) != 1 || ck[0].Secure {
			t.Fatalf("cookie: %+v, want one, not Secure (plain http, no trusted proxy)", ck)
		}
	})

	t.Run("login redirects only within the console", func(t *testing.T) {
		for next, want := range map[string]string{"/ops/callbacks": "/ops/callbacks", "https://evil.example/": "/ops/", "//evil.example/ops/": "/ops/", "/admin/merchants": "/ops/"} {
			p := newBrowser(t, sys.URL).post("/ops/login", url.Values{"name": {opName}, "password": {opPassword}, "next": {next}})
			if got := p.Header.Get("Location"); got != want {
				t.Errorf("next=%q: Location=%q, want %q", next, got, want)
			}
		}
	})

	t.Run("cross-origin login is refused", func(t *testing.T) {
		p := newBrowser(t, sys.URL).post("/ops/login", url.Values{"name": {opName}, "password": {opPassword}}, "Origin", "https://evil.example")
		if p.Status != http.StatusForbidden {
			t.Errorf("cross-origin login: %d", p.Status)
		}
	})
}

func fmtKeys(sys *systest.System) string {
	keys, _ := sys.Redis.Client.Keys(context.Background(), "*").Result()
	return strings.Join(keys, " ")
}

// deadCallback makes an order with a DEAD callback, as the delivery worker
// leaves one after its last attempt.
func deadCallback(t *testing.T, sys *systest.System, m *systest.Merchant) (orderID, callbackID string) {
	t.Helper()
	o := m.CreateOrder(1500)
	callbackID = "cb_ops_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	_, err := sys.DB.DB.Exec(`INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload, status, attempt, last_error)
VALUES ($1, $2, $3, 'payment.paid', '{}', 'DEAD', 10, 'HTTP 500')`, callbackID, m.MerchantID, o.OrderID)
	testenv.Must(t, err)
	_, err = sys.DB.DB.Exec(`INSERT INTO callback_attempts (callback_id, attempt, started_at, status_code, latency_ms, error) VALUES ($1, 10, now(), 500, 12, 'HTTP 500')`, callbackID)
	testenv.Must(t, err)
	return o.OrderID, callbackID
}

func TestActionsNeedCSRFAndAreRecorded(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{})
	m := sys.NewMerchant("")
	orderID, cbID := deadCallback(t, sys, m)
	b := loggedIn(t, sys)

	state := func() string {
		var st string
		var attempt int
		testenv.Must(t, sys.DB.DB.QueryRow(`SELECT status, attempt FROM callbacks WHERE callback_id = $1`, cbID).Scan(&st, &attempt))
		return st + "/" + strconv.Itoa(attempt)
	}
	opsRows := func() int {
		return sys.Count(`SELECT count(*) FROM payment_log WHERE order_id = $1 AND actor LIKE 'operator:%'`, orderID)
	}

	// The failing callbacks page and the order's timeline offer the button.
	if p := b.get("/ops/callbacks"); !strings.Contains(p.Body, `class="redeliver" data-callback-id="`+cbID+`"`) {
		t.Fatalf("failing callbacks page lacks the redeliver button: %d", p.Status)
	}
	op := b.get("/ops/orders/" + orderID)
	if !strings.Contains(op.Body, `id="timeline"`) || !strings.Contains(op.Body, `data-callback-id="`+cbID+`"`) || !strings.Contains(op.Body, "callback.attempt") {
		t.Fatalf("order page lacks the timeline, its attempt or the redeliver button: %d", op.Status)
	}

	path := "/ops/callbacks/" + cbID + "/redeliver"
	for name, form := range map[string]url.Values{
		"missing token": {"next": {"/ops/callbacks"}},
		"wrong token":   {"csrf": {b.csrf + "x"}},
		"empty token":   {"csrf": {""}},
	} {
		if p := b.post(path, form); p.Status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, p.Status)
		}
	}
	// Another operator's token is no good either.
	sys.Admin("POST", "/admin/operators", map[string]string{"name": "bob", "password": opPassword})
	other := newBrowser(t, sys.URL)
	other.login("bob", opPassword)
	if p := b.post(path, url.Values{"csrf": {other.csrf}}); p.Status != http.StatusForbidden {
		t.Errorf("another session's token: %d, want 403", p.Status)
	}
	if p := b.post(path, url.Values{"csrf": {b.csrf}}, "Origin", "https://evil.example"); p.Status != http.StatusForbidden {
		t.Errorf("cross-origin with the token: %d, want 403", p.Status)
	}
	if got := state(); got != "DEAD/10" || opsRows() != 0 {
		t.Fatalf("refused requests changed something: callback %s, %d operator log rows", got, opsRows())
	}

	p := b.post(path, url.Values{"csrf": {b.csrf}, "next": {"/ops/orders/" + orderID}})
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Header.Get("Location"), "/ops/orders/"+orderID+"?flash=") {
		t.Fatalf("redeliver: %d Location=%q %s", p.Status, p.Header.Get("Location"), p.Body)
	}
	if got := state(); !strings.HasPrefix(got, "PENDING/") || got == "PENDING/10" {
		t.Errorf("callback after redeliver: %s, want PENDING in a later attempt", got)
	}
	var action, actor string
	var details []byte
	testenv.Must(t, sys.DB.DB.QueryRow(`SELECT action, actor, details FROM payment_log WHERE order_id = $1 AND actor LIKE 'operator:%'`, orderID).Scan(&action, &actor, &details))
	if action != "ops.callback_redeliver" || actor != "operator:"+opName || !strings.Contains(string(details), cbID) {
		t.Errorf("history row: %s %s %s", action, actor, details)
	}
	// The timeline shows who did it.
	if p := b.get("/ops/orders/" + orderID); !strings.Contains(p.Body, "operator:"+opName) {
		t.Error("the timeline does not show the operator's action")
	}
	// And the delivery is queued.
	testenv.Poll(t, 20*time.Second, "the callback task to be queued", func() bool {
		p := b.get("/ops/queues/api/queues")
		return strings.Contains(p.Body, `"queue":"callbacks"`)
	})

	t.Run("re-enable a merchant's callbacks", func(t *testing.T) {
		st, body := sys.Admin("PATCH", "/admin/merchants/"+m.MerchantID, map[string]any{"callbackEnabled": false})
		if st != 200 {
			t.Fatalf("disable: %d %s", st, body)
		}
		page := b.get("/ops/merchants")
		if !strings.Contains(page.Body, "enable-callbacks") {
			t.Fatal("merchants page lacks the re-enable button")
		}
		enable := "/ops/merchants/" + m.MerchantID + "/enable-callbacks"
		if p := b.post(enable, url.Values{}); p.Status != http.StatusForbidden {
			t.Errorf("without token: %d", p.Status)
		}
		if n := sys.Count(`SELECT count(*) FROM merchants WHERE merchant_id = $1 AND callback_enabled`, m.MerchantID); n != 0 {
			t.Fatal("a refused request re-enabled callbacks")
		}
		if p := b.post(enable, url.Values{"csrf": {b.csrf}}); p.Status != http.StatusSeeOther {
			t.Errorf("with token: %d %s", p.Status, p.Body)
		}
		if n := sys.Count(`SELECT count(*) FROM merchants WHERE merchant_id = $1 AND callback_enabled`, m.MerchantID); n != 1 {
			t.Error("callbacks are still disabled")
		}
	})
}

func TestSearchFindsOrdersByEveryKey(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{})
	m1, m2 := sys.NewMerchant(""), sys.NewMerchant("")
	r := m1.Do("POST", "/v1/orders", map[string]any{"amount": 1000, "orderName": "Search me", "merchantOrderId": "shop-ref-123456"})
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	target, _ := r.JSON()["orderId"].(string)
	other := m2.CreateOrder(2000)
	_, err := sys.DB.DB.Exec(`UPDATE orders SET status = 'CONFIRMING', version = version + 1, payment_key = 'pk_search_0001', needs_reconciliation = true,
    confirm_requested_at = now(), next_check_at = now() WHERE order_id = $1`, target)
	testenv.Must(t, err)
	b := loggedIn(t, sys)

	link := func(id string) string { return `href="/ops/orders/` + id + `"` }
	for name, query := range map[string]string{
		"orderId":         "q=" + target,
		"merchantOrderId": "q=shop-ref-123456",
		"paymentKey":      "q=pk_search_0001",
		"status":          "status=CONFIRMING",
		"merchant":        "merchant=" + m1.MerchantID,
		"reconciliation":  "reconcile=1",
	} {
		p := b.get("/ops/?" + query)
		if p.Status != 200 || !strings.Contains(p.Body, `class="order-link mono" `+link(target)) {
			t.Errorf("search by %s (%s): %d, target not found", name, query, p.Status)
		}
		if strings.Contains(p.Body, link(other.OrderID)) {
			t.Errorf("search by %s also lists the other order", name)
		}
	}
	all := b.get("/ops/")
	for _, id := range []string{`id="search-q"`, `id="search-submit"`, link(target), link(other.OrderID)} {
		if !strings.Contains(all.Body, id) {
			t.Errorf("orders page lacks %s", id)
		}
	}
	if p := b.get("/ops/?q=nothing-like-this"); !strings.Contains(p.Body, `id="no-orders"`) {
		t.Error("a search with no match does not say so")
	}
	if p := b.get("/ops/attention"); !strings.Contains(p.Body, link(target)) {
		t.Error("the stuck confirm is not on the attention page")
	}
	if p := b.get("/ops/orders/ord_does_not_exist"); p.Status != http.StatusNotFound {
		t.Errorf("unknown order: %d", p.Status)
	}
	// Whatever is searched is escaped, never echoed as markup.
	if p := b.get("/ops/?q=" + url.QueryEscape(`"><script>alert(1)</script>`)); strings.Contains(p.Body, "<script>alert") {
		t.Error("the search box reflects markup")
	}
}

func TestAsynqmonBehindLogin(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{})
	b := loggedIn(t, sys)
	p := b.get("/ops/queues/")
	if p.Status != 200 || !strings.Contains(strings.ToLower(p.Body), "<html") {
		t.Fatalf("asynqmon page: %d", p.Status)
	}
	api := b.get("/ops/queues/api/queues")
	var out map[string]any
	if api.Status != 200 || json.Unmarshal([]byte(api.Body), &out) != nil {
		t.Fatalf("asynqmon api: %d %.200s", api.Status, api.Body)
	}
	req, _ := http.NewRequest("DELETE", sys.URL+"/ops/queues/api/queues/payments", nil)
	req.Header.Set("Origin", "https://evil.example")
	if p := b.do(req); p.Status != http.StatusForbidden {
		t.Errorf("cross-origin asynqmon DELETE: %d, want 403", p.Status)
	}
}

// metric sums the samples of name whose labels contain every one of labels.
func metric(body, name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

func TestMetricsMoveWhenAnOrderIsPaid(t *testing.T) {
	t.Parallel()
	var workerMetrics http.Handler
	sys := setup(t, systest.Options{Worker: true, WorkerHook: func(w *process.Worker) {
		workerMetrics = process.WorkerMetrics(w)
	}})
	wsrv := httptest.NewServer(workerMetrics)
	t.Cleanup(wsrv.Close)
	// The api's metrics are on a listener of their own (ServeAPIMetrics).
	asrv := httptest.NewServer(sys.API.Metrics)
	t.Cleanup(asrv.Close)
	scrape := func(base string) string {
		resp, err := http.Get(base + "/metrics")
		testenv.Must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s/metrics: %d", base, resp.StatusCode)
		}
		return string(b)
	}
	const confirmRoute = `route="POST /v1/orders/{orderId}/confirm"`
	before := scrape(asrv.URL)
	if n, _ := metric(before, "payrail_http_request_duration_seconds_count", confirmRoute); n != 0 {
		t.Fatalf("confirm requests before any: %v", n)
	}

	merchantSite := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(merchantSite.Close)
	m := sys.NewMerchant(merchantSite.URL + "/callbacks")
	o := m.CreateOrder(12000)
	key := sys.Session(o)
	if r := m.Confirm(o, key); r.Status/100 != 2 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	m.WaitStatus(o.OrderID, "PAID", 15*time.Second)

	testenv.Poll(t, 10*time.Second, "the metrics to move", func() bool {
		api, wk := scrape(asrv.URL), scrape(wsrv.URL)
		confirms, _ := metric(api, "payrail_http_request_duration_seconds_count", confirmRoute)
		tasks, _ := metric(wk, "payrail_tasks_total", `type="payment:confirm"`, `outcome="success"`)
		pg, _ := metric(wk, "payrail_pg_call_duration_seconds_count", `op="confirm"`)
		_, created := metric(api, "payrail_orders", `status="CREATED"`)
		_, queues := metric(api, "payrail_queue_size", `queue="payments"`)
		_, latency := metric(api, "payrail_queue_latency_seconds", `queue="callbacks"`)
		delivered, _ := metric(wk, "payrail_callback_attempt_duration_seconds_count", `outcome="delivered"`)
		return confirms >= 1 && tasks >= 1 && pg >= 1 && created && queues && latency && delivered >= 1
	})
	// The approval-to-2xx time is read from PostgreSQL every few seconds.
	testenv.Poll(t, 3*process.DeliveryPollInterval, "the approval-to-ack time", func() bool {
		n, _ := metric(scrape(asrv.URL), "payrail_callback_approval_to_ack_seconds_count", `event="payment.paid"`)
		return n >= 1
	})
	// Pages of the console are one route, never one series per order.
	last := scrape(asrv.URL)
	if strings.Contains(last, o.OrderID) {
		t.Error("an order id leaked into a metric label")
	}
	// Settled orders are business volume, never a gauge.
	if _, ok := metric(last, "payrail_orders", `status="PAID"`); ok {
		t.Error("the metrics count paid orders")
	}
}

// Item 12 of issue #20: the session cookie is Secure always with
// PAYRAIL_SECURE_COOKIES, and X-Forwarded-Proto counts only from a
// trusted proxy.
func TestSessionCookieSecure(t *testing.T) {
	t.Parallel()
	secure := func(sys *systest.System, hdr ...string) bool {
		t.Helper()
		p := newBrowser(t, sys.URL).post("/ops/login", url.Values{"name": {opName}, "password": {opPassword}, "next": {"/ops/"}}, hdr...)
		if p.Status != http.StatusSeeOther {
			t.Fatalf("login: %d %.200s", p.Status, p.Body)
		}
		c := p.Header.Get("Set-Cookie")
		if !strings.HasPrefix(c, ops.CookieName+"=") {
			t.Fatalf("no session cookie: %q", c)
		}
		return strings.Contains(c, "; Secure")
	}
	plain := setup(t, systest.Options{})
	if secure(plain) {
		t.Error("sandbox over plain http: the cookie is Secure")
	}
	// The test client is not a proxy payrail trusts: its header is a claim.
	if secure(plain, "X-Forwarded-Proto", "https") {
		t.Error("an untrusted peer's X-Forwarded-Proto: https made the cookie Secure")
	}
	proxied := setup(t, systest.Options{Env: map[string]string{"PAYRAIL_TRUSTED_PROXIES": "127.0.0.1/32,::1"}})
	if !secure(proxied, "X-Forwarded-Proto", "https") {
		t.Error("a trusted proxy's X-Forwarded-Proto: https did not make the cookie Secure")
	}
	if secure(proxied, "X-Forwarded-Proto", "http") {
		t.Error("a trusted proxy's X-Forwarded-Proto: http made the cookie Secure")
	}
	always := setup(t, systest.Options{Env: map[string]string{"PAYRAIL_SECURE_COOKIES": "true"}})
	if !secure(always) {
		t.Error("PAYRAIL_SECURE_COOKIES=true: the cookie is not Secure")
	}
}

// A failing endpoint shows with its breaker, backlog and last error, and
// "Probe now" ends its cool-down and wakes its lane.
func TestFailingEndpointsAndProbeNow(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{})
	m := sys.NewMerchant("")
	quiet := sys.NewMerchant("")
	o := m.CreateOrder(1500)
	_, err := sys.DB.DB.Exec(`INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload)
SELECT 'msg_ep_' || g, $1, $2, 'payment.paid', '{}' FROM generate_series(1, 7) g`, m.MerchantID, o.OrderID)
	testenv.Must(t, err)
	_, err = sys.DB.DB.Exec(`INSERT INTO callback_endpoints (merchant_id, failures, failing_since, open_until, cooldown_ms, last_error)
VALUES ($1, 6, now() - interval '3 minutes', now() + interval '10 minutes', 600000, 'connection refused')
ON CONFLICT (merchant_id) DO UPDATE SET failures = 6, failing_since = now() - interval '3 minutes', open_until = now() + interval '10 minutes', cooldown_ms = 600000, last_error = 'connection refused', lane_queued = false`, m.MerchantID)
	testenv.Must(t, err)
	b := loggedIn(t, sys)
	p := b.get("/ops/callbacks")
	row := `<tr data-merchant-id="` + m.MerchantID + `">`
	if !strings.Contains(p.Body, row) || !strings.Contains(p.Body, "breaker-open") || !strings.Contains(p.Body, "connection refused") ||
		!strings.Contains(p.Body, `<td class="num pending">7</td>`) || !strings.Contains(p.Body, `class="probe" data-merchant-id="`+m.MerchantID+`"`) {
		t.Fatalf("failing endpoints view lacks the endpoint, its breaker, backlog or button: %d", p.Status)
	}
	if strings.Contains(p.Body, `data-merchant-id="`+quiet.MerchantID+`"`) {
		t.Fatal("a healthy endpoint is listed as failing")
	}
	if p := b.post("/ops/endpoints/"+m.MerchantID+"/probe", url.Values{}); p.Status != http.StatusForbidden {
		t.Fatalf("probe without CSRF: %d", p.Status)
	}
	if p := b.post("/ops/endpoints/"+m.MerchantID+"/probe", url.Values{"csrf": {b.csrf}}); p.Status != http.StatusSeeOther {
		t.Fatalf("probe: %d", p.Status)
	}
	var st struct {
		Due    bool `db:"due"`
		Queued bool `db:"lane_queued"`
	}
	testenv.Must(t, sys.DB.DB.Get(&st, `SELECT open_until <= now() AS due, lane_queued FROM callback_endpoints WHERE merchant_id = $1`, m.MerchantID))
	if !st.Due || !st.Queued {
		t.Fatalf("after Probe now: cool-down over %v, lane woken %v", st.Due, st.Queued)
	}
}

// A wrong PG secret key shows on every console page and in the PG call
// metric, while the order it hit waits in CONFIRMING instead of failing.
func TestWrongPGKeyBannerAndMetric(t *testing.T) {
	t.Parallel()
	var workerMetrics http.Handler
	// A minute's backoff: a retry of the refused confirm would record the
	// alert again (last_at = now) between the test ageing it and reading
	// the page (it did, once, in make test).
	sys := setup(t, systest.Options{Worker: true, Env: map[string]string{"PAYRAIL_PG_SECRET_KEY": "test_sk_wrong", "PAYRAIL_CONFIRM_BACKOFF": "1m"},
		WorkerHook: func(w *process.Worker) { workerMetrics = process.WorkerMetrics(w) }})
	b := loggedIn(t, sys)
	if p := b.get("/ops/"); strings.Contains(p.Body, `id="pg-alert"`) {
		t.Fatal("PG alert banner before any PG call")
	}
	m := sys.NewMerchant("")
	o := m.CreateOrder(4000)
	if r := m.Confirm(o, sys.Session(o)); r.Status != 202 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	testenv.Poll(t, 15*time.Second, "the PG alert", func() bool {
		return sys.Count(`SELECT count(*) FROM pg_alerts WHERE kind = 'pg_misconfigured'`) == 1
	})
	for _, path := range []string{"/ops/", "/ops/attention", "/ops/orders/" + o.OrderID} {
		p := b.get(path)
		if !strings.Contains(p.Body, `id="pg-alert"`) || !strings.Contains(p.Body, "UNAUTHORIZED_KEY") {
			t.Fatalf("%s: no PG alert banner naming UNAUTHORIZED_KEY (%d)", path, p.Status)
		}
	}
	srv := httptest.NewServer(workerMetrics)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/metrics")
	testenv.Must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n, _ := metric(string(body), "payrail_pg_call_duration_seconds_count", `op="confirm"`, `outcome="misconfigured"`); n < 1 {
		t.Fatalf("misconfigured confirm calls in metrics = %v, want ≥ 1", n)
	}
	if got := m.Do("GET", "/v1/orders/"+o.OrderID, nil).JSON()["status"]; got != "CONFIRMING" {
		t.Fatalf("order = %v, want CONFIRMING", got)
	}
	// Old alerts leave the banner: it is about now, not history.
	_, err = sys.DB.DB.Exec(`UPDATE pg_alerts SET last_at = now() - interval '1 hour'`)
	testenv.Must(t, err)
	if p := b.get("/ops/attention"); strings.Contains(p.Body, `id="pg-alert"`) {
		t.Fatal("banner stays for an alert an hour old")
	}
}

// A cancel flagged for reconciliation is on "Needs attention" first, with
// the amount it holds and its flag.
func TestFlaggedCancelNeedsAttention(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{})
	m := sys.NewMerchant("")
	o := m.CreateOrder(8000)
	_, err := sys.DB.DB.Exec(`INSERT INTO cancels (cancel_id, order_id, merchant_id, amount, reason, pg_idempotency_key, attempts, needs_reconciliation, created_at)
VALUES ('cnl_plain', $1, $2, 1000, 'r', 'k1', 2, false, now() - interval '1 hour'),
       ('cnl_flagged', $1, $2, 3000, 'r', 'k2', 40, true, now() - interval '20 minutes')`, o.OrderID, m.MerchantID)
	testenv.Must(t, err)
	p := loggedIn(t, sys).get("/ops/attention")
	flagged := strings.Index(p.Body, `<tr data-id="cnl_flagged">`)
	plain := strings.Index(p.Body, `<tr data-id="cnl_plain">`)
	if flagged < 0 || plain < 0 || flagged > plain {
		t.Fatalf("attention page: flagged at %d, plain at %d; want both, flagged first (%d)", flagged, plain, p.Status)
	}
	row := p.Body[flagged:plain]
	if !strings.Contains(row, "needs reconciliation") || !strings.Contains(row, "3,000") {
		t.Fatalf("flagged cancel row lacks its flag or the amount held: %s", row)
	}
	plainRow, _, _ := strings.Cut(p.Body[plain:], "</tr>")
	if strings.Contains(plainRow, "needs reconciliation") || !strings.Contains(plainRow, "1,000") {
		t.Fatalf("unflagged cancel row: %s", plainRow)
	}
}

// Suspending an operator ends their open session at its next request and
// refuses their sign-in; reinstating lets them back; deleting ends it too.
// The console shows since when and from where the session signed in.
func TestSuspendedOperatorLosesTheirSession(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{})
	b := loggedIn(t, sys)
	if p := b.get("/ops/"); p.Status != http.StatusOK || !strings.Contains(p.Body, `id="signed-in-since"`) || !strings.Contains(p.Body, " from 127.0.0.1") {
		t.Fatalf("orders page: %d, or no 'signed in since … from …'", p.Status)
	}
	patch := func(status string) {
		t.Helper()
		if code, body := sys.Admin("PATCH", "/admin/operators/"+opName, map[string]string{"status": status}); code != http.StatusOK {
			t.Fatalf("PATCH operator %s: %d %s", status, code, body)
		}
	}
	patch("SUSPENDED")
	if p := b.get("/ops/"); p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Header.Get("Location"), "/ops/login") {
		t.Fatalf("a suspended operator's session: %d %s, want a redirect to the login", p.Status, p.Header.Get("Location"))
	}
	if p := newBrowser(t, sys.URL).login(opName, opPassword); p.Status != http.StatusForbidden || !strings.Contains(p.Body, "suspended") {
		t.Fatalf("a suspended operator's sign-in: %d", p.Status)
	}
	patch("ACTIVE")
	b = loggedIn(t, sys)
	if code, body := sys.Admin("DELETE", "/admin/operators/"+opName, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE operator: %d %s", code, body)
	}
	if p := b.get("/ops/"); p.Status != http.StatusSeeOther {
		t.Fatalf("a deleted operator's session: %d", p.Status)
	}
	if code, _ := sys.Admin("PATCH", "/admin/operators/"+opName, map[string]string{"status": "ACTIVE"}); code != http.StatusNotFound {
		t.Fatalf("PATCH a deleted operator: %d, want 404", code)
	}
	if code, _ := sys.Admin("PATCH", "/admin/operators/nobody", map[string]string{"status": "PAUSED"}); code != http.StatusBadRequest {
		t.Fatalf("PATCH with a bad status: %d, want 400", code)
	}
}
