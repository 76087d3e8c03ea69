package payment

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Order is the one representation of an order that merchants, callbacks and
// operators see.
type Order struct {
	OrderID         string     `json:"orderId"`
	MerchantID      string     `json:"-"`
	MerchantOrderID *string    `json:"merchantOrderId"`
	Status          Status     `json:"status"`
	Version         int        `json:"version"`
	Amount          int64      `json:"amount"`
	Currency        string     `json:"currency"`
	OrderName       string     `json:"orderName"`
	SuccessURL      *string    `json:"successUrl,omitempty"`
	FailURL         *string    `json:"failUrl,omitempty"`
	PaymentKey      *string    `json:"paymentKey"`
	Method          *string    `json:"method"`
	ApprovedAt      *time.Time `json:"approvedAt"`
	// VirtualAccount is the account a virtual-account payment is paid
	// into; nil for other methods.
	VirtualAccount      *VirtualAccount `json:"virtualAccount,omitempty"`
	Failure             *Failure        `json:"failure"`
	CanceledAmount      int64           `json:"canceledAmount"`
	PendingCancelAmount int64           `json:"pendingCancelAmount"`
	NeedsReconciliation bool            `json:"needsReconciliation"`
	ExpiresAt           time.Time       `json:"expiresAt"`
	CreatedAt           time.Time       `json:"createdAt"`
	UpdatedAt           time.Time       `json:"updatedAt"`
	History             []LogEntry      `json:"history,omitempty"`
	// HistoryNextCursor is set when History is only the first page; the
	// rest is read from GET /v1/orders/{orderId}/history?cursor=.
	HistoryNextCursor string `json:"historyNextCursor,omitempty"`
}

// Failure is why a payment failed, in the PG's words.
type Failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// LogEntry is one payment_log row: a transition, a PG call, a security event.
type LogEntry struct {
	At      time.Time      `json:"at"`
	Action  string         `json:"action"`
	From    *Status        `json:"from"`
	To      *Status        `json:"to"`
	Actor   string         `json:"actor"`
	Details map[string]any `json:"details"`
}

// ConfirmIdempotencyKey derives the PG idempotency key of a confirm from the
// order and the paymentKey, so every retry of one confirm, by any worker,
// sends the same key and the PG approves at most once (DESIGN rule 8).
func ConfirmIdempotencyKey(orderID, paymentKey string) string {
	sum := sha256.Sum256([]byte("confirm\x00" + orderID + "\x00" + paymentKey))
	return "pr-confirm-" + hex.EncodeToString(sum[:20])
}

// CancelIdempotencyKey derives the PG idempotency key of a cancel (or an
// automatic refund) from its own id.
func CancelIdempotencyKey(cancelID string) string {
	sum := sha256.Sum256([]byte("cancel\x00" + cancelID))
	return "pr-cancel-" + hex.EncodeToString(sum[:20])
}
