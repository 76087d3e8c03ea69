package mockpg

import (
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"won":    func(n int64) string { return formatWon(n) },
	"hhmmss": func(t time.Time) string { return t.Format("15:04:05.000") },
}).ParseFS(templateFS, "templates/*.html"))

// sandboxRoutes registers the endpoints that do not exist at Toss: the
// payment window, sessions without a browser, faults, stats, webhooks on
// demand and the console. They take no authentication: bind mockpg to a
// loopback or private address.
func (s *Server) sandboxRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /sandbox/sessions", s.handleCreateSession)
	m.HandleFunc("GET /sandbox/faults", s.handleGetFaults)
	m.HandleFunc("POST /sandbox/faults", s.handleSetFaults)
	m.HandleFunc("GET /sandbox/stats", s.handleStats)
	m.HandleFunc("POST /sandbox/webhooks/send", s.handleSendWebhook)
	m.HandleFunc("POST /sandbox/deposits", s.handleDeposit)
	m.HandleFunc("POST /sandbox/deposits/reverse", s.handleReverseDeposit)
	m.HandleFunc("POST /sandbox/forget", s.handleForget)
	m.HandleFunc("POST /sandbox/transactions/seed", s.handleSeedTransactions)
	m.HandleFunc("GET /sandbox/clock", s.handleGetClock)
	m.HandleFunc("POST /sandbox/clock", s.handleAdvanceClock)
	m.HandleFunc("GET /checkout", s.handleCheckoutPage)
	m.HandleFunc("POST /checkout", s.handleCheckoutSubmit)
	m.HandleFunc("GET /{$}", s.handleConsole)
}

func sandboxError(w http.ResponseWriter, status int, code, msg string) {
	writeRaw(w, response{status, errBody(code, msg)})
}

func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	var req struct {
		OrderID   string `json:"orderId"`
		Amount    int64  `json:"amount"`
		OrderName string `json:"orderName"`
		Method    string `json:"method"`
	}
	if err := decodeStrict(w, r, &req); err != nil {
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", err.Error())
		return
	}
	key, err := s.CreateSessionMethod(req.OrderID, req.Amount, req.OrderName, req.Method)
	switch {
	case errors.Is(err, ErrDuplicatedOrderID):
		sandboxError(w, http.StatusBadRequest, "DUPLICATED_ORDER_ID", err.Error())
	case err != nil:
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]string{"paymentKey": key})
	}
}

func (s *Server) handleGetFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Server) handleSetFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if err := decodeStrict(w, r, &f); err != nil {
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", err.Error())
		return
	}
	if err := f.Validate(); err != nil {
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", err.Error())
		return
	}
	s.SetFaults(f)
	s.note("faults", "fault configuration replaced")
	writeJSON(w, http.StatusOK, s.Faults())
}

// statsResponse is GET /sandbox/stats.
type statsResponse struct {
	Orders map[string]OrderStats `json:"orders"`
	Totals OrderStats            `json:"totals"`
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	orders := s.Stats()
	var t OrderStats
	for _, o := range orders {
		t.ConfirmCalls += o.ConfirmCalls
		t.Approvals += o.Approvals
		t.Cancels += o.Cancels
		t.CancelCalls += o.CancelCalls
		t.CanceledAmount += o.CanceledAmount
		t.VirtualAccounts += o.VirtualAccounts
		t.Deposits += o.Deposits
		t.RefundAccountCancels += o.RefundAccountCancels
	}
	writeJSON(w, http.StatusOK, statsResponse{Orders: orders, Totals: t})
}

var paymentStatuses = []string{"READY", "IN_PROGRESS", "WAITING_FOR_DEPOSIT", "DONE", "CANCELED", "PARTIAL_CANCELED", "ABORTED", "EXPIRED"}

// handleSendWebhook sends a PAYMENT_STATUS_CHANGED for a payment on demand,
// optionally claiming another status. It tells a story to the receiver; it
// does not change mockpg's own record (a lookup still shows the truth, which
// is exactly what a receiver that verifies by lookup must notice). It takes
// JSON, or a form from the console (then it redirects back to /).
func (s *Server) handleSendWebhook(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PaymentKey string `json:"paymentKey"`
		Status     string `json:"status"`
	}
	fromForm := strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded")
	if fromForm {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := r.ParseForm(); err != nil {
			sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", "unreadable form")
			return
		}
		req.PaymentKey, req.Status = r.PostForm.Get("paymentKey"), r.PostForm.Get("status")
	} else if err := decodeStrict(w, r, &req); err != nil {
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", err.Error())
		return
	}
	if req.Status != "" && !slices.Contains(paymentStatuses, req.Status) {
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", "unknown status "+strconv.Quote(req.Status))
		return
	}
	s.mu.Lock()
	p := s.payments[req.PaymentKey]
	if p == nil {
		s.mu.Unlock()
		sandboxError(w, http.StatusNotFound, "NOT_FOUND_PAYMENT", "no such paymentKey")
		return
	}
	if s.webhookURL == "" {
		s.mu.Unlock()
		sandboxError(w, http.StatusConflict, "NO_WEBHOOK_URL", "mockpg has no webhook URL configured")
		return
	}
	s.expireLocked(p)
	data := s.toAPI(p)
	if req.Status != "" && req.Status != data.Status {
		data.Status = req.Status
		switch req.Status {
		case "DONE":
			if data.ApprovedAt == nil {
				a := s.cfg.Now().In(s.kst).Format(timeLayout)
				data.ApprovedAt = &a
			}
			data.Method = "카드"
			data.Failure = nil
		case "ABORTED":
			data.Failure = &Failure{Code: "PAY_PROCESS_ABORTED", Message: "결제 진행 중 승인에 실패하여 결제가 중단되었습니다."}
		}
	}
	id := s.emitSnapshotLocked(data)
	s.noteLocked("webhook", "queued "+id+" ("+data.Status+" "+data.PaymentKey+") on demand")
	s.mu.Unlock()
	if fromForm {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"eventId": id})
}

// checkoutParams are the payment window's inputs, like requestPayment's.
type checkoutParams struct {
	OrderID    string
	Amount     int64
	OrderName  string
	SuccessURL string
	FailURL    string
	// Method is what the buyer picked in the window: 카드 or 가상계좌.
	Method string
}

func parseCheckout(v url.Values) (checkoutParams, error) {
	c := checkoutParams{
		OrderID:    v.Get("orderId"),
		OrderName:  v.Get("orderName"),
		SuccessURL: v.Get("successUrl"),
		FailURL:    v.Get("failUrl"),
	}
	if !orderIDPattern.MatchString(c.OrderID) {
		return c, errors.New("orderId must be 6-64 characters of [A-Za-z0-9_-]")
	}
	amount, err := strconv.ParseInt(v.Get("amount"), 10, 64)
	if err != nil || amount <= 0 || amount > 1_000_000_000_000 {
		return c, errors.New("amount must be an integer between 1 and 10^12")
	}
	c.Amount = amount
	if len(c.OrderName) > 100 {
		return c, errors.New("orderName is longer than 100 characters")
	}
	for _, u := range []string{c.SuccessURL, c.FailURL} {
		if !isHTTPURL(u) {
			return c, errors.New("successUrl and failUrl must be absolute http(s) URLs")
		}
	}
	return c, nil
}

func isHTTPURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && len(raw) <= 2048
}

// withQuery returns raw with params added to its query, keeping what was
// already there.
func withQuery(raw string, params map[string]string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func (s *Server) handleCheckoutPage(w http.ResponseWriter, r *http.Request) {
	c, err := parseCheckout(r.URL.Query())
	data := map[string]any{"C": c}
	status := http.StatusOK
	if err != nil {
		data["Error"] = err.Error()
		status = http.StatusBadRequest
	}
	renderHTML(w, status, "checkout.html", data)
}

func (s *Server) handleCheckoutSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		renderHTML(w, http.StatusBadRequest, "checkout.html", map[string]any{"Error": "unreadable form"})
		return
	}
	c, err := parseCheckout(r.PostForm)
	if err != nil {
		renderHTML(w, http.StatusBadRequest, "checkout.html", map[string]any{"C": c, "Error": err.Error()})
		return
	}
	fail := func(code, msg string) {
		s.note("checkout", "order "+c.OrderID+": "+code)
		http.Redirect(w, r, withQuery(c.FailURL, map[string]string{"code": code, "message": msg, "orderId": c.OrderID}), http.StatusSeeOther)
	}
	switch r.PostForm.Get("action") {
	case "pay":
		key, err := s.CreateSessionMethod(c.OrderID, c.Amount, c.OrderName, r.PostForm.Get("method"))
		switch {
		case errors.Is(err, ErrDuplicatedOrderID):
			fail("DUPLICATED_ORDER_ID", "이미 승인 및 취소가 진행된 중복된 주문번호 입니다.")
		case err != nil:
			fail("INVALID_REQUEST", err.Error())
		default:
			http.Redirect(w, r, withQuery(c.SuccessURL, map[string]string{
				"paymentKey": key, "orderId": c.OrderID, "amount": strconv.FormatInt(c.Amount, 10),
			}), http.StatusSeeOther)
		}
	case "cancel":
		fail("PAY_PROCESS_CANCELED", "사용자에 의해 결제가 취소되었습니다.")
	case "decline":
		fail("REJECT_CARD_COMPANY", "카드사에서 결제를 거절했습니다.")
	default:
		renderHTML(w, http.StatusBadRequest, "checkout.html", map[string]any{"C": c, "Error": "unknown action"})
	}
}

// consolePayment is one row of the console's payments table.
type consolePayment struct {
	Payment
	Stats OrderStats
}

func (s *Server) handleConsole(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	rows := make([]consolePayment, 0, len(s.recent))
	for _, key := range slices.Backward(s.recent) {
		p := s.payments[key]
		s.expireLocked(p)
		row := consolePayment{Payment: s.toAPI(p)}
		if st := s.stats[p.OrderID]; st != nil {
			row.Stats = *st
		}
		rows = append(rows, row)
	}
	events := slices.Clone(s.events)
	slices.Reverse(events)
	data := map[string]any{
		"Payments":   rows,
		"Events":     events,
		"Faults":     s.faults,
		"WebhookURL": s.webhookURL,
	}
	s.mu.Unlock()
	renderHTML(w, http.StatusOK, "console.html", data)
}

func renderHTML(w http.ResponseWriter, status int, name string, data any) {
	var b strings.Builder
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, "template: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func formatWon(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-₩" + string(out)
	}
	return "₩" + string(out)
}

// handleDeposit is the buyer's bank transfer into a virtual account
// (JSON {paymentKey}, or the console's form, which redirects back to /).
func (s *Server) handleDeposit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PaymentKey string `json:"paymentKey"`
	}
	fromForm := strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded")
	if fromForm {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := r.ParseForm(); err != nil {
			sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", "unreadable form")
			return
		}
		req.PaymentKey = r.PostForm.Get("paymentKey")
	} else if err := decodeStrict(w, r, &req); err != nil {
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", err.Error())
		return
	}
	p, err := s.Deposit(req.PaymentKey)
	switch {
	case errors.Is(err, ErrNotFoundPayment):
		sandboxError(w, http.StatusNotFound, "NOT_FOUND_PAYMENT", "no such paymentKey")
	case errors.Is(err, ErrNotWaitingForDeposit):
		sandboxError(w, http.StatusConflict, "NOT_WAITING_FOR_DEPOSIT", err.Error())
	case err != nil:
		sandboxError(w, http.StatusInternalServerError, "FAILED_INTERNAL_SYSTEM_PROCESSING", err.Error())
	case fromForm:
		http.Redirect(w, r, "/", http.StatusSeeOther)
	default:
		writeJSON(w, http.StatusOK, p)
	}
}

func (s *Server) handleGetClock(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	now, skew := s.ledgerNow(), s.clockSkew
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"now": now.In(s.kst).Format(timeLayout), "advancedBy": skew.String()})
}

// handleAdvanceClock moves the ledger clock: {"advance":"72h"}.
func (s *Server) handleAdvanceClock(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Advance string `json:"advance"`
	}
	if err := decodeStrict(w, r, &req); err != nil {
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", err.Error())
		return
	}
	d, err := time.ParseDuration(req.Advance)
	if err != nil {
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", "advance must be a Go duration such as \"72h\"")
		return
	}
	now, err := s.AdvanceClock(d)
	if err != nil {
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", err.Error())
		return
	}
	s.mu.Lock()
	skew := s.clockSkew
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"now": now.In(s.kst).Format(timeLayout), "advancedBy": skew.String()})
}

// handleReverseDeposit simulates the bank reversing a deposit
// ({paymentKey}): the payment waits for its deposit again and a
// DEPOSIT_CALLBACK says so. A receiver must raise an alert, not move a
// paid order back.
func (s *Server) handleReverseDeposit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PaymentKey string `json:"paymentKey"`
	}
	if err := decodeStrict(w, r, &req); err != nil {
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.payments[req.PaymentKey]
	if p == nil || p.VA == nil || p.Status != "DONE" {
		sandboxError(w, http.StatusConflict, "NOT_DEPOSITED", "only a deposited virtual account can be reversed")
		return
	}
	p.Status = "WAITING_FOR_DEPOSIT"
	s.noteLocked("virtual-account", "deposit into "+p.OrderID+" reversed by the bank")
	s.emitDepositLocked(p)
	writeJSON(w, http.StatusOK, s.toAPI(p))
}

// handleForget removes a payment from mockpg's books ({paymentKey}).
func (s *Server) handleForget(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PaymentKey string `json:"paymentKey"`
	}
	if err := decodeStrict(w, r, &req); err != nil {
		sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", err.Error())
		return
	}
	if !s.Forget(req.PaymentKey) {
		sandboxError(w, http.StatusNotFound, "NOT_FOUND_PAYMENT", "no such paymentKey")
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"forgotten": true})
}
