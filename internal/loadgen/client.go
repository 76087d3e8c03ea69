package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/payrail/payrail/internal/auth"
)

// Target is the system under test.
type Target struct {
	APIURL     string
	AdminToken string
	MockPGURL  string
}

// Merchant is the merchant the load runs as.
type Merchant struct {
	MerchantID     string `json:"merchantId"`
	ClientID       string `json:"clientId"`
	ClientSecret   string `json:"clientSecret"`
	CallbackSecret string `json:"callbackSecret"`
}

// Client sends the merchant's and the buyer's requests.
type Client struct {
	T    Target
	M    Merchant
	HTTP *http.Client
	// Shed counts creates payrail refused with 503 OVERLOADED, Limited
	// those refused 429 (admission control): both retried.
	Shed, Limited atomic.Int64
}

// NewHTTPClient keeps enough idle connections for the highest concurrency.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        2048,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// APIError is a non-expected answer.
type APIError struct {
	Op     string
	Status int
	Body   string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %.200s", e.Op, e.Status, e.Body)
}

func (c *Client) do(ctx context.Context, op, method, url string, body any, sign bool, hdr map[string]string, want int, out any) (int, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return 0, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(raw))
	if err != nil {
		return 0, err
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if sign {
		if err := auth.SignRequest(req, c.M.ClientID, c.M.ClientSecret, time.Now()); err != nil {
			return 0, err
		}
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if want != 0 && resp.StatusCode != want {
		return resp.StatusCode, &APIError{Op: op, Status: resp.StatusCode, Body: string(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: decode: %w", op, err)
		}
	}
	return resp.StatusCode, nil
}

// CreateMerchant registers a merchant whose callbacks go to callbackURL,
// with the highest rate limit payrail allows: the bench measures the
// pipeline, not the merchant's limit.
func (c *Client) CreateMerchant(ctx context.Context, name, callbackURL string) (Merchant, error) {
	return c.createMerchant(ctx, name, callbackURL, 0)
}

// createMerchant registers a merchant with limit requests/s (burst twice),
// or the highest limit payrail allows for 0.
func (c *Client) createMerchant(ctx context.Context, name, callbackURL string, limit int) (Merchant, error) {
	var m Merchant
	admin := map[string]string{"Authorization": "Bearer " + c.T.AdminToken}
	_, err := c.do(ctx, "create merchant", "POST", c.T.APIURL+"/admin/merchants",
		map[string]any{"name": name, "callbackUrl": callbackURL}, false, admin, http.StatusCreated, &m)
	if err != nil {
		return m, err
	}
	rate := map[string]int{"perSecond": 100_000, "burst": 200_000}
	if limit > 0 {
		rate = map[string]int{"perSecond": limit, "burst": 2 * limit}
	}
	_, err = c.do(ctx, "set the merchant's rate limit", "PATCH", c.T.APIURL+"/admin/merchants/"+m.MerchantID,
		map[string]any{"rateLimit": rate}, false, admin, http.StatusOK, nil)
	return m, err
}

// createOrder creates an order and returns its id.
func (c *Client) createOrder(ctx context.Context, amount int64) (string, error) {
	var order struct {
		OrderID string `json:"orderId"`
	}
	_, err := c.do(ctx, "create order", "POST", c.T.APIURL+"/v1/orders",
		map[string]any{"amount": amount, "orderName": "loadgen"}, true, nil, http.StatusCreated, &order)
	return order.OrderID, err
}

// SetFaults replaces mockpg's fault config.
func (c *Client) SetFaults(ctx context.Context, faults map[string]any) error {
	_, err := c.do(ctx, "set mockpg faults", "POST", c.T.MockPGURL+"/sandbox/faults", faults, false, nil, 0, nil)
	return err
}

// Faults returns mockpg's fault config.
func (c *Client) Faults(ctx context.Context) (map[string]any, error) {
	var f map[string]any
	_, err := c.do(ctx, "get mockpg faults", "GET", c.T.MockPGURL+"/sandbox/faults", nil, false, nil, http.StatusOK, &f)
	return f, err
}

// Timing is what one payment took, wall-clock instants.
type Timing struct {
	OrderID string
	Start   time.Time // before POST /v1/orders
	// ConfirmSent and ConfirmDone bracket POST …/confirm.
	ConfirmSent, ConfirmDone time.Time
	// Waited means the confirm carried Prefer: wait and answered 200 SUCCESS,
	// so ConfirmDone is when the order was seen PAID.
	Waited bool
	// VirtualAccount: a 가상계좌 payment; its confirm answered
	// AWAITING_DEPOSIT and DepositSent is when the buyer's transfer was
	// made at mockpg (after the deposit delay); PAID follows the deposit.
	VirtualAccount bool
	DepositSent    time.Time
}

// PayVirtualAccount is Pay for a 가상계좌 payment: the confirm must answer
// AWAITING_DEPOSIT (200 with Prefer: wait, else 202), then after delay the
// buyer transfers the amount (POST mockpg /sandbox/deposits) and payrail
// learns of it from the PG's DEPOSIT_CALLBACK. It returns once the deposit
// is made; the payment.paid callback follows.
func (c *Client) PayVirtualAccount(ctx context.Context, amount int64, wait bool, delay time.Duration) (Timing, error) {
	t, key, err := c.pay(ctx, amount, wait, "가상계좌")
	if err != nil {
		return t, err
	}
	t.VirtualAccount = true
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return t, ctx.Err()
	}
	t.DepositSent = time.Now()
	_, err = c.do(ctx, "pg deposit", "POST", c.T.MockPGURL+"/sandbox/deposits", map[string]any{"paymentKey": key}, false, nil, http.StatusOK, nil)
	return t, err
}

// Pay runs one payment up to the confirm's answer: create the order, open a
// PG session, confirm. With wait it sends `Prefer: wait=10` and requires the
// 200 SUCCESS answer (PAID); without, it requires 202 ACCEPTED.
func (c *Client) Pay(ctx context.Context, amount int64, wait bool) (Timing, error) {
	t, _, err := c.pay(ctx, amount, wait, "")
	return t, err
}

// pay is Pay with the payment window's method ("" is 카드); it also
// returns the paymentKey.
func (c *Client) pay(ctx context.Context, amount int64, wait bool, method string) (Timing, string, error) {
	va := method == "가상계좌"
	t := Timing{Start: time.Now()}
	var order struct {
		OrderID      string `json:"orderId"`
		PaymentToken string `json:"paymentToken"`
	}
	for {
		status, err := c.do(ctx, "create order", "POST", c.T.APIURL+"/v1/orders",
			map[string]any{"amount": amount, "orderName": "loadgen"}, true, nil, http.StatusCreated, &order)
		if (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && ctx.Err() == nil {
			// Shed (OVERLOADED) or lowered by admission control
			// (RATE_LIMITED; the bench's merchants have no limit of their
			// own to hit): payrail asks for a pause; a merchant waits and
			// tries again.
			if status == http.StatusTooManyRequests {
				c.Limited.Add(1)
			} else {
				c.Shed.Add(1)
			}
			select {
			case <-ctx.Done():
				return t, "", ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			t.Start = time.Now()
			continue
		}
		if err != nil {
			return t, "", err
		}
		break
	}
	t.OrderID = order.OrderID
	var sess struct {
		PaymentKey string `json:"paymentKey"`
	}
	sessBody := map[string]any{"orderId": order.OrderID, "amount": amount}
	if method != "" {
		sessBody["method"] = method
	}
	if _, err := c.do(ctx, "pg session", "POST", c.T.MockPGURL+"/sandbox/sessions", sessBody, false, nil, http.StatusOK, &sess); err != nil {
		return t, "", err
	}
	var hdr map[string]string
	want := http.StatusAccepted
	if wait {
		hdr = map[string]string{"Prefer": "wait=10"}
		want = http.StatusOK
	}
	var res struct {
		Result string `json:"result"`
		Status string `json:"status"`
	}
	t.ConfirmSent = time.Now()
	_, err := c.do(ctx, "confirm", "POST", c.T.APIURL+"/v1/orders/"+order.OrderID+"/confirm",
		map[string]any{"paymentKey": sess.PaymentKey, "amount": amount, "paymentToken": order.PaymentToken}, true, hdr, want, &res)
	t.ConfirmDone = time.Now()
	if err != nil {
		return t, sess.PaymentKey, err
	}
	switch {
	case va && wait && (res.Result != "AWAITING_DEPOSIT" || res.Status != "AWAITING_DEPOSIT"):
		return t, sess.PaymentKey, fmt.Errorf("virtual account confirm with wait: result %s status %s", res.Result, res.Status)
	case !va && wait && (res.Result != "SUCCESS" || res.Status != "PAID"):
		return t, sess.PaymentKey, fmt.Errorf("confirm with wait: result %s status %s", res.Result, res.Status)
	}
	t.Waited = wait && !va
	return t, sess.PaymentKey, nil
}

// OrderStatus reads an order's status (GET /v1/orders/{id}).
func (c *Client) OrderStatus(ctx context.Context, orderID string) (string, error) {
	var o struct {
		Status string `json:"status"`
	}
	_, err := c.do(ctx, "get order", "GET", c.T.APIURL+"/v1/orders/"+orderID, nil, true, nil, http.StatusOK, &o)
	return o.Status, err
}
