// Package ops is payrail's operator console: the login, sessions and CSRF
// protection that guard /ops (asynqmon included), and the server-rendered
// pages where people search orders, read an order's whole timeline, and act
// on what needs a person (failing callbacks, stuck confirms, pending
// refunds, disabled merchant endpoints). Every action is recorded under the
// operator's name. It never moves an order's status itself: actions go
// through the store and the queue like any other writer.
package ops

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

// Store is what the console reads and writes.
type Store interface {
	// OperatorByName returns OPERATOR_NOT_FOUND for an unknown name.
	OperatorByName(ctx context.Context, name string) (store.Operator, error)
	SearchOrders(ctx context.Context, f store.OrderSearch) ([]store.OrderRow, error)
	// OrderRowAnyMerchant returns ORDER_NOT_FOUND for an unknown order.
	OrderRowAnyMerchant(ctx context.Context, orderID string) (store.OrderRow, error)
	OrderTimeline(ctx context.Context, orderID string) ([]store.TimelineEntry, error)
	FailingCallbacks(ctx context.Context, limit int) ([]store.CallbackRow, error)
	// RedeliverCallbackAsOperator returns CALLBACK_NOT_FOUND for an
	// unknown callback.
	RedeliverCallbackAsOperator(ctx context.Context, callbackID, actor string) (store.CallbackRow, error)
	// FailingEndpoints lists endpoints whose breaker is open or failing.
	FailingEndpoints(ctx context.Context, limit int) ([]store.FailingEndpoint, error)
	// ProbeNow ends a breaker's cool-down and wakes the lane;
	// MERCHANT_NOT_FOUND for an unknown endpoint.
	ProbeNow(ctx context.Context, merchantID string) error
	StuckConfirms(ctx context.Context, limit int) ([]store.OrderRow, error)
	PendingRefunds(ctx context.Context, limit int) ([]store.PendingRefund, error)
	MerchantTotalsSince(ctx context.Context, since time.Time) ([]store.MerchantTotal, error)
	// UpdateMerchant returns MERCHANT_NOT_FOUND for an unknown merchant.
	UpdateMerchant(ctx context.Context, merchantID string, p store.MerchantPatch) (store.Merchant, error)
	// RecordAudit writes an audit row with no other change (sign-ins).
	RecordAudit(ctx context.Context, a store.Audit, action, target string, details any) error
	// AuditLog lists audit rows newest first.
	AuditLog(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error)
	// OperatorTOTP is the operator's TOTP secret, "" before enrolment;
	// EnableTOTP stores a confirmed one with its recovery codes' hashes;
	// UseTOTPStep and UseRecoveryCode accept a step or a code once.
	OperatorTOTP(ctx context.Context, operatorID string) (string, error)
	EnableTOTP(ctx context.Context, operatorID, secret string, recoveryHashes [][]byte) error
	UseTOTPStep(ctx context.Context, operatorID string, step int64) (bool, error)
	UseRecoveryCode(ctx context.Context, operatorID string, hash []byte) (bool, error)
	// OperatorActive reports whether the operator exists and is ACTIVE.
	OperatorActive(ctx context.Context, operatorID string) (bool, error)
	// ActivePGAlert returns the alert of kind seen within `within`, or nil.
	ActivePGAlert(ctx context.Context, kind string, within time.Duration) (*store.PGAlert, error)
	// Reconciliation runs (ReconRunByID: store.ErrNotFound).
	ReconRuns(ctx context.Context, limit int) ([]store.ReconRun, error)
	ReconRunByID(ctx context.Context, runID string) (store.ReconRun, error)
	ReconItems(ctx context.Context, runID string, after int64, limit int, attentionOnly bool) ([]store.ReconItem, error)
	CreateReconRun(ctx context.Context, from, to time.Time, trigger, by string) (store.ReconRun, bool, error)
}

// AlertWindow is how long after its last occurrence a PG alert stays on
// every console page.
const AlertWindow = 10 * time.Minute

// Console serves /ops. Mount Handler at "/ops/".
type Console struct {
	Store    Store
	Sessions *Sessions
	// Queues is asynqmon, built with RootPath "/ops/queues"; nil leaves
	// /ops/queues/ unmounted.
	Queues http.Handler
	Log    *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// SecureCookies marks the session cookie Secure on every answer
	// (PAYRAIL_SECURE_COOKIES); without it the cookie is Secure only for
	// TLS requests, direct or through one of TrustedProxies.
	SecureCookies bool
	// TrustedProxies are the peers whose X-Forwarded-Proto and
	// X-Forwarded-For are believed.
	TrustedProxies []netip.Prefix
	// Throttle slows password guessing; nil leaves logins unthrottled
	// (tests of other things).
	Throttle *LoginThrottle
	// ObserveLogin, when set, counts logins by outcome (success, failed,
	// throttled, busy).
	ObserveLogin func(outcome string)
	// RequireTOTP asks every operator for a TOTP code after the password,
	// enrolling those without one (PAYRAIL_OPS_REQUIRE_TOTP).
	RequireTOTP bool
	// EnqueueRecon has a worker run a recorded reconciliation; nil hides
	// the re-run button.
	EnqueueRecon func(ctx context.Context, runID string) error
}

// CookieName is the session cookie.
const CookieName = "payrail_ops"

// MinPasswordLen is the shortest operator password accepted.
const MinPasswordLen = 12

// CheckOperator vets a new operator's name and password.
func CheckOperator(name, password string) error {
	if name == "" || len(name) > 64 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") != "" {
		return payment.Errorf(payment.CodeInvalidRequest, "name must be 1–64 characters of letters, digits, '.', '_', '@' and '-'")
	}
	if utf8.RuneCountInString(password) < MinPasswordLen {
		return payment.Errorf(payment.CodeInvalidRequest, "password must be at least %d characters", MinPasswordLen)
	}
	if len(password) > 72 {
		// bcrypt reads only 72 bytes; refuse rather than silently truncate.
		return payment.Errorf(payment.CodeInvalidRequest, "password must be at most 72 bytes")
	}
	return nil
}

// PasswordCost is the bcrypt cost of new operator passwords. Tests lower it
// (before anything hashes) because bcrypt under the race detector takes
// seconds; a stored hash keeps the cost it was made with.
var PasswordCost = bcrypt.DefaultCost

// HashPassword returns the bcrypt hash stored for an operator.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), PasswordCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// dummyHash is compared against when the operator does not exist, so a
// wrong name costs as long as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("payrail-no-such-operator"), PasswordCost)
	return h
})

func (c *Console) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

type ctxKey struct{}

type authed struct {
	id   string
	sess Session
}

func session(r *http.Request) authed {
	a, _ := r.Context().Value(ctxKey{}).(authed)
	return a
}

// Handler routes /ops/*.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ops/login", c.loginPage)
	mux.HandleFunc("POST /ops/login", c.login)
	mux.HandleFunc("GET /ops/login/totp", c.totpPage)
	mux.HandleFunc("POST /ops/login/totp", c.totpSubmit)
	mux.Handle("POST /ops/logout", c.action(c.logout))
	mux.Handle("GET /ops/{$}", c.page(c.orders))
	mux.Handle("GET /ops/orders/{orderId}", c.page(c.order))
	mux.Handle("GET /ops/callbacks", c.page(c.callbacks))
	mux.Handle("POST /ops/callbacks/{callbackId}/redeliver", c.action(c.redeliver))
	mux.Handle("GET /ops/attention", c.page(c.attention))
	mux.Handle("GET /ops/merchants", c.page(c.merchants))
	mux.Handle("GET /ops/audit", c.page(c.auditPage))
	mux.Handle("GET /ops/recon", c.page(c.reconPage))
	mux.Handle("GET /ops/recon/{runId}", c.page(c.reconRunPage))
	mux.Handle("POST /ops/recon", c.action(c.reconRerun))
	mux.Handle("POST /ops/merchants/{merchantId}/enable-callbacks", c.action(c.enableCallbacks))
	mux.Handle("POST /ops/endpoints/{merchantId}/probe", c.action(c.probeEndpoint))
	if c.Queues != nil {
		mux.Handle("/ops/queues/", c.requireSession(c.queues()))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/ops/queues/") {
			// asynqmon's page needs its own inline scripts; ours need nothing.
			w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Referrer-Policy", "same-origin")
		}
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r)
	})
}

// requireSession lets a request through only with a live session cookie.
// Without one, asynqmon's API answers 401 and pages redirect to the login.
func (c *Console) requireSession(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var sess Session
		ck, err := r.Cookie(CookieName)
		if err == nil {
			sess, err = c.Sessions.Get(r.Context(), ck.Value, c.now())
		}
		if err == nil {
			// Suspended or deleted: the session ends now, on every replica.
			active, aerr := c.Store.OperatorActive(r.Context(), sess.OperatorID)
			switch {
			case aerr != nil:
				err = aerr
			case !active:
				_ = c.Sessions.Delete(r.Context(), ck.Value)
				c.Log.Warn("session of a suspended or deleted operator refused", "operator", sess.Operator)
				err = errNoSession
			}
		}
		if err != nil {
			if !errors.Is(err, errNoSession) && !errors.Is(err, http.ErrNoCookie) {
				c.Log.Error("ops session", "err", err)
				http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
				return
			}
			if strings.HasPrefix(r.URL.Path, "/ops/queues/api/") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"error":"operator login required"}` + "\n"))
				return
			}
			next := r.URL.Path
			if r.Method != http.MethodGet {
				next = ""
			} else if r.URL.RawQuery != "" {
				next += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, "/ops/login?next="+url.QueryEscape(next), http.StatusSeeOther)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, authed{id: ck.Value, sess: sess})))
	})
}

// queues guards asynqmon. Its single-page app issues its own POST and
// DELETE requests and cannot carry our CSRF token, so a state-changing
// request must come from our own origin (browsers always send Origin on
// them); SameSite=Strict on the cookie is the second wall. Each such call
// is logged under the operator's name.
func (c *Console) queues() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if !sameOrigin(r, true) {
				http.Error(w, "cross-origin request refused", http.StatusForbidden)
				return
			}
			c.Log.Info("operator action", "operator", session(r).sess.Operator, "action", "asynqmon", "method", r.Method, "path", r.URL.Path)
		}
		c.Queues.ServeHTTP(w, r)
	})
}

// sameOrigin reports whether the request's Origin (or, failing it,
// Sec-Fetch-Site) says it came from this site. Without either header the
// answer is !required (old clients and curl send neither).
func sameOrigin(r *http.Request, required bool) bool {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin" || s == "none"
	}
	return !required
}

// page wraps a GET page: a session, then the page.
func (c *Console) page(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return c.requireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			c.fail(w, r, err)
		}
	}))
}

// action wraps a console POST: a session, a same-origin request and the
// session's CSRF token in the form, compared in constant time. Anything
// missing or wrong is a 403 and the action does not run.
func (c *Console) action(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return c.requireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		token := r.PostFormValue("csrf")
		want := session(r).sess.CSRF
		if token == "" || want == "" || subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 || !sameOrigin(r, false) {
			c.Log.Warn("ops csrf check failed", "operator", session(r).sess.Operator, "path", r.URL.Path)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte("403 forbidden: missing or invalid CSRF token; reload the page and try again\n"))
			return
		}
		if err := h(w, r); err != nil {
			c.fail(w, r, err)
		}
	}))
}

// fail renders an error page: domain errors say what went wrong; anything
// else is logged and shown as a generic 500.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "internal error; see the api logs"
	if e, ok := payment.AsError(err); ok {
		if s, known := payment.HTTPStatus(e.Code); known {
			status, msg = s, e.Message
		} else {
			c.Log.Error("ops console: error code missing from the status table", "code", e.Code, "path", r.URL.Path)
		}
	} else {
		c.Log.Error("ops console", "err", err, "path", r.URL.Path)
	}
	w.WriteHeader(status)
	c.render(w, r, "error.html", "Error", map[string]any{"Status": status, "Message": msg})
}

// actor is how an operator appears in an order's history.
func actor(r *http.Request) string { return "operator:" + session(r).sess.Operator }

// safeNext keeps a post-login or post-action redirect on the console.
func safeNext(next, fallback string) string {
	u, err := url.Parse(next)
	if next == "" || err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/ops/") ||
		strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return fallback
	}
	return next
}

func withFlash(next, flash string) string {
	sep := "?"
	if strings.Contains(next, "?") {
		sep = "&"
	}
	return next + sep + "flash=" + url.QueryEscape(flash)
}

// flashes are the only messages a redirect may ask a page to show, so a
// link cannot make the console say something of the sender's choosing.
var flashes = map[string]string{
	"redelivered":     "Callback put back in the outbox and enqueued.",
	"probing":         "Probe sent: the endpoint's oldest due callback goes out now; a 2xx closes the breaker.",
	"redeliver-later": "Callback put back in the outbox; enqueueing failed, the sweep will deliver it.",
	"enabled":         "Callbacks re-enabled for the merchant.",
}

//go:embed templates/*.html
var templateFS embed.FS

var funcs = template.FuncMap{
	"ts": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			return v.UTC().Format("2006-01-02 15:04:05.000Z")
		case *time.Time:
			if v == nil {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05.000Z")
		}
		return ""
	},
	"money": func(n int64) string {
		s := strconv.FormatInt(n, 10)
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimPrefix(s, "-")
		var b strings.Builder
		for i, ch := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(ch)
		}
		if neg {
			return "-" + b.String()
		}
		return b.String()
	},
	"deref": func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	},
	"json": func(v any) string {
		if m, ok := v.(map[string]any); ok && len(m) == 0 {
			return ""
		}
		b, _ := json.Marshal(v)
		return string(b)
	},
	"redeliverable": func(e store.TimelineEntry) bool {
		st, _ := e.Details["status"].(string)
		return e.Kind == "callback" && st != "DELIVERED"
	},
}

var pages = map[string]*template.Template{}

func init() {
	names, err := templateFS.ReadDir("templates")
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		if n.Name() == "layout.html" {
			continue
		}
		pages[n.Name()] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n.Name()))
	}
}

// view is what every page template gets.
type view struct {
	Title    string
	Operator string
	// Since and From are when and where this session signed in.
	Since time.Time
	From  string
	CSRF  string
	Path  string
	Flash string
	// PGAlert, when set, is the banner on every page: the PG is refusing
	// payrail's own credentials or request, and confirms are being retried.
	PGAlert *store.PGAlert
	Data    any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, name, title string, data any) {
	a := session(r)
	v := view{Title: title, Operator: a.sess.Operator, Since: a.sess.CreatedAt, From: a.sess.Addr, CSRF: a.sess.CSRF, Path: r.URL.RequestURI(), Flash: flashes[r.URL.Query().Get("flash")], Data: data}
	if v.Operator != "" {
		a, err := c.Store.ActivePGAlert(r.Context(), store.AlertPGMisconfigured, AlertWindow)
		if err != nil {
			c.Log.Warn("ops: reading PG alerts", "err", err)
		}
		v.PGAlert = a
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	}
	if err := pages[name].Execute(w, v); err != nil {
		c.Log.Error("ops render", "page", name, "err", err)
	}
}
