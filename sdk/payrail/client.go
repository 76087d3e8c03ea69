// Package payrail is the Go client of payrail's merchant API (api/openapi.yaml):
// orders, confirms, cancels and callbacks, every request signed with the
// merchant's client secret (HMAC-SHA256, DESIGN.md "Merchant
// authentication"), every POST sent with an Idempotency-Key (one is made up
// when the caller gives none, and kept across the client's retries, so a
// retry is never a second order, confirm or cancel), and 429, 503 and
// network failures retried with backoff honouring Retry-After within the
// context's deadline. A refusal is an *Error carrying payrail's stable code.
//
// Callbacks are verified with the webhook subpackage.
//
// The package imports nothing of payrail's: copy it, vendor it, or import
// github.com/payrail/payrail/sdk/payrail.
package payrail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one payrail as one merchant. It is safe for concurrent use.
type Client struct {
	base             string
	clientID, secret string
	hc               *http.Client
	now              func() time.Time
	retries          int
	backoff          time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sends requests with hc (default: a client with a 40 s
// timeout, longer than a confirm's 30 s wait).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetries sets how many times a 429, a 503 or a network failure is
// retried (default 3; 0 never retries).
func WithRetries(n int) Option { return func(c *Client) { c.retries = max(0, n) } }

// WithBackoff sets the first retry delay when the answer names none
// (default 200 ms, doubling, with jitter).
func WithBackoff(d time.Duration) Option { return func(c *Client) { c.backoff = d } }

// WithClock sets the clock the signature's timestamp is read from.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// New returns a client of the payrail at baseURL ("https://payrail.example")
// for the merchant clientID with its clientSecret.
func New(baseURL, clientID, clientSecret string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), clientID: clientID, secret: clientSecret,
		hc: &http.Client{Timeout: 40 * time.Second}, now: time.Now, retries: 3, backoff: 200 * time.Millisecond}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Error is payrail's refusal (application/problem+json) or an unexpected
// answer. Code is payrail's stable code (ORDER_NOT_FOUND, AMOUNT_MISMATCH,
// RATE_LIMITED, …): branch on it, not on Detail.
type Error struct {
	Status     int
	Code       string
	Title      string
	Detail     string
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("payrail: %d %s: %s", e.Status, e.Code, e.Detail)
}

// ErrorCode returns the code of a payrail *Error in err's chain, or "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// call is one API request: signed afresh on every attempt (a new nonce
// and timestamp), the same Idempotency-Key on every attempt.
type call struct {
	method, path string
	body         any
	idemKey      string
	header       http.Header
	want         []int
}

// Response is what came back of the last attempt.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (c *Client) do(ctx context.Context, k call, out any) (response, error) {
	var raw []byte
	if k.body != nil {
		var err error
		if raw, err = json.Marshal(k.body); err != nil {
			return response{}, err
		}
	}
	if k.method == http.MethodPost && k.idemKey == "" {
		n, err := Nonce()
		if err != nil {
			return response{}, err
		}
		k.idemKey = "sdk_" + n
	}
	for attempt := 0; ; attempt++ {
		res, err := c.once(ctx, k, raw)
		retry, wait := c.retryable(res, err, attempt)
		if !retry {
			if err != nil {
				return res, err
			}
			return res, c.decode(res, k.want, out)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			if err != nil {
				return res, err
			}
			return res, c.decode(res, k.want, out)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) once(ctx context.Context, k call, raw []byte) (response, error) {
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, k.method, c.base+k.path, rd)
	if err != nil {
		return response{}, err
	}
	for h, vs := range k.header {
		for _, v := range vs {
			req.Header.Add(h, v)
		}
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if k.idemKey != "" {
		req.Header.Set("Idempotency-Key", k.idemKey)
	}
	req.Header.Set("Accept", "application/json")
	if err := SignRequest(req, c.clientID, c.secret, c.now()); err != nil {
		return response{}, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// retryable decides whether an attempt is tried again, and after how long:
// a network failure, 429 and 503 (OVERLOADED, SERVICE_UNAVAILABLE), after
// Retry-After when the answer gives one, else exponential backoff with
// jitter. 409 IDEMPOTENCY_KEY_IN_USE (the same request still in flight)
// is retried too.
func (c *Client) retryable(res response, err error, attempt int) (bool, time.Duration) {
	if attempt >= c.retries {
		return false, 0
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false, 0
	}
	wait := c.backoff << attempt
	wait = wait/2 + time.Duration(rand.Int64N(int64(wait)+1))
	if err != nil {
		return true, wait
	}
	switch {
	case res.status == http.StatusTooManyRequests, res.status == http.StatusServiceUnavailable:
	case res.status == http.StatusConflict && problemCode(res.body) == "IDEMPOTENCY_KEY_IN_USE":
	default:
		return false, 0
	}
	if s, err := strconv.Atoi(res.header.Get("Retry-After")); err == nil && s >= 0 {
		wait = time.Duration(s) * time.Second
	}
	return true, wait
}

func problemCode(body []byte) string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(body, &p)
	return p.Code
}

func (c *Client) decode(res response, want []int, out any) error {
	for _, w := range want {
		if res.status == w {
			if out == nil || len(res.body) == 0 {
				return nil
			}
			if err := json.Unmarshal(res.body, out); err != nil {
				return fmt.Errorf("payrail: decode %d answer: %w", res.status, err)
			}
			return nil
		}
	}
	e := &Error{Status: res.status}
	var p struct {
		Code   string `json:"code"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(res.body, &p) == nil {
		e.Code, e.Title, e.Detail = p.Code, p.Title, p.Detail
	}
	if e.Code == "" {
		e.Code, e.Detail = "HTTP_"+strconv.Itoa(res.status), strings.TrimSpace(string(res.body))
	}
	if s, err := strconv.Atoi(res.header.Get("Retry-After")); err == nil {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// ---- the API ------------------------------------------------------------------------

// CreateOrderParams is POST /v1/orders. Amount and OrderName are required.
type CreateOrderParams struct {
	MerchantOrderID string `json:"merchantOrderId,omitempty"`
	Amount          int64  `json:"amount"`
	Currency        string `json:"currency,omitempty"`
	OrderName       string `json:"orderName"`
	SuccessURL      string `json:"successUrl,omitempty"`
	FailURL         string `json:"failUrl,omitempty"`
	// IdempotencyKey, when set, replaces the one the client makes up (use
	// your own to make a create idempotent across your process restarts).
	IdempotencyKey string `json:"-"`
}

// CreateOrder creates an order. The answer's PaymentToken is shown once:
// keep it server-side for the confirm.
func (c *Client) CreateOrder(ctx context.Context, p CreateOrderParams) (*Order, error) {
	var o Order
	_, err := c.do(ctx, call{method: "POST", path: "/v1/orders", body: p, idemKey: p.IdempotencyKey, want: []int{201}}, &o)
	return orNil(&o, err)
}

// GetOrder reads an order with the first page of its history.
func (c *Client) GetOrder(ctx context.Context, orderID string) (*Order, error) {
	var o Order
	_, err := c.do(ctx, call{method: "GET", path: "/v1/orders/" + url.PathEscape(orderID), want: []int{200}}, &o)
	return orNil(&o, err)
}

// ListParams filters ListOrders.
type ListParams struct {
	Status          string
	MerchantOrderID string
	// PageSize is the page read per request (1–100, default 50).
	PageSize int
}

// ListOrders iterates over the merchant's orders, newest first, reading
// pages as it goes. A failed page ends the iteration with its error.
func (c *Client) ListOrders(ctx context.Context, p ListParams) iter.Seq2[Order, error] {
	return func(yield func(Order, error) bool) {
		cursor := ""
		for {
			q := url.Values{}
			if p.Status != "" {
				q.Set("status", p.Status)
			}
			if p.MerchantOrderID != "" {
				q.Set("merchantOrderId", p.MerchantOrderID)
			}
			size := p.PageSize
			if size <= 0 || size > 100 {
				size = 50
			}
			q.Set("limit", strconv.Itoa(size))
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page struct {
				Orders     []Order `json:"orders"`
				NextCursor string  `json:"nextCursor"`
			}
			if _, err := c.do(ctx, call{method: "GET", path: "/v1/orders?" + q.Encode(), want: []int{200}}, &page); err != nil {
				yield(Order{}, err)
				return
			}
			for _, o := range page.Orders {
				if !yield(o, nil) {
					return
				}
			}
			if page.NextCursor == "" {
				return
			}
			cursor = page.NextCursor
		}
	}
}

// ConfirmParams is POST /v1/orders/{orderId}/confirm: what the PG's
// success redirect carried (paymentKey; the amount is checked against the
// order) and the token CreateOrder returned.
type ConfirmParams struct {
	PaymentKey   string `json:"paymentKey"`
	Amount       int64  `json:"amount"`
	PaymentToken string `json:"paymentToken"`
	// Wait, up to 30 s, asks payrail to answer with the outcome
	// (Prefer: wait) rather than 202 ACCEPTED.
	Wait           time.Duration `json:"-"`
	IdempotencyKey string        `json:"-"`
}

// The confirm results.
const (
	ResultAccepted        = "ACCEPTED"
	ResultSuccess         = "SUCCESS"
	ResultFailure         = "FAILURE"
	ResultDuplicate       = "DUPLICATE"
	ResultAwaitingDeposit = "AWAITING_DEPOSIT"
)

// ConfirmResult is a confirm's answer: Result ACCEPTED (the outcome comes
// as a callback; Order holds only the id and status), SUCCESS, FAILURE,
// DUPLICATE (the same confirm again: nothing charged twice) or
// AWAITING_DEPOSIT (a virtual account: Order.VirtualAccount).
type ConfirmResult struct {
	Result string
	Order  *Order
}

// Confirm confirms an order's payment.
func (c *Client) Confirm(ctx context.Context, orderID string, p ConfirmParams) (*ConfirmResult, error) {
	h := http.Header{}
	if p.Wait > 0 {
		h.Set("Prefer", "wait="+strconv.Itoa(int(min(p.Wait, 30*time.Second)/time.Second)))
	}
	var out struct {
		Order
		Result string `json:"result"`
	}
	if _, err := c.do(ctx, call{method: "POST", path: "/v1/orders/" + url.PathEscape(orderID) + "/confirm", body: p,
		idemKey: p.IdempotencyKey, header: h, want: []int{200, 202}}, &out); err != nil {
		return nil, err
	}
	o := out.Order
	return &ConfirmResult{Result: out.Result, Order: &o}, nil
}

// CancelParams is POST /v1/orders/{orderId}/cancel. Amount 0 cancels all
// that remains.
type CancelParams struct {
	Reason string `json:"reason"`
	Amount int64  `json:"amount,omitempty"`
	// RefundReceiveAccount is required to refund a deposited virtual
	// account (REFUND_ACCOUNT_REQUIRED without it).
	RefundReceiveAccount *RefundAccount `json:"refundReceiveAccount,omitempty"`
	IdempotencyKey       string         `json:"-"`
}

// Cancel requests a cancel; it answers PENDING and settles asynchronously
// (payment.canceled / payment.partially_canceled / payment.cancel_failed).
func (c *Client) Cancel(ctx context.Context, orderID string, p CancelParams) (*Cancel, error) {
	var out Cancel
	_, err := c.do(ctx, call{method: "POST", path: "/v1/orders/" + url.PathEscape(orderID) + "/cancel", body: p,
		idemKey: p.IdempotencyKey, want: []int{202}}, &out)
	return orNil(&out, err)
}

// GetCancel reads one cancel.
func (c *Client) GetCancel(ctx context.Context, orderID, cancelID string) (*Cancel, error) {
	var out Cancel
	_, err := c.do(ctx, call{method: "GET", path: "/v1/orders/" + url.PathEscape(orderID) + "/cancels/" + url.PathEscape(cancelID), want: []int{200}}, &out)
	return orNil(&out, err)
}

// ListCallbacks lists the callbacks of one order (orderID "" for all the
// merchant's recent ones) with their delivery attempts.
func (c *Client) ListCallbacks(ctx context.Context, orderID string) ([]Callback, error) {
	path := "/v1/callbacks"
	if orderID != "" {
		path += "?orderId=" + url.QueryEscape(orderID)
	}
	var out struct {
		Callbacks []Callback `json:"callbacks"`
	}
	_, err := c.do(ctx, call{method: "GET", path: path, want: []int{200}}, &out)
	return out.Callbacks, err
}

// Redeliver sends a callback again (a DEAD one gets a fresh schedule).
func (c *Client) Redeliver(ctx context.Context, callbackID string) (*Callback, error) {
	var out Callback
	_, err := c.do(ctx, call{method: "POST", path: "/v1/callbacks/" + url.PathEscape(callbackID) + "/redeliver", want: []int{202}}, &out)
	return orNil(&out, err)
}

func orNil[T any](v *T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}
