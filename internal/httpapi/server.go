// Package httpapi is payrail's HTTP ingress: it authenticates, validates,
// records and enqueues, and answers. It never calls the PG and never blocks on
// a worker, except `Prefer: wait`, which only watches state.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/payrail/payrail/internal/admit"
	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/ratelimit"
	"github.com/payrail/payrail/internal/store"
)

// Enqueuer is what the ingress enqueues after a commit.
type Enqueuer interface {
	Confirm(ctx context.Context, merchantID, orderID string, version int, accepted string) error
	Cancel(ctx context.Context, cancelID string) error
	Webhook(ctx context.Context, merchantID, provider, eventKey string) error
}

var _ Enqueuer = (*queue.Client)(nil)

// Store is everything the ingress reads and writes; *store.Store is the one
// implementation. Merchant-scoped methods answer another merchant's records
// with their NOT_FOUND code and refuse an empty merchant id
// (store.ErrUnscoped); lookups return payment.Error codes a caller may see.
type Store interface {
	// Merchants, secrets and operators (admin API).
	CreateMerchant(ctx context.Context, m store.NewMerchant) (store.CreatedMerchant, error)
	// Merchant and UpdateMerchant return MERCHANT_NOT_FOUND.
	Merchant(ctx context.Context, merchantID string) (store.Merchant, error)
	UpdateMerchant(ctx context.Context, merchantID string, p store.MerchantPatch) (store.Merchant, error)
	AddSecret(ctx context.Context, merchantID, kind string) (secretID, secret string, err error)
	// RevokeSecret returns SECRET_NOT_FOUND or LAST_ACTIVE_SECRET.
	RevokeSecret(ctx context.Context, merchantID, secretID string) error
	// CreateOperator returns OPERATOR_ALREADY_EXISTS; SetOperatorStatus
	// and DeleteOperator OPERATOR_NOT_FOUND.
	CreateOperator(ctx context.Context, name, passwordHash string) (store.Operator, error)
	SetOperatorStatus(ctx context.Context, name, status string) (store.Operator, error)
	AuditLog(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error)
	DeleteOperator(ctx context.Context, name string) error
	// ResetTOTP returns OPERATOR_NOT_FOUND.
	ResetTOTP(ctx context.Context, name string) error

	// Orders (merchant API); ORDER_NOT_FOUND for another merchant's.
	CreateOrder(ctx context.Context, o store.NewOrder, fin *store.IdemFinish[payment.Order]) (payment.Order, error)
	Order(ctx context.Context, merchantID, orderID string, withHistory bool) (payment.Order, error)
	OrderRow(ctx context.Context, merchantID, orderID string) (store.OrderRow, error)
	// OrderByPaymentKey returns PAYMENT_NOT_FOUND.
	OrderByPaymentKey(ctx context.Context, merchantID, paymentKey string) (payment.Order, error)
	ListOrders(ctx context.Context, merchantID string, f store.ListFilter) (orders []payment.Order, next string, err error)
	History(ctx context.Context, orderID, cursor string, limit int) (entries []payment.LogEntry, next string, err error)
	RequestConfirm(ctx context.Context, merchantID, orderID, paymentKey, token string, amount int64, fin *store.IdemFinish[store.ConfirmResult]) (store.ConfirmResult, error)
	RequestCancel(ctx context.Context, merchantID, orderID, reason string, amount int64, refund *payment.RefundAccount, fin *store.IdemFinish[store.Cancel]) (store.Cancel, error)
	// CancelByID returns CANCEL_NOT_FOUND.
	CancelByID(ctx context.Context, merchantID, orderID, cancelID string) (store.Cancel, error)

	// Callbacks (merchant API); CALLBACK_NOT_FOUND for another merchant's.
	Callbacks(ctx context.Context, f store.CallbackFilter) ([]store.Callback, error)
	RedeliverCallback(ctx context.Context, merchantID, callbackID string) (store.Callback, error)

	// Idempotency-Key: IDEMPOTENCY_KEY_REUSED or IDEMPOTENCY_KEY_IN_USE.
	ClaimIdempotency(ctx context.Context, scope store.IdemScope, requestHash []byte) (*store.IdemClaim, *store.StoredResponse, error)
	ReleaseIdempotency(ctx context.Context, c *store.IdemClaim) error

	// PG webhooks: OrderRowForEvent returns ORDER_NOT_FOUND.
	OrderRowForEvent(ctx context.Context, paymentKey, orderID string) (store.OrderRow, error)
	InsertPGEvent(ctx context.Context, e store.PGEvent) (stored bool, err error)
	// StoreStatusEvent finds the order a PAYMENT_STATUS_CHANGED names and
	// stores it (IGNORED when the order shows it) in one statement;
	// ORDER_NOT_FOUND when none matches.
	StoreStatusEvent(ctx context.Context, e store.PGEvent) (store.StatusEvent, error)
	// DEPOSIT_CALLBACK: the order's stored secret, compared in constant
	// time (stored is false before the account is known), and the
	// security event of a mismatch.
	VASecret(row store.OrderRow) (secret string, stored bool, err error)
	RecordDepositSecretMismatch(ctx context.Context, orderID, source string) error
}

var _ Store = (*store.Store)(nil)

// Server holds the ingress's dependencies.
type Server struct {
	Store    Store
	Verifier *auth.Verifier
	Queue    Enqueuer
	Waiter   *Waiter
	Log      *slog.Logger
	// AdminToken, or AdminTokens during a rotation, opens the admin API.
	AdminToken  string
	AdminTokens []string
	CheckoutURL string
	// Sandbox opens the /pg/webhooks/mockpg door; PGWebhookSecret verifies
	// its X-MockPG-Signature. Outside sandbox mode that door is a 404.
	Sandbox         bool
	PGWebhookSecret string
	// Now is the clock for webhook timestamps; nil means time.Now.
	Now func() time.Time
	// PGEvent, when set, counts PG webhooks by provider and outcome
	// (PGEventStored, PGEventInvalid, …).
	PGEvent func(provider, outcome string)
	// Limiter, when set, rate-limits the PG webhook door per source
	// address at WebhookLimit; WebhookAllow, when not empty, is the only
	// source networks the door answers.
	Limiter      *ratelimit.Limiter
	WebhookLimit ratelimit.Limit
	WebhookAllow []netip.Prefix
	// MerchantLimits, with Limiter, rate-limits each merchant's requests.
	MerchantLimits *MerchantLimits
	// Shedder, when set, refuses new orders while confirms fall behind.
	Shedder *Shedder
	// Admission, when set, lowers the new-order rate of the merchants
	// sending more than their share while serving requests is slow.
	Admission *admit.Controller
	// FairInFlight, with Admission, is the database pool's size: while
	// several merchants create orders, each may have at most its part of
	// it (FairInFlight ÷ those merchants, at least 4) in flight here.
	FairInFlight int
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// finding a request's source address.
	TrustedProxies []netip.Prefix
	OrderTTL       time.Duration
	// ValidateCallbackURL vets a merchant's callback URL at registration.
	ValidateCallbackURL func(string) error
	// CredentialsChanged is called after an admin changes a merchant or its
	// secrets, so a credentials cache forgets at once.
	CredentialsChanged func()
	// Ready reports whether PostgreSQL and Redis answer.
	Ready func(ctx context.Context) error
	// Extra mounts more handlers (ops console, asynqmon, metrics, webhooks).
	Extra map[string]http.Handler
	// Observe, when set, is told of every request's route, status and latency.
	Observe func(route string, status int, d time.Duration)
}

// Handler returns the routed, instrumented handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /readyz", s.readyz)

	admin := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.adminOnly(h)) }
	admin("POST /admin/merchants", s.createMerchant)
	admin("GET /admin/merchants/{merchantId}", s.getMerchant)
	admin("PATCH /admin/merchants/{merchantId}", s.patchMerchant)
	admin("POST /admin/merchants/{merchantId}/secrets", s.addSecret)
	admin("DELETE /admin/merchants/{merchantId}/secrets/{secretId}", s.revokeSecret)
	admin("POST /admin/operators", s.createOperator)
	admin("PATCH /admin/operators/{name}", s.patchOperator)
	admin("DELETE /admin/operators/{name}", s.deleteOperator)
	admin("POST /admin/operators/{name}/reset-2fa", s.resetOperator2FA)
	admin("GET /admin/audit", s.listAudit)
	admin("POST /admin/recon", s.startRecon)
	admin("GET /admin/recon", s.listRecon)
	admin("GET /admin/recon/{runId}", s.getRecon)

	merchant := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.merchantOnly(h)) }
	merchant("POST /v1/orders", s.createOrder)
	merchant("GET /v1/orders", s.listOrders)
	merchant("GET /v1/orders/{orderId}", s.getOrder)
	merchant("GET /v1/orders/{orderId}/history", s.getHistory)
	merchant("POST /v1/orders/{orderId}/confirm", s.confirm)
	merchant("GET /v1/payments/{paymentKey}", s.getPayment)
	merchant("GET /v1/callbacks", s.listCallbacks)
	merchant("POST /v1/callbacks/{callbackId}/redeliver", s.redeliverCallback)
	merchant("POST /v1/orders/{orderId}/cancel", s.cancel)
	merchant("GET /v1/orders/{orderId}/cancels/{cancelId}", s.getCancel)
	mux.HandleFunc("POST /pg/webhooks/{provider}", s.pgWebhook)

	for pattern, h := range s.Extra {
		mux.Handle(pattern, h)
	}
	return s.instrument(mux)
}

// instrument adds the request id, the request logger, panic recovery, a
// problem+json 404/405, and observation.
func (s *Server) instrument(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := r.Header.Get("X-Request-Id")
		if rid == "" || len(rid) > 64 {
			rid = store.NewID("req_", 20)
		}
		log := s.Log.With("request_id", rid)
		ctx := context.WithValue(r.Context(), keyRequestID, rid)
		ctx = context.WithValue(ctx, keyLogger, log)
		r = r.WithContext(ctx)
		w.Header().Set("X-Request-Id", rid)
		sw := &statusWriter{ResponseWriter: w, status: 200}
		_, pattern := mux.Handler(r)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("panic", "panic", p, "path", r.URL.Path)
				if !sw.wrote {
					writeCode(ctx, sw, payment.CodeInternal, "internal error")
				}
			}
			d := time.Since(start)
			route := pattern
			if route == "" {
				route = "unmatched"
			}
			if s.Observe != nil {
				s.Observe(route, sw.status, d)
			}
			if !strings.HasPrefix(r.URL.Path, "/ops/queues") && r.URL.Path != "/metrics" {
				log.Info("request", "method", r.Method, "route", route, "status", sw.status, "ms", float64(d.Microseconds())/1000)
			}
		}()
		if pattern == "" {
			code := payment.CodeNotFound
			// ServeMux answers 405 itself when only the method is wrong.
			if h, _ := mux.Handler(r); h != nil {
				rec := &probeWriter{header: http.Header{}}
				h.ServeHTTP(rec, r)
				if rec.status == http.StatusMethodNotAllowed {
					code = payment.CodeMethodNotAllowed
					sw.Header().Set("Allow", rec.header.Get("Allow"))
				}
			}
			writeCode(ctx, sw, code, "no such route")
			return
		}
		if !storableURL(r.URL) {
			writeCode(ctx, sw, payment.CodeInvalidRequest, "the path or query has a NUL or invalid UTF-8")
			return
		}
		mux.ServeHTTP(sw, r)
	})
}

// storableURL reports whether the decoded path and query are text
// PostgreSQL can compare against: a NUL or invalid UTF-8 in an id or a
// filter would otherwise reach a query and come back as a 500.
func storableURL(u *url.URL) bool {
	ok := func(v string) bool { return utf8.ValidString(v) && !strings.ContainsRune(v, 0) }
	if !ok(u.Path) {
		return false
	}
	// A malformed pair is dropped by ParseQuery and by the handlers alike;
	// only what a handler could read matters here.
	q, _ := url.ParseQuery(u.RawQuery)
	for k, vs := range q {
		if !ok(k) {
			return false
		}
		for _, v := range vs {
			if !ok(v) {
				return false
			}
		}
	}
	return true
}

type probeWriter struct {
	header http.Header
	status int
}

func (p *probeWriter) Header() http.Header         { return p.header }
func (p *probeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (p *probeWriter) WriteHeader(s int)           { p.status = s }

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if s.Ready != nil {
		if err := s.Ready(ctx); err != nil {
			logger(ctx).Warn("not ready", "err", err)
			writeCode(r.Context(), w, payment.CodeUnavailable, "a dependency does not answer")
			return
		}
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

// AdminOnly guards h with the admin bearer token.
func (s *Server) AdminOnly(h http.Handler) http.Handler { return s.adminOnly(h.ServeHTTP) }

func (s *Server) adminTokens() []string {
	if s.AdminToken == "" {
		return s.AdminTokens
	}
	return append([]string{s.AdminToken}, s.AdminTokens...)
}

func (s *Server) adminOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !auth.AdminTokenOK(s.adminTokens(), r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="payrail-admin"`)
			writeCode(r.Context(), w, payment.CodeUnauthorized, "admin bearer token required")
			return
		}
		body, err := readBody(r)
		if err != nil {
			writeError(r.Context(), w, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), keyBody, body)))
	})
}

// merchantOnly reads the body (≤ 1 MiB), verifies the HMAC signature and
// scopes the request to the merchant.
func (s *Server) merchantOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err != nil {
			writeError(r.Context(), w, err)
			return
		}
		merchantID, err := s.Verifier.Verify(r.Context(), r, body)
		if err != nil {
			writeError(r.Context(), w, err)
			return
		}
		release, ok := s.admitMerchant(w, r, merchantID)
		if !ok {
			return
		}
		release = s.timed(release)
		defer release()
		ctx := context.WithValue(r.Context(), keyMerchant, merchantID)
		ctx = context.WithValue(ctx, keyRelease, release)
		ctx = context.WithValue(ctx, keyBody, body)
		ctx = context.WithValue(ctx, keyLogger, logger(ctx).With("merchant_id", merchantID))
		h(w, r.WithContext(ctx))
	})
}

// timed makes release also record the request's service time for
// admission control (once, however often it is called).
func (s *Server) timed(release func()) func() {
	if s.Admission == nil {
		return release
	}
	start := time.Now()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.Admission.Observe(time.Since(start))
			release()
		})
	}
}

// leaveInFlight ends the request's place in its merchant's in-flight
// bound (a confirm that now only waits for the worker).
func leaveInFlight(r *http.Request) {
	if f, ok := r.Context().Value(keyRelease).(func()); ok {
		f()
	}
}

func merchantID(r *http.Request) string {
	v, _ := r.Context().Value(keyMerchant).(string)
	return v
}

func body(r *http.Request) []byte {
	v, _ := r.Context().Value(keyBody).([]byte)
	return v
}
