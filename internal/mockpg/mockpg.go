// Package mockpg is a sandbox payment gateway that speaks the subset of the
// TossPayments v1 API payrail uses, so the whole system runs and is tested
// with no internet.
//
// It owns an in-memory ledger of payment sessions and payments (one mutex
// guards all of it: nothing survives a restart, and nothing is meant to), the
// Idempotency-Key store of its POST endpoints, fault injection (latency, 5xx,
// hangs, declines, lost answers, duplicated and reordered webhooks), signed
// PAYMENT_STATUS_CHANGED webhooks, an HTML payment window and a sandbox
// console. It must never be pointed at by anything that moves real money.
package mockpg

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"regexp"
	"sync"
	"time"
)

// Config configures a Server. Zero values get the defaults documented on
// each field.
type Config struct {
	// SecretKey is the only key /v1/* accepts, as HTTP Basic "SecretKey:".
	// Default "test_sk_mockpg".
	SecretKey string
	// WebhookURL receives PAYMENT_STATUS_CHANGED events; empty sends none.
	WebhookURL string
	// WebhookSecret signs webhooks (see Sign). Default "whsec_mockpg_dev".
	WebhookSecret string
	// SessionTTL is how long a READY session may be confirmed. Default 10m.
	SessionTTL time.Duration
	// VirtualAccountDue is how long an issued virtual account waits for
	// its deposit. Default 72h (DESIGN.md).
	VirtualAccountDue time.Duration
	// Faults is the fault configuration at start; see SetFaults.
	Faults Faults
	// Now is the clock (session expiry, timestamps). Default time.Now.
	Now func() time.Time
	// Logger receives one line per request and per webhook. Default discards.
	Logger *slog.Logger
	// HTTPClient sends webhooks. Default a client with a 5 s timeout.
	HTTPClient *http.Client
}

// Faults is the fault injection configuration. Rates are probabilities in
// [0,1], drawn independently per request in the order 5xx, timeout, decline,
// answer lost (so with several rates at 1 the first wins).
type Faults struct {
	// LatencyMS delays every /v1/* answer by this many milliseconds.
	LatencyMS int `json:"latencyMs"`
	// Error5xxRate answers confirm/cancel with 500
	// FAILED_INTERNAL_SYSTEM_PROCESSING; nothing is applied.
	Error5xxRate float64 `json:"error5xxRate"`
	// TimeoutRate makes confirm/cancel hang for TimeoutMS (or until the
	// client goes away) and then drop the connection; nothing is applied.
	TimeoutRate float64 `json:"timeoutRate"`
	// DeclineRate declines confirms with 403 REJECT_CARD_PAYMENT; the session
	// becomes ABORTED.
	DeclineRate float64 `json:"declineRate"`
	// AnswerLostRate applies the confirm/cancel, stores the answer under the
	// Idempotency-Key, then drops the connection without answering.
	AnswerLostRate float64 `json:"answerLostRate"`
	// WebhookDuplicateRate sends an event twice (same X-MockPG-Event-Id).
	WebhookDuplicateRate float64 `json:"webhookDuplicateRate"`
	// WebhookReorderRate holds an event back until the next one has been
	// sent (or at most a second), so the later event overtakes it.
	WebhookReorderRate float64 `json:"webhookReorderRate"`
	// TimeoutMS is how long a "timeout" hangs. Default 30000.
	TimeoutMS int `json:"timeoutMs"`
	// Seed seeds the fault dice; 0 means random. Setting faults re-seeds.
	Seed int64 `json:"seed"`
}

// Validate reports whether f is usable: rates in [0,1], durations >= 0.
func (f Faults) Validate() error {
	rates := map[string]float64{
		"error5xxRate": f.Error5xxRate, "timeoutRate": f.TimeoutRate,
		"declineRate": f.DeclineRate, "answerLostRate": f.AnswerLostRate,
		"webhookDuplicateRate": f.WebhookDuplicateRate, "webhookReorderRate": f.WebhookReorderRate,
	}
	for name, r := range rates {
		if !(r >= 0 && r <= 1) { // also refuses NaN
			return fmt.Errorf("%s must be between 0 and 1, got %v", name, r)
		}
	}
	if f.LatencyMS < 0 || f.TimeoutMS < 0 {
		return errors.New("latencyMs and timeoutMs must not be negative")
	}
	if f.LatencyMS > 600_000 || f.TimeoutMS > 600_000 {
		return errors.New("latencyMs and timeoutMs must not exceed 600000")
	}
	return nil
}

// OrderStats counts what happened to one orderId, so tests can prove nothing
// was charged or refunded twice.
type OrderStats struct {
	// ConfirmCalls counts every confirm request for the orderId, replays included.
	ConfirmCalls int `json:"confirmCalls"`
	// Approvals counts sessions actually moved to DONE.
	Approvals int `json:"approvals"`
	// Cancels counts cancels actually applied.
	Cancels int `json:"cancels"`
	// CancelCalls counts every cancel request, replays included.
	CancelCalls int `json:"cancelCalls"`
	// CanceledAmount sums the applied cancels.
	CanceledAmount int64 `json:"canceledAmount"`
	// VirtualAccounts counts virtual accounts issued (confirms of a
	// 가상계좌 session); the money arrives later, as a deposit.
	VirtualAccounts int `json:"virtualAccounts"`
	// Deposits counts deposits applied (each is also an approval).
	Deposits int `json:"deposits"`
	// RefundAccountCancels counts cancels that came with a
	// refundReceiveAccount.
	RefundAccountCancels int `json:"refundAccountCancels"`
}

// Server is the sandbox PG. It is an http.Handler; all state lives in memory
// behind one mutex.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	hooks   *webhookSender
	kst     *time.Location
	sessTTL time.Duration

	mu         sync.Mutex
	faults     Faults
	dice       *mrand.Rand
	webhookURL string
	payments   map[string]*payment // by paymentKey
	byOrder    map[string]string   // orderId -> newest paymentKey
	paidOrder  map[string]string   // orderId -> the paymentKey that was approved
	recent     []string            // paymentKeys, newest last, capped
	idem       map[idemKey]*idemEntry
	idemClaims int
	stats      map[string]*OrderStats
	clockSkew  time.Duration // POST /sandbox/clock: how far the ledger's clock is ahead
	txns       []*txn        // the transaction list, sorted by time
	txnByKey   map[string]*txn
	txnSeq     int64
	events     []logEntry // ring of recent requests and webhooks for the console

	closing   chan struct{} // closed by Close: wakes hanging "timeout" requests
	closeOnce sync.Once
}

// payment is the PG's record; toAPI renders it Toss-shaped.
type payment struct {
	PaymentKey    string
	OrderID       string
	OrderName     string
	Status        string
	TotalAmount   int64
	BalanceAmount int64
	RequestedAt   time.Time
	ApprovedAt    time.Time
	Cancels       []Cancel
	Failure       *Failure
	Method        string // 카드 or 가상계좌, chosen in the payment window
	VA            *VirtualAccount
	Secret        string // a virtual account's DEPOSIT_CALLBACK secret
}

// Payment is the Toss-shaped payment object mockpg answers and sends in
// webhooks.
type Payment struct {
	PaymentKey    string   `json:"paymentKey"`
	OrderID       string   `json:"orderId"`
	OrderName     string   `json:"orderName"`
	Status        string   `json:"status"`
	Method        string   `json:"method"`
	TotalAmount   int64    `json:"totalAmount"`
	BalanceAmount int64    `json:"balanceAmount"`
	RequestedAt   string   `json:"requestedAt"`
	ApprovedAt    *string  `json:"approvedAt"`
	Cancels       []Cancel `json:"cancels"`
	Failure       *Failure `json:"failure"`
	Currency      string   `json:"currency"`
	Type          string   `json:"type"`
	Version       string   `json:"version"`
	// VirtualAccount and Secret are set once a 가상계좌 payment's account
	// is issued (at confirm).
	VirtualAccount *APIVirtualAccount `json:"virtualAccount,omitempty"`
	Secret         string             `json:"secret,omitempty"`
}

// VirtualAccount is the ledger's record of an issued account.
type VirtualAccount struct {
	AccountNumber string
	BankCode      string
	CustomerName  string
	DueDate       time.Time
	Expired       bool
}

// APIVirtualAccount is Payment.virtualAccount as Toss renders it.
type APIVirtualAccount struct {
	AccountType   string `json:"accountType"`
	AccountNumber string `json:"accountNumber"`
	BankCode      string `json:"bankCode"`
	CustomerName  string `json:"customerName"`
	DueDate       string `json:"dueDate"`
	RefundStatus  string `json:"refundStatus"`
	Expired       bool   `json:"expired"`
}

// Cancel is one entry of Payment.Cancels.
type Cancel struct {
	CancelAmount     int64  `json:"cancelAmount"`
	CancelReason     string `json:"cancelReason"`
	CanceledAt       string `json:"canceledAt"`
	TransactionKey   string `json:"transactionKey"`
	RefundableAmount int64  `json:"refundableAmount"`
}

// Failure is Payment.Failure.
type Failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

const (
	maxRecent  = 200
	maxEvents  = 300
	maxBody    = 64 << 10
	idemTTL    = 15 * 24 * time.Hour
	timeLayout = "2006-01-02T15:04:05-07:00"
)

var orderIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{6,64}$`)

// New returns a Server for cfg and starts its webhook sender; Close stops it.
func New(cfg Config) *Server {
	if cfg.SecretKey == "" {
		cfg.SecretKey = "test_sk_mockpg"
	}
	if cfg.WebhookSecret == "" {
		cfg.WebhookSecret = "whsec_mockpg_dev"
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 10 * time.Minute
	}
	if cfg.VirtualAccountDue <= 0 {
		cfg.VirtualAccountDue = 72 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		kst:        time.FixedZone("KST", 9*60*60),
		sessTTL:    cfg.SessionTTL,
		webhookURL: cfg.WebhookURL,
		payments:   map[string]*payment{},
		byOrder:    map[string]string{},
		paidOrder:  map[string]string{},
		idem:       map[idemKey]*idemEntry{},
		stats:      map[string]*OrderStats{},
		txnByKey:   map[string]*txn{},
		closing:    make(chan struct{}),
	}
	s.setFaultsLocked(cfg.Faults)
	s.hooks = newWebhookSender(s)
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops the webhook sender (events still queued are dropped) and
// releases requests hanging in a "timeout" fault. The http.Server serving s
// still owns its connections.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.hooks.close()
	})
}

// SetFaults replaces the fault configuration and re-seeds the dice. It does
// not validate: call Faults.Validate first on untrusted input (the HTTP
// endpoint does).
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setFaultsLocked(f)
}

func (s *Server) setFaultsLocked(f Faults) {
	if f.TimeoutMS == 0 {
		f.TimeoutMS = 30000
	}
	s.faults = f
	seed := uint64(f.Seed)
	if seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		for _, x := range b {
			seed = seed<<8 | uint64(x)
		}
	}
	s.dice = mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// Faults returns the current fault configuration.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// SetWebhookURL changes where webhooks go; empty stops sending new ones.
func (s *Server) SetWebhookURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhookURL = u
}

// Stats returns a copy of the per-orderId counters.
func (s *Server) Stats() map[string]OrderStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]OrderStats, len(s.stats))
	for k, v := range s.stats {
		out[k] = *v
	}
	return out
}

// ErrInvalidSession is returned by CreateSession for a malformed orderId or a
// non-positive amount.
var ErrInvalidSession = errors.New("mockpg: invalid session request")

// ErrDuplicatedOrderID is returned by CreateSession when the orderId was
// already paid: like Toss, an orderId can be approved once.
var ErrDuplicatedOrderID = errors.New("mockpg: orderId already paid")

// The payment methods the window offers.
const (
	MethodCard           = "카드"
	MethodVirtualAccount = "가상계좌"
)

// CreateSession opens a READY card payment session as if a buyer had
// finished the payment window, and returns its paymentKey (tmock_…). It
// expires after Config.SessionTTL unless confirmed.
func (s *Server) CreateSession(orderID string, amount int64, orderName string) (string, error) {
	return s.CreateSessionMethod(orderID, amount, orderName, MethodCard)
}

// CreateSessionMethod is CreateSession for a method: 카드 ("" is 카드), or
// 가상계좌, whose confirm issues a virtual account that waits for a deposit.
func (s *Server) CreateSessionMethod(orderID string, amount int64, orderName, method string) (string, error) {
	if method == "" {
		method = MethodCard
	}
	if method != MethodCard && method != MethodVirtualAccount {
		return "", fmt.Errorf("%w: method must be 카드 or 가상계좌", ErrInvalidSession)
	}
	if !orderIDPattern.MatchString(orderID) {
		return "", fmt.Errorf("%w: orderId must be 6-64 of [A-Za-z0-9_-]", ErrInvalidSession)
	}
	if amount <= 0 || amount > 1_000_000_000_000 {
		return "", fmt.Errorf("%w: amount must be 1..10^12", ErrInvalidSession)
	}
	if len(orderName) > 100 {
		return "", fmt.Errorf("%w: orderName longer than 100", ErrInvalidSession)
	}
	if orderName == "" {
		orderName = "mockpg order " + orderID
	}
	key := "tmock_" + rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, paid := s.paidOrder[orderID]; paid {
		return "", ErrDuplicatedOrderID
	}
	p := &payment{
		PaymentKey:    key,
		OrderID:       orderID,
		OrderName:     orderName,
		Status:        "READY",
		TotalAmount:   amount,
		BalanceAmount: amount,
		RequestedAt:   s.ledgerNow(),
		Method:        method,
	}
	s.payments[key] = p
	s.byOrder[orderID] = key
	s.recent = append(s.recent, key)
	if len(s.recent) > maxRecent {
		s.recent = s.recent[len(s.recent)-maxRecent:]
	}
	s.noteLocked("session", fmt.Sprintf("session %s for order %s, amount %d", key, orderID, amount))
	return key, nil
}

// expireLocked moves a READY session past its TTL to EXPIRED.
func (s *Server) expireLocked(p *payment) {
	now := s.ledgerNow()
	if p.Status == "READY" && !now.Before(p.RequestedAt.Add(s.sessTTL)) {
		p.Status = "EXPIRED"
	}
	if p.Status == "WAITING_FOR_DEPOSIT" && p.VA != nil && !now.Before(p.VA.DueDate) {
		// The bank closes the account at its due date: no deposit can
		// arrive any more, and the merchant hears of it.
		p.Status = "EXPIRED"
		p.VA.Expired = true
		s.noteLocked("virtual-account", "account of "+p.OrderID+" passed its due date unpaid: EXPIRED")
		s.emitLocked(p)
	}
}

func (s *Server) statsLocked(orderID string) *OrderStats {
	st := s.stats[orderID]
	if st == nil {
		st = &OrderStats{}
		s.stats[orderID] = st
	}
	return st
}

func (s *Server) toAPI(p *payment) Payment {
	out := Payment{
		PaymentKey:    p.PaymentKey,
		OrderID:       p.OrderID,
		OrderName:     p.OrderName,
		Status:        p.Status,
		TotalAmount:   p.TotalAmount,
		BalanceAmount: p.BalanceAmount,
		RequestedAt:   p.RequestedAt.In(s.kst).Format(timeLayout),
		Cancels:       append([]Cancel(nil), p.Cancels...),
		Failure:       p.Failure,
		Currency:      "KRW",
		Type:          "NORMAL",
		Version:       "2022-11-16",
	}
	if p.Status != "READY" && (p.Status != "EXPIRED" || p.VA != nil) {
		out.Method = p.Method
	}
	if p.VA != nil {
		out.VirtualAccount = &APIVirtualAccount{
			AccountType: "일반", AccountNumber: p.VA.AccountNumber, BankCode: p.VA.BankCode,
			CustomerName: p.VA.CustomerName, DueDate: p.VA.DueDate.In(s.kst).Format(timeLayout),
			RefundStatus: "NONE", Expired: p.VA.Expired,
		}
		out.Secret = p.Secret
	}
	if !p.ApprovedAt.IsZero() {
		a := p.ApprovedAt.In(s.kst).Format(timeLayout)
		out.ApprovedAt = &a
	}
	return out
}

// logEntry is one line of the console's live log.
type logEntry struct {
	At   time.Time
	Kind string
	Text string
}

func (s *Server) noteLocked(kind, text string) {
	s.events = append(s.events, logEntry{At: s.cfg.Now(), Kind: kind, Text: text})
	if len(s.events) > maxEvents {
		s.events = s.events[len(s.events)-maxEvents:]
	}
}

func (s *Server) note(kind, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noteLocked(kind, text)
}

// roll draws one fault die under the lock.
func (s *Server) rollLocked(rate float64) bool {
	return rate > 0 && s.dice.Float64() < rate
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// apiError is Toss's error body.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func errBody(code, msg string) []byte {
	b, _ := json.Marshal(apiError{Code: code, Message: msg})
	return b
}

// ledgerNow is the payment ledger's clock: the configured clock plus what
// POST /sandbox/clock advanced it by (due dates, session expiry, times in
// answers). Webhook signatures keep the real clock, or the receiver would
// refuse them as stale.
func (s *Server) ledgerNow() time.Time { return s.cfg.Now().Add(s.clockSkew) }

// AdvanceClock moves the ledger's clock forward by d (tests pass due dates
// with it) and expires what that makes overdue, emitting its webhooks.
func (s *Server) AdvanceClock(d time.Duration) (time.Time, error) {
	if d < 0 || d > 366*24*time.Hour {
		return time.Time{}, errors.New("advance must be between 0 and 8784h")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clockSkew += d
	for _, p := range s.payments {
		s.expireLocked(p)
	}
	now := s.ledgerNow()
	s.noteLocked("clock", fmt.Sprintf("ledger clock advanced %s to %s", d, now.In(s.kst).Format(timeLayout)))
	return now, nil
}

// ErrNotWaitingForDeposit is returned by Deposit for a payment that is not
// an issued, unexpired virtual account.
var ErrNotWaitingForDeposit = errors.New("mockpg: payment is not a virtual account waiting for its deposit")

// Deposit is the buyer's bank transfer into a virtual account: the payment
// becomes DONE and mockpg sends DEPOSIT_CALLBACK (with the payment's
// secret) and PAYMENT_STATUS_CHANGED, each subject to the webhook faults.
// A second deposit, or one past the due date, is refused.
func (s *Server) Deposit(paymentKey string) (Payment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.payments[paymentKey]
	if p == nil {
		return Payment{}, ErrNotFoundPayment
	}
	s.expireLocked(p)
	if p.Status != "WAITING_FOR_DEPOSIT" || p.VA == nil {
		return Payment{}, fmt.Errorf("%w (status %s)", ErrNotWaitingForDeposit, p.Status)
	}
	p.Status = "DONE"
	p.ApprovedAt = s.ledgerNow()
	s.recordTxnLocked(p, "", "DONE", p.TotalAmount)
	st := s.statsLocked(p.OrderID)
	st.Approvals++
	st.Deposits++
	s.noteLocked("virtual-account", fmt.Sprintf("deposit of %d into %s for %s", p.TotalAmount, p.VA.AccountNumber, p.OrderID))
	s.emitDepositLocked(p)
	s.emitLocked(p)
	return s.toAPI(p), nil
}

// ErrNotFoundPayment is returned for an unknown paymentKey.
var ErrNotFoundPayment = errors.New("mockpg: no such paymentKey")

// issueVirtualAccountLocked turns a confirmed 가상계좌 session into an
// issued account waiting for its deposit.
func (s *Server) issueVirtualAccountLocked(p *payment) {
	banks := []string{"20", "88", "06", "11", "81", "03"}
	digits := make([]byte, 14)
	for i := range digits {
		digits[i] = byte('0' + s.dice.IntN(10))
	}
	p.Status = "WAITING_FOR_DEPOSIT"
	p.VA = &VirtualAccount{
		AccountNumber: string(digits), BankCode: banks[s.dice.IntN(len(banks))],
		CustomerName: "홍길동", DueDate: s.ledgerNow().Add(s.cfg.VirtualAccountDue).Truncate(time.Second),
	}
	p.Secret = "ps_" + rand.Text()
	s.statsLocked(p.OrderID).VirtualAccounts++
}
