package ops

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/payrail/payrail/internal/clientip"
	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, "login.html", "Sign in", map[string]any{"Next": safeNext(r.URL.Query().Get("next"), "/ops/")})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	name, password := strings.TrimSpace(r.PostFormValue("name")), r.PostFormValue("password")
	next := safeNext(r.PostFormValue("next"), "/ops/")
	if !sameOrigin(r, false) {
		http.Error(w, "cross-origin login refused", http.StatusForbidden)
		return
	}
	addr := c.clientAddr(r)
	if c.Throttle != nil {
		release, err := c.Throttle.Admit(r.Context(), name, addr)
		var th *Throttled
		if errors.As(err, &th) {
			outcome := "throttled"
			if th.Status == http.StatusServiceUnavailable {
				outcome = "busy"
			}
			c.observeLogin(outcome)
			// Counted and logged, not audited: refused attempts cost a
			// stranger nothing, so a row each would let them grow the table.
			// The lock itself is audited when it starts (login.throttled).
			c.Log.Warn("operator login refused", "operator", name, "remote", addr, "reason", th.Reason, "retry_after", th.RetryAfter)
			secs := max(1, int(math.Ceil(th.RetryAfter.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			w.WriteHeader(th.Status)
			c.render(w, r, "login.html", "Sign in", map[string]any{"Next": next, "Name": name,
				"Error": fmt.Sprintf("Sign-in paused: %s. Try again in %s.", th.Reason, (time.Duration(secs) * time.Second).String())})
			return
		}
		if err != nil {
			c.Log.Warn("login throttle unavailable; admitting", "err", err)
		}
		defer release()
	}
	op, err := c.Store.OperatorByName(r.Context(), name)
	hash := []byte(op.PasswordHash)
	if err != nil {
		if e, ok := payment.AsError(err); !ok || e.Code != payment.CodeOperatorNotFound {
			c.fail(w, r, err)
			return
		}
		hash = dummyHash()
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || err != nil {
		c.observeLogin("failed")
		var lock time.Duration
		if c.Throttle != nil {
			var terr error
			if lock, terr = c.Throttle.Failed(r.Context(), name); terr != nil {
				c.Log.Warn("login throttle unavailable", "err", terr)
			}
		}
		c.auditLogin(w, r, "login.failed", name, nil)
		if lock > 0 {
			c.auditLogin(w, r, "login.throttled", name, map[string]any{"lockedForSeconds": int(lock.Seconds())})
		}
		c.Log.Warn("operator login failed", "operator", name, "remote", addr, "locked_for", lock)
		w.WriteHeader(http.StatusUnauthorized)
		c.render(w, r, "login.html", "Sign in", map[string]any{"Next": next, "Name": name, "Error": "Wrong name or password."})
		return
	}
	if op.Status != "ACTIVE" {
		c.observeLogin("failed")
		c.auditLogin(w, r, "login.suspended", name, nil)
		c.Log.Warn("suspended operator refused", "operator", op.Name, "remote", addr)
		w.WriteHeader(http.StatusForbidden)
		c.render(w, r, "login.html", "Sign in", map[string]any{"Next": next, "Name": name, "Error": "This operator account is suspended."})
		return
	}
	if c.Throttle != nil {
		if err := c.Throttle.Succeeded(r.Context(), name); err != nil {
			c.Log.Warn("login throttle unavailable", "err", err)
		}
	}
	if c.RequireTOTP {
		// The password was right; the session waits for the code.
		c.auditLogin(w, r, "login.password_accepted", op.Name, nil)
		c.startSecondFactor(w, r, op.OperatorID, op.Name, addr, next)
		return
	}
	if c.openSession(w, r, op.OperatorID, op.Name, addr) {
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

// openSession starts an operator's session and sets its cookie; false
// (and the answer written) when the session store failed.
func (c *Console) openSession(w http.ResponseWriter, r *http.Request, operatorID, name, addr string) bool {
	c.observeLogin("success")
	c.auditLogin(w, r, "login.succeeded", name, nil)
	id, _, err := c.Sessions.Create(r.Context(), operatorID, name, addr, c.now())
	if err != nil {
		c.fail(w, r, err)
		return false
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: id, Path: "/ops", MaxAge: int(c.Sessions.ttl() / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.isHTTPS(r),
	})
	c.Log.Info("operator login", "operator", name)
	return true
}

func (c *Console) observeLogin(outcome string) {
	if c.ObserveLogin != nil {
		c.ObserveLogin(outcome)
	}
}

// clientAddr is the address a sign-in counts against: the one the api
// sees for the same request (clientip.Of).
func (c *Console) clientAddr(r *http.Request) string {
	if a := clientip.Of(r, c.TrustedProxies); a.IsValid() {
		return a.String()
	}
	return r.RemoteAddr
}

// isHTTPS reports whether the session cookie must be Secure: always with
// SecureCookies, else when the browser reached us over TLS, directly or
// through a trusted proxy that says so. X-Forwarded-Proto from any other
// peer is the client's own claim and is ignored.
func (c *Console) isHTTPS(r *http.Request) bool {
	if c.SecureCookies || r.TLS != nil {
		return true
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https") && c.fromTrustedProxy(r)
}

// fromTrustedProxy reports whether the request's peer is in TrustedProxies.
func (c *Console) fromTrustedProxy(r *http.Request) bool {
	peer := clientip.Peer(r)
	return peer.IsValid() && clientip.In(c.TrustedProxies, peer)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) error {
	a := session(r)
	if err := c.Sessions.Delete(r.Context(), a.id); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/ops", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.isHTTPS(r)})
	c.Log.Info("operator logout", "operator", a.sess.Operator)
	http.Redirect(w, r, "/ops/login", http.StatusSeeOther)
	return nil
}

// statuses are the order statuses the search offers.
var statuses = payment.AllStatuses

func (c *Console) orders(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.OrderSearch{
		Query:          strings.TrimSpace(q.Get("q")),
		Status:         q.Get("status"),
		MerchantID:     strings.TrimSpace(q.Get("merchant")),
		NeedsReconcile: q.Get("reconcile") != "",
		Limit:          50,
	}
	f.Before, _ = strconv.ParseInt(q.Get("before"), 10, 64)
	rows, err := c.Store.SearchOrders(r.Context(), f)
	if err != nil {
		return err
	}
	var older string
	if len(rows) == f.Limit {
		q.Set("before", strconv.FormatInt(rows[len(rows)-1].Seq, 10))
		older = "/ops/?" + q.Encode()
	}
	c.render(w, r, "orders.html", "Orders", map[string]any{"Filter": f, "Orders": rows, "Statuses": statuses, "Older": older})
	return nil
}

func (c *Console) order(w http.ResponseWriter, r *http.Request) error {
	row, err := c.Store.OrderRowAnyMerchant(r.Context(), r.PathValue("orderId"))
	if err != nil {
		return err
	}
	tl, err := c.Store.OrderTimeline(r.Context(), row.OrderID)
	if err != nil {
		return err
	}
	c.render(w, r, "order.html", "Order "+row.OrderID, map[string]any{"Order": row, "Timeline": tl})
	return nil
}

func (c *Console) callbacks(w http.ResponseWriter, r *http.Request) error {
	rows, err := c.Store.FailingCallbacks(r.Context(), 200)
	if err != nil {
		return err
	}
	eps, err := c.Store.FailingEndpoints(r.Context(), 100)
	if err != nil {
		return err
	}
	c.render(w, r, "callbacks.html", "Failing callbacks", map[string]any{"Callbacks": rows, "Endpoints": eps})
	return nil
}

// probeEndpoint ends a failing endpoint's cool-down now (an operator
// believes it is fixed): its lane sends one probe; a 2xx closes the
// breaker and the backlog drains.
func (c *Console) probeEndpoint(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("merchantId")
	if err := c.audited(w, r).ProbeNow(r.Context(), id); err != nil {
		return err
	}
	c.Log.Info("operator action", "operator", session(r).sess.Operator, "action", "endpoint.probe", "merchant_id", id)
	http.Redirect(w, r, withFlash("/ops/callbacks", "probing"), http.StatusSeeOther)
	return nil
}

func (c *Console) redeliver(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("callbackId")
	row, err := c.audited(w, r).RedeliverCallbackAsOperator(r.Context(), id, actor(r))
	if err != nil {
		return err
	}
	flash := "redelivered"
	c.Log.Info("operator action", "operator", session(r).sess.Operator, "action", "callback.redeliver", "callback_id", id, "order_id", row.OrderID, "attempt", row.Attempt)
	http.Redirect(w, r, withFlash(safeNext(r.PostFormValue("next"), "/ops/callbacks"), flash), http.StatusSeeOther)
	return nil
}

func (c *Console) attention(w http.ResponseWriter, r *http.Request) error {
	stuck, err := c.Store.StuckConfirms(r.Context(), 200)
	if err != nil {
		return err
	}
	refunds, err := c.Store.PendingRefunds(r.Context(), 200)
	if err != nil {
		return err
	}
	c.render(w, r, "attention.html", "Needs attention", map[string]any{"Stuck": stuck, "Refunds": refunds})
	return nil
}

// auditPage lists the audit trail, filtered by actor, target, action and
// time, 100 a page.
func (c *Console) auditPage(w http.ResponseWriter, r *http.Request) error {
	f, err := store.ParseAuditFilter(r.URL.Query())
	if err != nil {
		return err
	}
	sinceText := strings.TrimSpace(r.URL.Query().Get("since"))
	entries, err := c.Store.AuditLog(r.Context(), f)
	if err != nil {
		return err
	}
	var next int64
	if len(entries) == f.Limit {
		next = entries[len(entries)-1].ID
	}
	c.render(w, r, "audit.html", "Audit trail", map[string]any{"Filter": f, "SinceText": sinceText, "Entries": entries, "Next": next})
	return nil
}

func (c *Console) merchants(w http.ResponseWriter, r *http.Request) error {
	now := c.now().UTC()
	since := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	rows, err := c.Store.MerchantTotalsSince(r.Context(), since)
	if err != nil {
		return err
	}
	var count, sum int64
	for _, m := range rows {
		count += m.PaidCount
		sum += m.PaidAmount
	}
	c.render(w, r, "merchants.html", "Merchants today", map[string]any{"Since": since, "Merchants": rows, "Count": count, "Sum": sum})
	return nil
}

// enableCallbacks turns a merchant's callback endpoint back on. It
// concerns no single order, so it is recorded in the log under the
// operator's name rather than in an order's history.
func (c *Console) enableCallbacks(w http.ResponseWriter, r *http.Request) error {
	on := true
	m, err := c.audited(w, r).UpdateMerchant(r.Context(), r.PathValue("merchantId"), store.MerchantPatch{CallbackEnabled: &on})
	if err != nil {
		return err
	}
	c.Log.Info("operator action", "operator", session(r).sess.Operator, "action", "merchant.callbacks_enabled", "merchant_id", m.MerchantID)
	http.Redirect(w, r, withFlash("/ops/merchants", "enabled"), http.StatusSeeOther)
	return nil
}

// audited is the store as the signed-in operator: the action writes an
// audit_log row in its own transaction.
func (c *Console) audited(w http.ResponseWriter, r *http.Request) Store {
	if as, ok := c.Store.(interface {
		As(store.Audit) *store.Store
	}); ok {
		return as.As(store.Audit{Actor: actor(r), Addr: c.clientAddr(r), RequestID: w.Header().Get("X-Request-Id")})
	}
	return c.Store
}

// auditLogin records a sign-in attempt (there is no other change to ride
// with). A failure to record is logged; the answer stands.
func (c *Console) auditLogin(w http.ResponseWriter, r *http.Request, action, name string, details any) {
	a := store.Audit{Actor: "operator:" + name, Addr: c.clientAddr(r), RequestID: w.Header().Get("X-Request-Id")}
	if len(name) > 64 {
		a.Actor = "operator:(name over 64 characters)"
	}
	if err := c.Store.RecordAudit(r.Context(), a, action, a.Actor, details); err != nil {
		c.Log.Warn("audit of a sign-in failed", "err", err)
	}
}
