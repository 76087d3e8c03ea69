package payrail

import (
	"encoding/json"
	"time"
)

// The order statuses (api/openapi.yaml Status).
const (
	StatusCreated           = "CREATED"
	StatusConfirming        = "CONFIRMING"
	StatusAwaitingDeposit   = "AWAITING_DEPOSIT"
	StatusPaid              = "PAID"
	StatusPartiallyCanceled = "PARTIALLY_CANCELED"
	StatusCanceled          = "CANCELED"
	StatusFailed            = "FAILED"
	StatusExpired           = "EXPIRED"
)

// Order is an order as payrail answers it.
type Order struct {
	OrderID             string          `json:"orderId"`
	MerchantOrderID     *string         `json:"merchantOrderId"`
	Status              string          `json:"status"`
	Version             int             `json:"version"`
	Amount              int64           `json:"amount"`
	Currency            string          `json:"currency"`
	OrderName           string          `json:"orderName"`
	SuccessURL          string          `json:"successUrl,omitempty"`
	FailURL             string          `json:"failUrl,omitempty"`
	PaymentKey          *string         `json:"paymentKey"`
	Method              *string         `json:"method"`
	ApprovedAt          *time.Time      `json:"approvedAt"`
	VirtualAccount      *VirtualAccount `json:"virtualAccount,omitempty"`
	Failure             *Failure        `json:"failure"`
	CanceledAmount      int64           `json:"canceledAmount"`
	PendingCancelAmount int64           `json:"pendingCancelAmount"`
	NeedsReconciliation bool            `json:"needsReconciliation"`
	ExpiresAt           time.Time       `json:"expiresAt"`
	CreatedAt           time.Time       `json:"createdAt"`
	UpdatedAt           time.Time       `json:"updatedAt"`
	History             []LogEntry      `json:"history,omitempty"`
	HistoryNextCursor   string          `json:"historyNextCursor,omitempty"`

	// Set by CreateOrder only: the one-time token the confirm must carry,
	// and the PG's payment window for the buyer.
	PaymentToken string `json:"paymentToken,omitempty"`
	CheckoutURL  string `json:"checkoutUrl,omitempty"`
}

// VirtualAccount is the account a 가상계좌 buyer transfers to.
type VirtualAccount struct {
	AccountNumber string    `json:"accountNumber"`
	BankCode      string    `json:"bankCode"`
	CustomerName  string    `json:"customerName"`
	DueDate       time.Time `json:"dueDate"`
}

// RefundAccount is where a deposited virtual account is refunded
// (Bank: TossPayments' two-digit code, e.g. "88").
type RefundAccount struct {
	Bank          string `json:"bank"`
	AccountNumber string `json:"accountNumber"`
	HolderName    string `json:"holderName"`
}

// Failure is why a payment failed, in the PG's words.
type Failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// LogEntry is one line of an order's history.
type LogEntry struct {
	At      time.Time      `json:"at"`
	Action  string         `json:"action"`
	From    *string        `json:"from"`
	To      *string        `json:"to"`
	Actor   string         `json:"actor"`
	Details map[string]any `json:"details"`
}

// Cancel is a cancel request and where it stands (PENDING, SUCCEEDED,
// FAILED).
type Cancel struct {
	CancelID             string         `json:"cancelId"`
	OrderID              string         `json:"orderId"`
	Amount               int64          `json:"amount"`
	Reason               string         `json:"reason"`
	Status               string         `json:"status"`
	FailureCode          *string        `json:"failureCode"`
	FailureMessage       *string        `json:"failureMessage"`
	RefundReceiveAccount map[string]any `json:"refundReceiveAccount,omitempty"`
	NeedsReconciliation  bool           `json:"needsReconciliation"`
	CreatedAt            time.Time      `json:"createdAt"`
	UpdatedAt            time.Time      `json:"updatedAt"`
}

// Callback is one callback payrail sent (or is sending) the merchant.
type Callback struct {
	CallbackID    string            `json:"callbackId"`
	OrderID       string            `json:"orderId"`
	Type          string            `json:"type"`
	Status        string            `json:"status"`
	Attempt       int               `json:"attempt"`
	NextAttemptAt *time.Time        `json:"nextAttemptAt"`
	DeliveredAt   *time.Time        `json:"deliveredAt"`
	LastError     *string           `json:"lastError"`
	CreatedAt     time.Time         `json:"createdAt"`
	Payload       json.RawMessage   `json:"payload"`
	Attempts      []CallbackAttempt `json:"attempts"`
}

// CallbackAttempt is one delivery attempt.
type CallbackAttempt struct {
	Attempt        int       `json:"attempt"`
	StartedAt      time.Time `json:"startedAt"`
	StatusCode     *int      `json:"statusCode"`
	LatencyMS      int       `json:"latencyMs"`
	Error          *string   `json:"error"`
	ResponsePrefix *string   `json:"responsePrefix"`
}

// Event is a callback's body: the event type, when it was written, and
// the order as it was then (with its previous status).
type Event struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      struct {
		Order
		PreviousStatus string `json:"previousStatus"`
	} `json:"data"`
}
