package mockpg

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// response is an answer computed under the lock and written after it; it is
// also what the Idempotency-Key store replays, byte for byte.
type response struct {
	status int
	body   []byte
}

// idemKey scopes an Idempotency-Key like Toss: the key, the API key, the URL
// and the method. The body is deliberately not part of it: Toss replays the
// first answer even for another payment, which is why payrail derives keys
// from (orderId, paymentKey).
type idemKey struct {
	apiKey, method, path, key string
}

// idemEntry is a claimed key: in flight while resp is nil (done is closed
// when the holder finishes), or a stored answer until expires.
type idemEntry struct {
	done    chan struct{}
	resp    *response
	expires time.Time
}

// faultDraw is the dice for one mutating request.
type faultDraw struct {
	fail5xx, hang, decline, lost bool
	hangFor                      time.Duration
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.Handle("POST /v1/payments/confirm", s.api(s.handleConfirm))
	m.Handle("GET /v1/payments/orders/{orderId}", s.api(s.handleGetByOrder))
	m.Handle("GET /v1/payments/{paymentKey}", s.api(s.handleGet))
	m.Handle("POST /v1/payments/{paymentKey}/cancel", s.api(s.handleCancel))
	m.Handle("GET /v1/transactions", s.api(s.handleTransactions))
	m.Handle("/v1/", s.api(func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, response{http.StatusNotFound, errBody("NOT_FOUND", "mockpg does not implement "+r.Method+" "+r.URL.Path)})
	}))
	s.sandboxRoutes(m)
	s.mux = m
}

// api wraps /v1/* handlers: Basic auth with the secret key, injected
// latency, and a line in the log.
func (s *Server) api(h http.HandlerFunc) http.Handler {
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(s.cfg.SecretKey+":"))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		got := r.Header.Get("Authorization")
		if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			s.note("request", fmt.Sprintf("%s %s -> 401 UNAUTHORIZED_KEY", r.Method, r.URL.Path))
			writeRaw(w, response{http.StatusUnauthorized, errBody("UNAUTHORIZED_KEY", "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.")})
			return
		}
		s.mu.Lock()
		latency := time.Duration(s.faults.LatencyMS) * time.Millisecond
		s.mu.Unlock()
		if latency > 0 && !s.wait(r, latency) {
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		h(rec, r)
		level, outcome := slog.LevelInfo, strconv.Itoa(rec.status)
		if rec.status == 0 {
			level, outcome = slog.LevelWarn, "dropped"
		} else if rec.status >= 500 {
			level = slog.LevelWarn
		}
		idem := r.Header.Get("Idempotency-Key")
		s.note("request", fmt.Sprintf("%s %s -> %s (Idempotency-Key %q)", r.Method, r.URL.Path, outcome, idem))
		s.log.LogAttrs(r.Context(), level, "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.String("status", outcome), slog.String("idempotencyKey", idem),
			slog.Duration("elapsed", time.Since(start)))
	})
}

// wait sleeps for d unless the client leaves or the server closes first; it
// reports whether the full time passed.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return false
	}
}

type confirmRequest struct {
	PaymentKey string `json:"paymentKey"`
	OrderID    string `json:"orderId"`
	Amount     int64  `json:"amount"`
}

func (s *Server) handleConfirm(w http.ResponseWriter, r *http.Request) {
	var req confirmRequest
	if err := decodeLenient(w, r, &req); err != nil {
		writeRaw(w, response{http.StatusBadRequest, errBody("INVALID_REQUEST", "잘못된 요청입니다: "+err.Error())})
		return
	}
	s.mu.Lock()
	if req.OrderID != "" {
		s.statsLocked(req.OrderID).ConfirmCalls++
	}
	s.mu.Unlock()
	s.serveMutation(w, r, "confirm "+req.OrderID, func(d faultDraw) response {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.confirmLocked(req, d)
	})
}

func (s *Server) confirmLocked(req confirmRequest, d faultDraw) response {
	if req.PaymentKey == "" || req.OrderID == "" || req.Amount <= 0 {
		return response{http.StatusBadRequest, errBody("INVALID_REQUEST", "paymentKey, orderId and a positive amount are required.")}
	}
	p := s.payments[req.PaymentKey]
	if p == nil || p.OrderID != req.OrderID {
		return response{http.StatusNotFound, errBody("NOT_FOUND_PAYMENT_SESSION", "결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.")}
	}
	s.expireLocked(p)
	switch p.Status {
	case "DONE", "CANCELED", "PARTIAL_CANCELED", "WAITING_FOR_DEPOSIT":
		return response{http.StatusBadRequest, errBody("ALREADY_PROCESSED_PAYMENT", "이미 처리된 결제 입니다.")}
	case "EXPIRED", "ABORTED":
		return response{http.StatusNotFound, errBody("NOT_FOUND_PAYMENT_SESSION", "결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.")}
	}
	if req.Amount != p.TotalAmount {
		return response{http.StatusBadRequest, errBody("INVALID_REQUEST", fmt.Sprintf("amount %d does not match the session amount.", req.Amount))}
	}
	if other, paid := s.paidOrder[p.OrderID]; paid && other != p.PaymentKey {
		return response{http.StatusBadRequest, errBody("DUPLICATED_ORDER_ID", "이미 승인 및 취소가 진행된 중복된 주문번호 입니다.")}
	}
	if d.decline {
		p.Status = "ABORTED"
		p.Failure = &Failure{Code: "REJECT_CARD_PAYMENT", Message: "한도초과 혹은 잔액부족으로 결제에 실패했습니다."}
		s.emitLocked(p)
		return response{http.StatusForbidden, errBody(p.Failure.Code, p.Failure.Message)}
	}
	s.paidOrder[p.OrderID] = p.PaymentKey
	if p.Method == MethodVirtualAccount {
		// Nothing is charged yet: the buyer transfers to the account later.
		s.issueVirtualAccountLocked(p)
		s.emitLocked(p)
		return s.paymentResponseLocked(p)
	}
	p.Status = "DONE"
	p.ApprovedAt = s.ledgerNow()
	s.recordTxnLocked(p, "", "DONE", p.TotalAmount)
	s.statsLocked(p.OrderID).Approvals++
	s.emitLocked(p)
	return s.paymentResponseLocked(p)
}

func (s *Server) paymentResponseLocked(p *payment) response {
	b, err := json.Marshal(s.toAPI(p))
	if err != nil {
		return response{http.StatusInternalServerError, errBody("FAILED_INTERNAL_SYSTEM_PROCESSING", err.Error())}
	}
	return response{http.StatusOK, b}
}

type cancelRequest struct {
	CancelReason         string         `json:"cancelReason"`
	CancelAmount         *int64         `json:"cancelAmount"`
	RefundReceiveAccount *refundAccount `json:"refundReceiveAccount"`
}

// refundAccount is a cancel's refundReceiveAccount.
type refundAccount struct {
	Bank          string `json:"bank"`
	AccountNumber string `json:"accountNumber"`
	HolderName    string `json:"holderName"`
}

func (a *refundAccount) valid() bool {
	if a == nil || len(a.Bank) != 2 || strings.TrimSpace(a.HolderName) == "" || len(a.AccountNumber) < 6 || len(a.AccountNumber) > 20 {
		return false
	}
	return strings.Trim(a.Bank+a.AccountNumber, "0123456789") == ""
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("paymentKey")
	var req cancelRequest
	if err := decodeLenient(w, r, &req); err != nil {
		writeRaw(w, response{http.StatusBadRequest, errBody("INVALID_REQUEST", "잘못된 요청입니다: "+err.Error())})
		return
	}
	s.mu.Lock()
	if p := s.payments[key]; p != nil {
		s.statsLocked(p.OrderID).CancelCalls++
	}
	s.mu.Unlock()
	s.serveMutation(w, r, "cancel "+key, func(faultDraw) response {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.cancelLocked(key, req)
	})
}

func (s *Server) cancelLocked(key string, req cancelRequest) response {
	p := s.payments[key]
	if p == nil {
		return response{http.StatusNotFound, errBody("NOT_FOUND_PAYMENT", "존재하지 않는 결제 정보 입니다.")}
	}
	if strings.TrimSpace(req.CancelReason) == "" || len(req.CancelReason) > 200 {
		return response{http.StatusBadRequest, errBody("INVALID_REQUEST", "cancelReason is required (at most 200 characters).")}
	}
	if req.CancelAmount != nil && *req.CancelAmount <= 0 {
		return response{http.StatusBadRequest, errBody("INVALID_REQUEST", "cancelAmount must be positive when given.")}
	}
	s.expireLocked(p)
	if req.RefundReceiveAccount != nil && !req.RefundReceiveAccount.valid() {
		return response{http.StatusBadRequest, errBody("INVALID_REFUND_ACCOUNT_INFO", "환불 계좌 정보가 올바르지 않습니다.")}
	}
	if p.Status == "WAITING_FOR_DEPOSIT" {
		// Cancelling an issued account before its deposit closes it: no
		// money to return, so only the whole amount, and no refund account.
		if req.CancelAmount != nil && *req.CancelAmount != p.TotalAmount {
			return response{http.StatusBadRequest, errBody("NOT_CANCELABLE_AMOUNT", "입금 전 가상계좌는 전액만 취소할 수 있습니다.")}
		}
		req.CancelAmount = nil
	} else if p.Status != "DONE" && p.Status != "PARTIAL_CANCELED" {
		return response{http.StatusBadRequest, errBody("NOT_CANCELABLE_PAYMENT", "취소 할 수 없는 결제 입니다.")}
	}
	amount := p.BalanceAmount
	if req.CancelAmount != nil {
		amount = *req.CancelAmount
	}
	if amount > p.BalanceAmount {
		return response{http.StatusBadRequest, errBody("NOT_CANCELABLE_AMOUNT", "취소 할 수 없는 금액 입니다.")}
	}
	deposited := p.Status != "WAITING_FOR_DEPOSIT"
	p.BalanceAmount -= amount
	p.Status = "PARTIAL_CANCELED"
	if p.BalanceAmount == 0 {
		p.Status = "CANCELED"
	}
	txKey := "ttx_" + randomID()
	p.Cancels = append(p.Cancels, Cancel{
		CancelAmount:     amount,
		CancelReason:     req.CancelReason,
		CanceledAt:       s.ledgerNow().In(s.kst).Format(timeLayout),
		TransactionKey:   txKey,
		RefundableAmount: p.BalanceAmount,
	})
	if deposited {
		// Money went back: a row in the books (closing an unpaid account
		// moves none).
		s.recordTxnLocked(p, txKey, p.Status, amount)
	}
	st := s.statsLocked(p.OrderID)
	st.Cancels++
	st.CanceledAmount += amount
	if req.RefundReceiveAccount != nil {
		st.RefundAccountCancels++
	}
	if p.VA != nil {
		p.VA.Expired = true // a cancelled account takes no more deposits
		if p.Status == "CANCELED" {
			s.emitDepositLocked(p)
		}
	}
	s.emitLocked(p)
	return s.paymentResponseLocked(p)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeRaw(w, s.lookupLocked(r.PathValue("paymentKey")))
}

func (s *Server) handleGetByOrder(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	orderID := r.PathValue("orderId")
	key := s.paidOrder[orderID] // the approved payment wins over later sessions
	if key == "" {
		key = s.byOrder[orderID]
	}
	writeRaw(w, s.lookupLocked(key))
}

func (s *Server) lookupLocked(key string) response {
	p := s.payments[key]
	if p == nil {
		return response{http.StatusNotFound, errBody("NOT_FOUND_PAYMENT", "존재하지 않는 결제 정보 입니다.")}
	}
	s.expireLocked(p)
	return s.paymentResponseLocked(p)
}

// serveMutation runs op at most once per Idempotency-Key and applies the
// request-level faults around it. Concurrent requests with the same key wait
// for the first and then get its stored answer. 5xx faults and hangs apply
// nothing and release the key, so a retry really retries; every other answer
// (success or 4xx) is stored and replayed for 15 days.
func (s *Server) serveMutation(w http.ResponseWriter, r *http.Request, what string, op func(faultDraw) response) {
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 300 {
		writeRaw(w, response{http.StatusBadRequest, errBody("INVALID_REQUEST", "Idempotency-Key longer than 300 characters.")})
		return
	}
	var entry *idemEntry
	ik := idemKey{apiKey: s.cfg.SecretKey, method: r.Method, path: r.URL.Path, key: key}
	if key != "" {
		for entry == nil {
			s.mu.Lock()
			e := s.idem[ik]
			if e != nil && e.resp != nil && !s.cfg.Now().Before(e.expires) {
				delete(s.idem, ik)
				e = nil
			}
			switch {
			case e == nil:
				entry = &idemEntry{done: make(chan struct{})}
				s.idem[ik] = entry
				s.pruneIdemLocked()
				s.mu.Unlock()
			case e.resp != nil:
				resp := *e.resp
				s.noteLocked("request", fmt.Sprintf("%s: replayed %d for Idempotency-Key %q", what, resp.status, key))
				s.mu.Unlock()
				writeRaw(w, resp)
				return
			default:
				done := e.done
				s.mu.Unlock()
				select {
				case <-done:
				case <-r.Context().Done():
					return
				case <-s.closing:
					return
				}
			}
		}
	}
	// finish stores resp under the key (nil releases it) and wakes waiters.
	finish := func(resp *response) {
		if entry == nil {
			return
		}
		s.mu.Lock()
		if resp == nil {
			delete(s.idem, ik)
		} else {
			entry.resp = resp
			entry.expires = s.cfg.Now().Add(idemTTL)
		}
		close(entry.done)
		s.mu.Unlock()
	}

	s.mu.Lock()
	f := s.faults
	d := faultDraw{hangFor: time.Duration(f.TimeoutMS) * time.Millisecond}
	d.fail5xx = s.rollLocked(f.Error5xxRate)
	d.hang = !d.fail5xx && s.rollLocked(f.TimeoutRate)
	d.decline = !d.fail5xx && !d.hang && s.rollLocked(f.DeclineRate)
	d.lost = !d.fail5xx && !d.hang && s.rollLocked(f.AnswerLostRate)
	s.mu.Unlock()

	switch {
	case d.fail5xx:
		finish(nil)
		s.note("fault", what+": injected 500")
		writeRaw(w, response{http.StatusInternalServerError, errBody("FAILED_INTERNAL_SYSTEM_PROCESSING", "내부 시스템 처리 작업이 실패했습니다. 잠시 후 다시 시도해주세요.")})
		return
	case d.hang:
		s.note("fault", fmt.Sprintf("%s: injected timeout (%s), nothing applied", what, d.hangFor))
		s.wait(r, d.hangFor)
		finish(nil)
		dropConnection(w)
		return
	}
	resp := op(d)
	if resp.status >= 500 {
		finish(nil)
	} else {
		finish(&resp)
	}
	if d.lost {
		s.note("fault", fmt.Sprintf("%s: applied (%d) and dropped the answer", what, resp.status))
		dropConnection(w)
		return
	}
	writeRaw(w, resp)
}

// pruneIdemLocked forgets expired answers now and then, so a long-running
// sandbox does not keep every key forever.
func (s *Server) pruneIdemLocked() {
	s.idemClaims++
	if s.idemClaims%1024 != 0 {
		return
	}
	now := s.cfg.Now()
	for k, e := range s.idem {
		if e.resp != nil && !now.Before(e.expires) {
			delete(s.idem, k)
		}
	}
}

// dropConnection closes the client's connection without an answer: the
// client sees EOF after its request was written.
func dropConnection(w http.ResponseWriter) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.status = 0
		w = rec.ResponseWriter
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 or a recorder: abort the stream instead.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

func writeRaw(w http.ResponseWriter, resp response) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

// decodeLenient reads a JSON object like Toss does: unknown fields are
// ignored (clients send more than mockpg models), but the body is capped,
// must be one object, and types must match.
func decodeLenient(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return errors.New("body unreadable or too large")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return errors.New("body is not the expected JSON object")
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// decodeStrict is decodeLenient for the sandbox endpoints, which refuse
// unknown fields so typos in fault configs do not pass silently (encoding/json
// still matches names case-insensitively: "declinerate" is declineRate).
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return errors.New("body unreadable or too large")
	}
	return decodeStrictBytes(body, v)
}

func decodeStrictBytes(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// ParseFaults decodes a fault configuration (the JSON of GET /sandbox/faults)
// strictly and validates it.
func ParseFaults(b []byte) (Faults, error) {
	var f Faults
	if err := decodeStrictBytes(b, &f); err != nil {
		return Faults{}, err
	}
	if err := f.Validate(); err != nil {
		return Faults{}, err
	}
	return f, nil
}

// statusRecorder remembers the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
