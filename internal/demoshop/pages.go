package demoshop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

func (s *Server) parseTemplates() error {
	funcs := template.FuncMap{
		"won": won,
		"ms":  func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) },
		"badgeClass": func(b string) string {
			switch b {
			case BadgeSuccess:
				return "success"
			case BadgeDuplicate:
				return "duplicate"
			case BadgePending, BadgeAwaitingDeposit:
				return "pending"
			}
			return "failure"
		},
	}
	s.pages = map[string]*template.Template{}
	for _, page := range []string{"product.html", "result.html", "playground.html", "error.html"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/panel.html", "templates/"+page)
		if err != nil {
			return fmt.Errorf("demoshop: parse %s: %w", page, err)
		}
		s.pages[page] = t
	}
	return nil
}

func (s *Server) render(w http.ResponseWriter, status int, page string, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	data["PGConsoleURL"] = s.cfg.PGConsoleURL
	data["APIURL"] = s.cfg.APIURL
	data["ClientID"] = s.creds.ClientID
	var buf bytes.Buffer
	if err := s.pages[page].Execute(&buf, data); err != nil {
		s.log.Error("demoshop: render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

func (s *Server) renderError(w http.ResponseWriter, status int, code, message string) {
	s.render(w, status, "error.html", map[string]any{"Title": "Something went wrong", "Code": code, "Message": message, "Status": status})
}

func (s *Server) handleProduct(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "product.html", map[string]any{"Title": s.product.Name, "Product": s.product})
}

// handlePay creates the order server side, signed, and sends the browser to
// the PG's payment window.
func (s *Server) handlePay(w http.ResponseWriter, r *http.Request) {
	moid := newMerchantOrderID()
	success := s.cfg.PublicURL + "/return/success?order=" + url.QueryEscape(moid)
	fail := s.cfg.PublicURL + "/return/fail?order=" + url.QueryEscape(moid)
	resp, err := s.doJSON(r.Context(), http.MethodPost, "/v1/orders", map[string]any{
		"merchantOrderId": moid,
		"amount":          s.product.Amount,
		"orderName":       s.product.Name,
		"successUrl":      success,
		"failUrl":         fail,
	}, nil)
	if err != nil {
		s.events.stepOK("", false, "POST /v1/orders failed: %v", err)
		s.renderError(w, http.StatusBadGateway, "PAYRAIL_UNREACHABLE", "Could not create the order: "+err.Error())
		return
	}
	if resp.Status != http.StatusCreated {
		code, msg := problem(resp)
		s.events.stepOK("", false, "POST /v1/orders → %d %s", resp.Status, code)
		s.renderError(w, http.StatusBadGateway, code, fmt.Sprintf("payrail refused the order (HTTP %d): %s", resp.Status, msg))
		return
	}
	var created struct {
		OrderID      string `json:"orderId"`
		PaymentToken string `json:"paymentToken"`
		CheckoutURL  string `json:"checkoutUrl"`
		Amount       int64  `json:"amount"`
	}
	if err := json.Unmarshal(resp.Body, &created); err != nil || created.OrderID == "" || created.CheckoutURL == "" {
		s.renderError(w, http.StatusBadGateway, "BAD_ANSWER", "payrail's answer to POST /v1/orders could not be read")
		return
	}
	o := &order{
		OrderID: created.OrderID, MerchantOrderID: moid, PaymentToken: created.PaymentToken,
		CheckoutURL: created.CheckoutURL, Amount: s.product.Amount, Name: s.product.Name, CreatedAt: s.now(),
	}
	s.mu.Lock()
	s.orders[o.OrderID] = o
	s.mu.Unlock()
	s.events.stepOK(o.OrderID, true, "① order created: POST /v1/orders → 201 (%s, %d ms)", won(o.Amount), resp.Elapsed.Milliseconds())
	s.events.step(o.OrderID, "② browser redirected to the PG's payment window")
	http.Redirect(w, r, o.CheckoutURL, http.StatusSeeOther)
}

// handleReturn serves the merchant's default returnUrl, for orders created
// elsewhere (the playground) without their own success and fail URLs.
func (s *Server) handleReturn(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case q.Get("paymentKey") != "":
		s.handleReturnSuccess(w, r)
	case q.Get("code") != "":
		s.handleReturnFail(w, r)
	default:
		http.Redirect(w, r, "/", http.StatusSeeOther)
	}
}

// handleReturnSuccess is where the PG sends the buyer after approval. The
// query string is the browser's word, so it is only a hint: the amount must
// match what demoshop stored, and the outcome is payrail's answer.
func (s *Server) handleReturnSuccess(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	o, ok := s.order(q.Get("orderId"))
	if !ok {
		s.renderError(w, http.StatusNotFound, "UNKNOWN_ORDER", errUnknownOrder.Error())
		return
	}
	paymentKey := q.Get("paymentKey")
	s.events.step(o.OrderID, "③ returned from the PG with paymentKey %s", paymentKey)
	if got := q.Get("amount"); got != strconv.FormatInt(o.Amount, 10) {
		s.events.stepOK(o.OrderID, false, "amount in the return URL (%s) differs from the order (%d): not confirmed", got, o.Amount)
		s.record(o, attempt{Action: "return from PG", Badge: BadgeFailure, Code: "AMOUNT_TAMPERED",
			Message: fmt.Sprintf("The amount in the return URL (%q) is not the order's amount (%s). demoshop did not confirm.", got, won(o.Amount))})
		http.Redirect(w, r, "/orders/"+url.PathEscape(o.OrderID), http.StatusSeeOther)
		return
	}
	if paymentKey == "" {
		s.renderError(w, http.StatusBadRequest, "MISSING_PAYMENT_KEY", "The PG sent no paymentKey.")
		return
	}
	s.mu.Lock()
	first := o.PaymentKey == ""
	if first {
		o.PaymentKey = paymentKey
	}
	s.mu.Unlock()
	if !first && o.PaymentKey != paymentKey {
		// A second payment window for one order; confirm what the PG says,
		// payrail will answer PAYMENT_KEY_CONFLICT if one is already in.
		s.mu.Lock()
		o.PaymentKey = paymentKey
		s.mu.Unlock()
	}
	s.confirm(r.Context(), o, "confirm", paymentKey, o.Amount, o.PaymentToken, "")
	http.Redirect(w, r, "/orders/"+url.PathEscape(o.OrderID), http.StatusSeeOther)
}

// handleReturnFail is where the PG sends a buyer who cancelled or whose card
// was declined. Nothing is confirmed; the order stays CREATED until it
// expires or the buyer tries again.
func (s *Server) handleReturnFail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	o, ok := s.order(q.Get("orderId"))
	if !ok {
		s.renderError(w, http.StatusNotFound, "UNKNOWN_ORDER", errUnknownOrder.Error())
		return
	}
	code, msg := q.Get("code"), q.Get("message")
	if code == "" {
		code = "PG_FAILURE"
	}
	s.events.stepOK(o.OrderID, false, "③ returned from the PG without payment: %s", code)
	s.record(o, attempt{Action: "PG payment window", Badge: BadgeFailure, Code: code,
		Message: msg + " (the PG's answer; no confirm was sent, the order stays CREATED until it expires)"})
	http.Redirect(w, r, "/orders/"+url.PathEscape(o.OrderID), http.StatusSeeOther)
}

func (s *Server) handleConfirmAgain(w http.ResponseWriter, r *http.Request) {
	o, ok := s.order(r.PathValue("orderId"))
	if !ok {
		s.renderError(w, http.StatusNotFound, "UNKNOWN_ORDER", errUnknownOrder.Error())
		return
	}
	snap := s.snapshot(o)
	if snap.PaymentKey == "" {
		s.renderError(w, http.StatusConflict, "NOT_PAID_YET", "This order has no paymentKey yet: pay first.")
		return
	}
	s.confirm(r.Context(), o, "confirm again (same request)", snap.PaymentKey, snap.Amount, snap.PaymentToken, "")
	http.Redirect(w, r, "/orders/"+url.PathEscape(o.OrderID), http.StatusSeeOther)
}

// Failure kinds the "Force failure" button offers, each a request payrail
// must refuse without changing the order.
var failureKinds = []struct{ Value, Label string }{
	{"amount", "wrong amount → 400 AMOUNT_MISMATCH"},
	{"token", "wrong paymentToken → 403 INVALID_PAYMENT_TOKEN"},
	{"signature", "wrong signature → 401 INVALID_SIGNATURE"},
	{"paymentKey", "another paymentKey → 409 PAYMENT_KEY_CONFLICT"},
	{"order", "unknown order → 404 ORDER_NOT_FOUND"},
}

func (s *Server) handleForceFailure(w http.ResponseWriter, r *http.Request) {
	o, ok := s.order(r.PathValue("orderId"))
	if !ok {
		s.renderError(w, http.StatusNotFound, "UNKNOWN_ORDER", errUnknownOrder.Error())
		return
	}
	snap := s.snapshot(o)
	key := snap.PaymentKey
	if key == "" {
		key = "no_payment_key_yet"
	}
	amount, token, secret, orderID := snap.Amount, snap.PaymentToken, "", snap.OrderID
	kind := r.FormValue("kind")
	switch kind {
	case "token":
		token = "pt_forged_" + newMerchantOrderID()
	case "signature":
		secret = "not-the-client-secret"
	case "paymentKey":
		key = "forged_" + newMerchantOrderID()
	case "order":
		orderID = "missing_" + newMerchantOrderID()
	default:
		kind = "amount"
		amount += 1000
	}
	s.confirmTo(r.Context(), o, orderID, "force failure: "+kind, key, amount, token, secret)
	http.Redirect(w, r, "/orders/"+url.PathEscape(o.OrderID), http.StatusSeeOther)
}

func (s *Server) confirm(ctx context.Context, o *order, action, paymentKey string, amount int64, token, secret string) {
	s.confirmTo(ctx, o, o.OrderID, action, paymentKey, amount, token, secret)
}

// confirmTo posts one confirm with Prefer: wait=10, so the answer usually
// carries the outcome, and records what it meant.
func (s *Server) confirmTo(ctx context.Context, o *order, orderID, action, paymentKey string, amount int64, token, secret string) {
	body, _ := json.Marshal(map[string]any{"paymentKey": paymentKey, "amount": amount, "paymentToken": token})
	s.events.step(o.OrderID, "④ %s: POST /v1/orders/%s/confirm (amount %d, Prefer: wait=10)", action, orderID, amount)
	resp, err := s.do(ctx, http.MethodPost, "/v1/orders/"+url.PathEscape(orderID)+"/confirm", body, http.Header{"Prefer": {"wait=10"}}, secret)
	a := s.classify(ctx, o, resp, err)
	a.Action = action
	s.record(o, a)
	status := "network error"
	if a.HTTPStatus != 0 {
		status = strconv.Itoa(a.HTTPStatus)
	}
	detail := a.Badge
	if a.Code != "" {
		detail += " " + a.Code
	}
	s.events.stepOK(o.OrderID, a.Badge == BadgeSuccess || a.Badge == BadgeDuplicate || a.Badge == BadgeAwaitingDeposit,
		"⑤ answer: HTTP %s → %s in %d ms", status, detail, a.Elapsed.Milliseconds())
}

// classify turns payrail's answer to a confirm into the badge a buyer sees.
func (s *Server) classify(ctx context.Context, o *order, resp apiResponse, err error) attempt {
	a := attempt{HTTPStatus: resp.Status, Elapsed: resp.Elapsed, Body: prettyJSON(resp.Body)}
	if err != nil {
		a.Badge, a.Code, a.Message = BadgeFailure, "PAYRAIL_UNREACHABLE", err.Error()
		return a
	}
	body := resp.json()
	switch {
	case resp.Status == http.StatusOK:
		status, _ := body["status"].(string)
		switch body["result"] {
		case "SUCCESS":
			a.Badge = BadgeSuccess
			a.Message = fmt.Sprintf("Payment approved. The order is %s: %s paid.", status, won(o.Amount))
		case "DUPLICATE":
			a.Badge = BadgeDuplicate
			a.Message = fmt.Sprintf("payrail recognised a confirm it already handled and returned the stored result (order %s). Nothing was charged twice.", status)
		case "AWAITING_DEPOSIT":
			a.Badge, a.VA = BadgeAwaitingDeposit, readVirtualAccount(body)
			a.Message = fmt.Sprintf("A virtual account was issued. Transfer %s to it before the due date; this page turns SUCCESS when the deposit arrives.", won(o.Amount))
		default:
			a.Badge = BadgeFailure
			a.Code, a.Message = orderFailure(body)
		}
	case resp.Status == http.StatusAccepted:
		// Accepted, but the outcome did not arrive within the wait. Ask
		// once more before saying anything.
		a = s.settle(ctx, o, a)
	default:
		a.Badge = BadgeFailure
		a.Code, a.Message = problem(resp)
	}
	return a
}

// settle polls the order briefly after a 202 and reports what it became.
func (s *Server) settle(ctx context.Context, o *order, a attempt) attempt {
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := s.do(ctx, http.MethodGet, "/v1/orders/"+url.PathEscape(o.OrderID), nil, nil, "")
		if err == nil && r.Status == http.StatusOK {
			body := r.json()
			switch body["status"] {
			case "AWAITING_DEPOSIT":
				a.Badge, a.VA = BadgeAwaitingDeposit, readVirtualAccount(body)
				a.Message = fmt.Sprintf("A virtual account was issued. Transfer %s to it before the due date; this page turns SUCCESS when the deposit arrives.", won(o.Amount))
				return a
			case "PAID", "PARTIALLY_CANCELED", "CANCELED":
				a.Badge, a.Message = BadgeSuccess, fmt.Sprintf("Payment approved after the wait: the order is %s.", body["status"])
				return a
			case "FAILED":
				a.Badge = BadgeFailure
				a.Code, a.Message = orderFailure(body)
				return a
			}
		}
		if time.Now().After(deadline) {
			a.Badge = BadgePending
			a.Message = "payrail accepted the confirm (202) but the PG's answer has not arrived yet. The callback will tell; demoshop does not guess."
			return a
		}
		select {
		case <-ctx.Done():
			a.Badge, a.Message = BadgePending, "gave up waiting: "+ctx.Err().Error()
			return a
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func orderFailure(body map[string]any) (code, message string) {
	code, message = "PAYMENT_FAILED", "The PG declined the payment."
	if f, ok := body["failure"].(map[string]any); ok {
		if c, _ := f["code"].(string); c != "" {
			code = c
		}
		if m, _ := f["message"].(string); m != "" {
			message = m
		}
	}
	return code, message
}

// problem reads an application/problem+json answer's code and message.
func problem(r apiResponse) (code, message string) {
	var p struct {
		Code   string `json:"code"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(r.Body, &p)
	code, message = p.Code, p.Detail
	if code == "" {
		code = "HTTP_" + strconv.Itoa(r.Status)
	}
	if message == "" {
		message = p.Title
	}
	if message == "" {
		message = http.StatusText(r.Status)
	}
	return code, message
}

func prettyJSON(b []byte) string {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return out.String()
}

func (s *Server) handleResult(w http.ResponseWriter, r *http.Request) {
	o, ok := s.order(r.PathValue("orderId"))
	if !ok {
		s.renderError(w, http.StatusNotFound, "UNKNOWN_ORDER", errUnknownOrder.Error())
		return
	}
	snap := s.snapshot(o)
	if len(snap.Attempts) == 0 {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	last := snap.Attempts[len(snap.Attempts)-1]
	s.render(w, http.StatusOK, "result.html", map[string]any{
		"Title": last.Badge, "Order": snap, "Last": last, "FailureKinds": failureKinds, "PanelOrder": snap.OrderID,
	})
}

// Playground limits: what a visitor may send as demoshop.
var playgroundMethods = []string{"GET", "POST", "PATCH", "DELETE"}

const playgroundDefaultBody = `{
  "amount": 15000,
  "orderName": "Playground order"
}`

func (s *Server) handlePlayground(w http.ResponseWriter, r *http.Request) {
	data := map[string]any{"Title": "API playground", "Methods": playgroundMethods, "Method": "POST", "Path": "/v1/orders", "Body": playgroundDefaultBody}
	if r.Method != http.MethodPost {
		s.render(w, http.StatusOK, "playground.html", data)
		return
	}
	method := strings.ToUpper(r.FormValue("method"))
	path := strings.TrimSpace(r.FormValue("path"))
	body := r.FormValue("body")
	data["Method"], data["Path"], data["Body"] = method, path, body
	if !validPlaygroundMethod(method) {
		data["Error"] = "method must be one of GET, POST, PATCH, DELETE"
		s.render(w, http.StatusBadRequest, "playground.html", data)
		return
	}
	// Only payrail's merchant API: the playground must not become a way to
	// make demoshop fetch arbitrary URLs.
	if !strings.HasPrefix(path, "/v1/") || strings.Contains(path, "//") || strings.ContainsAny(path, " \r\n#\\") {
		data["Error"] = "path must start with /v1/ (payrail's merchant API), e.g. /v1/orders"
		s.render(w, http.StatusBadRequest, "playground.html", data)
		return
	}
	var raw []byte
	if method != http.MethodGet && method != http.MethodDelete && strings.TrimSpace(body) != "" {
		raw = []byte(body)
	}
	hdr := http.Header{}
	if k := strings.TrimSpace(r.FormValue("idempotencyKey")); k != "" {
		hdr.Set("Idempotency-Key", k)
		data["IdempotencyKey"] = k
	}
	resp, err := s.do(r.Context(), method, path, raw, hdr, "")
	s.events.step("", "playground: %s %s → %s", method, path, statusText(resp.Status, err))
	if err != nil {
		data["Error"] = err.Error()
		s.render(w, http.StatusOK, "playground.html", data)
		return
	}
	var shown []string
	for _, h := range []string{"Content-Type", "Location", "Preference-Applied", "Idempotent-Replayed", "X-Request-Id"} {
		if v := resp.Header.Get(h); v != "" {
			shown = append(shown, h+": "+v)
		}
	}
	data["Response"] = map[string]any{
		"Status": resp.Status, "StatusText": http.StatusText(resp.Status), "Elapsed": resp.Elapsed,
		"Headers": strings.Join(shown, "\n"), "Body": prettyJSON(resp.Body),
	}
	s.render(w, http.StatusOK, "playground.html", data)
}

func validPlaygroundMethod(m string) bool {
	for _, v := range playgroundMethods {
		if m == v {
			return true
		}
	}
	return false
}

func statusText(status int, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return strconv.Itoa(status) + " " + http.StatusText(status)
}

// maxCallbackBody caps what demoshop reads of a callback.
const maxCallbackBody = 1 << 20

// handleCallback receives payrail's callbacks, checks their signature and
// shows them on the panel. A callback whose signature fails is refused
// (401), as a real merchant must: its contents cannot be trusted.
func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCallbackBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	var secrets []string
	if s.creds.CallbackSecret != "" {
		secrets = []string{s.creds.CallbackSecret}
	}
	verr := ErrWebhookNoMatch
	if len(secrets) > 0 {
		verr = VerifyWebhook(secrets, id, ts, sig, body, s.now())
	}
	var cb struct {
		Type string `json:"type"`
		Data struct {
			OrderID        string `json:"orderId"`
			Status         string `json:"status"`
			PreviousStatus string `json:"previousStatus"`
			Version        int    `json:"version"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &cb)
	s.mu.Lock()
	s.callbacks[id]++
	seen := s.callbacks[id]
	s.mu.Unlock()

	verified := verr == nil
	text := fmt.Sprintf("⑥ callback %s: order %s %s → %s", orDash(cb.Type), orDash(cb.Data.OrderID), orDash(cb.Data.PreviousStatus), orDash(cb.Data.Status))
	detail := "signature ✓ verified"
	switch {
	case len(secrets) == 0:
		detail = "signature ✗ not checked: no callback secret configured"
	case verr != nil:
		detail = "signature ✗ " + verr.Error()
	}
	if seen > 1 {
		detail += fmt.Sprintf(" · redelivery #%d of %s", seen, id)
	}
	s.events.add(Event{Kind: "callback", OrderID: cb.Data.OrderID, Text: text, OK: &verified,
		Type: cb.Type, Status: cb.Data.Status, Verified: &verified, WebhookID: id, Detail: detail})
	s.log.Info("demoshop: callback", "type", cb.Type, "orderId", cb.Data.OrderID, "webhookId", id, "verified", verified)

	if len(secrets) > 0 && verr != nil {
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// readVirtualAccount reads an order's virtualAccount from payrail's answer.
func readVirtualAccount(body map[string]any) *virtualAccount {
	m, _ := body["virtualAccount"].(map[string]any)
	if m == nil {
		return nil
	}
	str := func(k string) string { v, _ := m[k].(string); return v }
	va := &virtualAccount{BankCode: str("bankCode"), AccountNumber: str("accountNumber"), CustomerName: str("customerName")}
	va.Bank = bankNames[va.BankCode]
	if va.Bank == "" {
		va.Bank = "bank " + va.BankCode
	}
	if t, err := time.Parse(time.RFC3339, str("dueDate")); err == nil {
		va.DueDate = t
	}
	return va
}

// bankNames are the banks mockpg issues accounts at (TossPayments' codes).
var bankNames = map[string]string{"03": "IBK기업은행", "06": "KB국민은행", "11": "NH농협은행", "20": "우리은행", "81": "하나은행", "88": "신한은행"}

// handleSimulateDeposit plays the buyer's bank transfer in the sandbox:
// it asks mockpg to deposit into the order's account. payrail learns of
// it from the PG's DEPOSIT_CALLBACK, like a real one.
func (s *Server) handleSimulateDeposit(w http.ResponseWriter, r *http.Request) {
	o, ok := s.order(r.PathValue("orderId"))
	if !ok {
		s.renderError(w, http.StatusNotFound, "UNKNOWN_ORDER", errUnknownOrder.Error())
		return
	}
	snap := s.snapshot(o)
	if s.cfg.PGConsoleURL == "" || snap.PaymentKey == "" {
		s.renderError(w, http.StatusConflict, "NO_SANDBOX", "Deposits can only be simulated against mockpg, for an order with a virtual account.")
		return
	}
	body, _ := json.Marshal(map[string]string{"paymentKey": snap.PaymentKey})
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, strings.TrimRight(s.cfg.PGConsoleURL, "/")+"/sandbox/deposits", bytes.NewReader(body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
		var resp *http.Response
		if resp, err = s.client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("mockpg answered %d", resp.StatusCode)
			}
		}
	}
	if err != nil {
		s.events.stepOK(o.OrderID, false, "simulated deposit failed: %v", err)
		s.renderError(w, http.StatusBadGateway, "DEPOSIT_FAILED", err.Error())
		return
	}
	s.events.step(o.OrderID, "⑥ the buyer transferred %s (simulated at mockpg); waiting for payrail's payment.paid", won(snap.Amount))
	http.Redirect(w, r, "/orders/"+url.PathEscape(o.OrderID), http.StatusSeeOther)
}

// handleOrderStatus is what an AWAITING DEPOSIT page polls: payrail's word
// on the order. When the deposit has made it PAID, the success is recorded
// as the order's latest attempt, so the page (reloaded) shows it.
func (s *Server) handleOrderStatus(w http.ResponseWriter, r *http.Request) {
	o, ok := s.order(r.PathValue("orderId"))
	if !ok {
		http.Error(w, errUnknownOrder.Error(), http.StatusNotFound)
		return
	}
	resp, err := s.do(r.Context(), http.MethodGet, "/v1/orders/"+url.PathEscape(o.OrderID), nil, nil, "")
	if err != nil || resp.Status != http.StatusOK {
		http.Error(w, "payrail did not answer", http.StatusBadGateway)
		return
	}
	status, _ := resp.json()["status"].(string)
	snap := s.snapshot(o)
	badge := ""
	if n := len(snap.Attempts); n > 0 {
		badge = snap.Attempts[n-1].Badge
	}
	if badge == BadgeAwaitingDeposit && (status == "PAID" || status == "PARTIALLY_CANCELED" || status == "CANCELED" || status == "EXPIRED") {
		a := attempt{Action: "deposit", Badge: BadgeSuccess, HTTPStatus: resp.Status, Elapsed: resp.Elapsed, Body: prettyJSON(resp.Body),
			Message: fmt.Sprintf("The deposit arrived: the order is %s, %s paid.", status, won(o.Amount))}
		if status == "EXPIRED" {
			a.Badge, a.Code, a.Message = BadgeFailure, "DEPOSIT_DUE_DATE_PASSED", "The due date passed before a deposit arrived: the order EXPIRED."
		}
		s.record(o, a)
		s.events.stepOK(o.OrderID, a.Badge == BadgeSuccess, "⑦ payrail: the order is %s", status)
		badge = a.Badge
	}
	writeJSONStatus(w, map[string]string{"status": status, "badge": badge})
}

func writeJSONStatus(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
