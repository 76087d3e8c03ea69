// Package pgclient is payrail's one client for a TossPayments v1 style PG:
// the real Toss API and mockpg differ only in base URL and secret key.
//
// It owns the wire format and, above all, the classification of every answer
// into an Outcome. The classification is the contract payrail's correctness
// rests on (DESIGN.md rule 4): anything that may have reached the PG and
// brought back no clear answer is Unknown, never Declined or Retryable. The
// client never retries on its own and never invents idempotency keys: the
// caller derives them (rule 8) and decides what to do with each outcome.
// (net/http itself may resend a request that carries an Idempotency-Key when
// a reused keep-alive connection died under it; that is safe for the same
// reason a caller's retry is.)
package pgclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Client talks to one PG with one secret key. It is safe for concurrent use.
type Client struct {
	baseURL string
	auth    string
	hc      *http.Client
}

// New returns a client for the PG at baseURL (e.g. "https://api.tosspayments.com"
// or mockpg's address) authenticating with secretKey. A nil hc means
// &http.Client{}: no client-level timeout, the ctx of each call carries the
// deadline. The client uses a copy of hc that never follows redirects: a
// POST turned into a GET by a 303 would lose the operation.
func New(baseURL, secretKey string, hc *http.Client) *Client {
	var own http.Client
	if hc != nil {
		own = *hc
	}
	own.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{
		baseURL: strings.TrimRight(baseURL, "/"),
		auth:    "Basic " + base64.StdEncoding.EncodeToString([]byte(secretKey+":")),
		hc:      &own,
	}
}

// Outcome is what a PG call means for the caller.
type Outcome int

const (
	// Approved: the PG answered 2xx with a payment. For confirm and cancel
	// the operation happened; for lookups it only means the PG answered with
	// a payment, whatever its status (read Payment.Status).
	Approved Outcome = iota + 1
	// Declined: the PG answered with a definite refusal (Code, Message). The
	// operation did not happen.
	Declined
	// Retryable: the operation certainly did not happen (the request never
	// left, or the PG said "temporary, try again"). Retry with the same key.
	Retryable
	// Unknown: the request may have been applied and no clear answer came
	// back (timeout, connection lost after sending, garbled 2xx). Retry with
	// the same idempotency key, then reconcile by lookup; never treat as a
	// failure.
	Unknown
	// Misconfigured: the PG refused payrail's own credentials or request
	// (UNAUTHORIZED_KEY, INVALID_API_KEY, FORBIDDEN_*, INVALID_REQUEST, any
	// 401). It says nothing about the buyer's payment: retry with the same
	// key, and alert an operator, whose fix (the secret key) is what makes
	// the retry succeed. Never a decline.
	Misconfigured
)

// String returns "approved", "declined", "retryable", "unknown" or
// "misconfigured".
func (o Outcome) String() string {
	switch o {
	case Approved:
		return "approved"
	case Declined:
		return "declined"
	case Retryable:
		return "retryable"
	case Unknown:
		return "unknown"
	case Misconfigured:
		return "misconfigured"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Payment is the part of Toss's Payment object payrail uses.
type Payment struct {
	PaymentKey    string   `json:"paymentKey"`
	OrderID       string   `json:"orderId"`
	OrderName     string   `json:"orderName"`
	Status        Status   `json:"status"`
	Method        string   `json:"method"`
	TotalAmount   int64    `json:"totalAmount"`
	BalanceAmount int64    `json:"balanceAmount"`
	RequestedAt   string   `json:"requestedAt"`
	ApprovedAt    string   `json:"approvedAt"`
	Cancels       []Cancel `json:"cancels"`
	Failure       *Failure `json:"failure"`
	// VirtualAccount is set for a virtual-account payment (method 가상계좌).
	VirtualAccount *VirtualAccount `json:"virtualAccount"`
	// Secret is what the PG puts in this payment's DEPOSIT_CALLBACKs.
	Secret string `json:"secret"`
}

// VirtualAccount is Payment.virtualAccount: the account the buyer pays into.
type VirtualAccount struct {
	AccountNumber string `json:"accountNumber"`
	BankCode      string `json:"bankCode"`
	CustomerName  string `json:"customerName"`
	// DueDate is ISO 8601 with an offset ("2026-12-06T23:59:59+09:00").
	DueDate string `json:"dueDate"`
	Expired bool   `json:"expired"`
}

// RefundAccount is a cancel's refundReceiveAccount: where the PG sends a
// deposited virtual account's money back.
type RefundAccount struct {
	Bank          string `json:"bank"`
	AccountNumber string `json:"accountNumber"`
	HolderName    string `json:"holderName"`
}

// Cancel is one entry of Payment.Cancels.
type Cancel struct {
	CancelAmount     int64  `json:"cancelAmount"`
	CancelReason     string `json:"cancelReason"`
	CanceledAt       string `json:"canceledAt"`
	TransactionKey   string `json:"transactionKey"`
	RefundableAmount int64  `json:"refundableAmount"`
}

// Failure is Payment.Failure: why a payment failed at the PG.
type Failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Result is the classified answer of one call.
type Result struct {
	Outcome Outcome
	// Payment is set when the PG answered with a payment (Approved, and an
	// Unknown confirm whose lookup found a payment that is not DONE).
	Payment *Payment
	// Code and Message are the PG's error code and message (Declined,
	// Retryable and Unknown answers that carried one).
	Code, Message string
	// HTTPStatus is the status of the last answer; 0 when none came.
	HTTPStatus int
	// Err describes transport and decoding failures; nil when the PG gave a
	// well-formed answer.
	Err error
	// Latency is the wall time of the whole call, lookups included.
	Latency time.Duration
}

// Codes the client itself gives meaning to.
const (
	CodeInvalidRequest          = "INVALID_REQUEST"
	CodeAlreadyProcessedPayment = "ALREADY_PROCESSED_PAYMENT"
	CodeProviderError           = "PROVIDER_ERROR"
	CodeNotFoundPayment         = "NOT_FOUND_PAYMENT"
	CodeNotFoundPaymentSession  = "NOT_FOUND_PAYMENT_SESSION"
)

// isConfigCode reports whether a PG error code is about payrail's own
// credentials or request, not the buyer's payment. REJECT_CARD_PAYMENT is
// a 403 too, so the code decides, not the status.
func isConfigCode(code string) bool {
	switch code {
	case "UNAUTHORIZED_KEY", "INVALID_API_KEY", CodeInvalidRequest, "INVALID_AUTHORIZE_AUTH", "INVALID_CLIENT_KEY", "INVALID_SECRET_KEY":
		return true
	}
	return strings.HasPrefix(code, "FORBIDDEN_")
}

// maxBody caps how much of an answer is read; a bigger one is garbled.
const maxBody = 1 << 20

// Confirm approves the payment session paymentKey for orderID and amount
// (POST /v1/payments/confirm). ALREADY_PROCESSED_PAYMENT is resolved here by
// looking the payment up: DONE for this orderID and amount is Approved, any
// other finding is Unknown (with the Payment found, if any). A 2xx whose
// payment is for another order or amount is Unknown too: the PG answered
// for something else (a reused idempotency key), which must not be taken
// as this order's approval.
func (c *Client) Confirm(ctx context.Context, idempotencyKey, paymentKey, orderID string, amount int64) Result {
	start := time.Now()
	if r, bad := checkArgs(idempotencyKey, paymentKey, orderID); bad {
		return r
	}
	body := map[string]any{"paymentKey": paymentKey, "orderId": orderID, "amount": amount}
	res := c.do(ctx, http.MethodPost, "/v1/payments/confirm", idempotencyKey, body)
	switch {
	case res.Outcome == Approved:
		if p := res.Payment; p.OrderID != orderID || p.TotalAmount != amount || p.PaymentKey != paymentKey {
			res.Outcome = Unknown
			res.Err = fmt.Errorf("confirm answered for order %q amount %d paymentKey %q, want %q %d %q",
				p.OrderID, p.TotalAmount, p.PaymentKey, orderID, amount, paymentKey)
		}
	case res.Outcome == Declined && res.Code == CodeAlreadyProcessedPayment:
		res = c.resolveAlreadyProcessed(ctx, res, paymentKey, orderID, amount)
	}
	res.Latency = time.Since(start)
	return res
}

func (c *Client) resolveAlreadyProcessed(ctx context.Context, first Result, paymentKey, orderID string, amount int64) Result {
	look := c.GetPayment(ctx, paymentKey)
	if look.Outcome == Approved {
		p := look.Payment
		// A virtual account's confirm leaves it waiting for the deposit: the
		// confirm happened all the same.
		if (p.Status == StatusDone || p.Status == StatusWaitingForDeposit) && p.OrderID == orderID && p.TotalAmount == amount {
			return Result{Outcome: Approved, Payment: p, HTTPStatus: look.HTTPStatus}
		}
		return Result{
			Outcome: Unknown, Payment: p, Code: first.Code, Message: first.Message, HTTPStatus: first.HTTPStatus,
			Err: fmt.Errorf("already processed, and the lookup shows status %s for order %q amount %d", p.Status, p.OrderID, p.TotalAmount),
		}
	}
	err := look.Err
	if err == nil {
		err = fmt.Errorf("lookup answered %s %s", look.Outcome, look.Code)
	}
	return Result{
		Outcome: Unknown, Code: first.Code, Message: first.Message, HTTPStatus: first.HTTPStatus,
		Err: fmt.Errorf("already processed, lookup failed: %w", err),
	}
}

// GetPayment looks a payment up by paymentKey (GET /v1/payments/{paymentKey}).
// A missing payment is Declined with Code NOT_FOUND_PAYMENT.
func (c *Client) GetPayment(ctx context.Context, paymentKey string) Result {
	if paymentKey == "" {
		return invalid("paymentKey is required")
	}
	return c.do(ctx, http.MethodGet, "/v1/payments/"+url.PathEscape(paymentKey), "", nil)
}

// GetPaymentByOrderID looks a payment up by orderId
// (GET /v1/payments/orders/{orderId}).
func (c *Client) GetPaymentByOrderID(ctx context.Context, orderID string) Result {
	if orderID == "" {
		return invalid("orderId is required")
	}
	return c.do(ctx, http.MethodGet, "/v1/payments/orders/"+url.PathEscape(orderID), "", nil)
}

// Cancel cancels amount of a payment, or the whole remaining balance when
// amount is 0 (POST /v1/payments/{paymentKey}/cancel). Approved means the
// PG applied the cancel; Payment shows the new balance and cancels. refund,
// when set, is the refundReceiveAccount a deposited virtual account's money
// goes back to.
func (c *Client) Cancel(ctx context.Context, idempotencyKey, paymentKey, reason string, amount int64, refund *RefundAccount) Result {
	if r, bad := checkArgs(idempotencyKey, paymentKey, "-"); bad {
		return r
	}
	if reason == "" {
		return invalid("cancel reason is required")
	}
	if amount < 0 {
		return invalid("cancel amount must not be negative")
	}
	body := map[string]any{"cancelReason": reason}
	if amount > 0 {
		body["cancelAmount"] = amount
	}
	if refund != nil {
		body["refundReceiveAccount"] = refund
	}
	return c.do(ctx, http.MethodPost, "/v1/payments/"+url.PathEscape(paymentKey)+"/cancel", idempotencyKey, body)
}

func checkArgs(idempotencyKey, paymentKey, orderID string) (Result, bool) {
	switch {
	case idempotencyKey == "":
		return invalid("an idempotency key is required"), true
	case len(idempotencyKey) > 300:
		return invalid("the idempotency key is longer than 300 characters"), true
	case paymentKey == "":
		return invalid("paymentKey is required"), true
	case orderID == "":
		return invalid("orderId is required"), true
	}
	return Result{}, false
}

// invalid refuses a call before anything is sent: payrail asked for
// something malformed, which no retry of the buyer can fix.
func invalid(msg string) Result {
	return Result{Outcome: Misconfigured, Code: CodeInvalidRequest, Message: msg}
}

// do sends one request and classifies the answer.
func (c *Client) do(ctx context.Context, method, path, idempotencyKey string, body any) Result {
	start := time.Now()
	res := c.roundTrip(ctx, method, path, idempotencyKey, body)
	res.Latency = time.Since(start)
	return res
}

func (c *Client) roundTrip(ctx context.Context, method, path, idempotencyKey string, body any) Result {
	status, raw, readErr, failed := c.send(ctx, method, path, idempotencyKey, body, maxBody)
	if failed != nil {
		return *failed
	}
	return classifyAnswer(status, raw, readErr)
}

// send makes one request and reads at most limit bytes of the answer;
// failed is set (and the rest unset) when no answer came.
func (c *Client) send(ctx context.Context, method, path, idempotencyKey string, body any, limit int) (status int, raw []byte, readErr error, failed *Result) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, &Result{Outcome: Misconfigured, Code: CodeInvalidRequest, Err: err}
		}
		rd = bytes.NewReader(b)
	}
	// sent turns true as soon as any part of the request may have been
	// written to the connection: from then on a failure is Unknown.
	var sent atomic.Bool
	trace := &httptrace.ClientTrace{
		WroteHeaderField: func(string, []string) { sent.Store(true) },
		WroteHeaders:     func() { sent.Store(true) },
		WroteRequest:     func(httptrace.WroteRequestInfo) { sent.Store(true) },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, c.baseURL+path, rd)
	if err != nil {
		return 0, nil, nil, &Result{Outcome: Misconfigured, Code: CodeInvalidRequest, Err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, &Result{Outcome: classifyTransport(ctx, err, sent.Load()), Err: err}
	}
	defer resp.Body.Close()
	raw, readErr = io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if readErr == nil && len(raw) > limit {
		readErr = fmt.Errorf("answer larger than %d bytes", limit)
	}
	return resp.StatusCode, raw, readErr, nil
}

// classifyTransport maps a failed round trip. Only a failure that certainly
// happened before anything was written (refused connection, DNS) is
// Retryable; a timeout is always Unknown, because a deadline may strike at
// any point and we do not claim to know where.
func classifyTransport(ctx context.Context, err error, sent bool) Outcome {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return Unknown
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Unknown
	}
	if sent {
		return Unknown
	}
	return Retryable
}

// tossError is the PG's error body.
type tossError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func classifyAnswer(status int, raw []byte, readErr error) Result {
	res := Result{HTTPStatus: status}
	var te tossError
	hasCode := readErr == nil && json.Unmarshal(raw, &te) == nil && te.Code != ""
	if hasCode {
		res.Code, res.Message = te.Code, te.Message
	}
	switch {
	case status >= 200 && status < 300:
		if readErr != nil {
			res.Outcome, res.Err = Unknown, fmt.Errorf("read 2xx answer: %w", readErr)
			return res
		}
		var p Payment
		if err := json.Unmarshal(raw, &p); err != nil || p.PaymentKey == "" {
			if err == nil {
				err = errors.New("no paymentKey in the answer")
			}
			res.Outcome, res.Err = Unknown, fmt.Errorf("garbled 2xx answer: %w", err)
			res.Code, res.Message = "", ""
			return res
		}
		res.Outcome, res.Payment = Approved, &p
		res.Code, res.Message = "", ""
	case status == http.StatusTooManyRequests:
		res.Outcome = Retryable
	case status >= 500:
		// The request was sent in full and something answered: the PG
		// failing half-way, or a proxy in front of it timing out (502,
		// 504) while the PG may have applied it. A later decline is only
		// believed after a lookup (DESIGN rule 4).
		res.Outcome = Unknown
		if !hasCode {
			res.Err = fmt.Errorf("%d answer without an error code", status)
		}
	case status == http.StatusConflict, status == http.StatusRequestTimeout:
		// An idempotent request still in flight at the PG, or a request
		// the PG gave up reading: it may yet apply. Retry with the key.
		res.Outcome = Unknown
	case status >= 400 && status < 500:
		switch {
		case !hasCode:
			// A 4xx without a Toss body is a proxy or a broken PG, not a
			// decision about this payment.
			res.Outcome, res.Err = Unknown, fmt.Errorf("%d answer without an error code", status)
		case te.Code == CodeProviderError:
			res.Outcome = Retryable
		case status == http.StatusUnauthorized || isConfigCode(te.Code):
			res.Outcome = Misconfigured
		default:
			res.Outcome = Declined
		}
	default: // 1xx leftovers and 3xx: the client does not follow PG redirects blindly.
		res.Outcome, res.Err = Unknown, fmt.Errorf("unexpected status %d", status)
	}
	return res
}
