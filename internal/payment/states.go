package payment

// The states of the rows around an order. Each type lists exactly what its
// table's CHECK constraint allows (migrations/), so a state is never a bare
// string literal.

// CancelStatus is a merchant cancel's state (table cancels).
type CancelStatus string

// The cancel states.
const (
	CancelPending   CancelStatus = "PENDING"
	CancelSucceeded CancelStatus = "SUCCEEDED"
	CancelFailed    CancelStatus = "FAILED"
)

// RefundStatus is an automatic refund's state (table refunds): the refund
// of a PG approval that arrived for an order that can no longer be paid.
type RefundStatus string

// The refund states.
const (
	RefundPending   RefundStatus = "PENDING"
	RefundSucceeded RefundStatus = "SUCCEEDED"
)

// CallbackStatus is a merchant callback's delivery state (table callbacks).
type CallbackStatus string

// The callback states.
const (
	CallbackPending   CallbackStatus = "PENDING"
	CallbackDelivered CallbackStatus = "DELIVERED"
	CallbackDead      CallbackStatus = "DEAD"
)

// PGEventState is what became of a stored PG webhook (table pg_events).
type PGEventState string

// The PG event states.
const (
	// EventReceived: stored, not yet looked at under the order's lock.
	EventReceived PGEventState = "RECEIVED"
	// EventApplied: the PG's record agreed and moved the order.
	EventApplied PGEventState = "APPLIED"
	// EventIgnored: nothing to do (already reflected, another paymentKey,
	// no such order).
	EventIgnored PGEventState = "IGNORED"
	// EventRejected: the PG's record contradicts the event (an operator
	// alert).
	EventRejected PGEventState = "REJECTED"
)

// ConfirmResult is what a merchant's confirm request did.
type ConfirmResult string

// The confirm results (DESIGN.md "HTTP API").
const (
	// ConfirmAccepted: the order moved to CONFIRMING (or already was, for
	// this paymentKey) and the worker confirms it with the PG.
	ConfirmAccepted ConfirmResult = "ACCEPTED"
	// ConfirmSuccess: the order is PAID by this confirm (a waited-for
	// answer, `Prefer: wait`).
	ConfirmSuccess ConfirmResult = "SUCCESS"
	// ConfirmFailure: the payment failed.
	ConfirmFailure ConfirmResult = "FAILURE"
	// ConfirmDuplicate: the order was already paid with this paymentKey.
	ConfirmDuplicate ConfirmResult = "DUPLICATE"
	// ConfirmAwaitingDeposit: the PG issued a virtual account; the payment
	// completes when the buyer's transfer arrives (a waited-for answer).
	ConfirmAwaitingDeposit ConfirmResult = "AWAITING_DEPOSIT"
)
