// Package payment owns payrail's domain: order statuses, the one transition
// table every component uses, money rules, the callback payload and the
// error vocabulary, with each code's HTTP status (the one table the API and
// the ops console answer from; codes.go). It imports nothing of payrail's
// and knows nothing of SQL or queues.
package payment

import (
	"fmt"
	"regexp"
	"time"
)

// Status is an order's lifecycle state.
type Status string

// The order statuses (DESIGN.md "States").
const (
	Created    Status = "CREATED"
	Confirming Status = "CONFIRMING"
	// AwaitingDeposit: a virtual account was issued; the buyer has not
	// transferred the money yet (DESIGN.md "Virtual accounts").
	AwaitingDeposit   Status = "AWAITING_DEPOSIT"
	Paid              Status = "PAID"
	PartiallyCanceled Status = "PARTIALLY_CANCELED"
	Canceled          Status = "CANCELED"
	Failed            Status = "FAILED"
	Expired           Status = "EXPIRED"
)

// AllStatuses lists every status, in lifecycle order.
var AllStatuses = []Status{Created, Confirming, AwaitingDeposit, Paid, PartiallyCanceled, Canceled, Failed, Expired}

// transitions is the single transition table. A self-loop is listed only where
// the state legitimately repeats (another partial cancel).
var transitions = map[Status][]Status{
	Created:           {Confirming, Expired},
	Confirming:        {Paid, Failed, Canceled, AwaitingDeposit},
	AwaitingDeposit:   {Paid, Expired, Canceled},
	Paid:              {PartiallyCanceled, Canceled},
	PartiallyCanceled: {PartiallyCanceled, Canceled},
	Canceled:          nil,
	Failed:            nil,
	Expired:           nil,
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// Terminal reports whether nothing may ever move an order out of s.
func (s Status) Terminal() bool { return s == Canceled || s == Failed || s == Expired }

// Settled reports whether a confirm has reached its answer (paid, failed,
// a virtual account issued, or anything after): what `Prefer: wait` waits
// for.
func (s Status) Settled() bool { return s != Created && s != Confirming }

// CanTransition reports whether the table allows from → to.
func CanTransition(from, to Status) bool {
	for _, t := range transitions[from] {
		if t == to {
			return true
		}
	}
	return false
}

// Sources returns every status from which to may be reached; a fenced UPDATE
// uses it as its `status = ANY($from)` guard.
func Sources(to Status) []Status {
	var out []Status
	for _, from := range AllStatuses {
		if CanTransition(from, to) {
			out = append(out, from)
		}
	}
	return out
}

// CheckTransition returns an ILLEGAL_TRANSITION error when the table refuses
// from → to.
func CheckTransition(from, to Status) error {
	if !CanTransition(from, to) {
		return Errorf(CodeIllegalTransition, "illegal transition %s → %s", from, to)
	}
	return nil
}

// Amount limits: integers in minor units (KRW has none).
const (
	MinAmount int64 = 1
	MaxAmount int64 = 1_000_000_000_000
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{6,64}$`)

// ValidID reports whether s fits the PG's orderId alphabet and length, which
// payrail also uses for merchantOrderId.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// CallbackEvent is a merchant callback type.
type CallbackEvent string

// The merchant callback events (DESIGN.md "Merchant callbacks out").
const (
	EventPaid                 CallbackEvent = "payment.paid"
	EventFailed               CallbackEvent = "payment.failed"
	EventCanceled             CallbackEvent = "payment.canceled"
	EventPartiallyCanceled    CallbackEvent = "payment.partially_canceled"
	EventCancelFailed         CallbackEvent = "payment.cancel_failed"
	EventExpired              CallbackEvent = "payment.expired"
	EventRefundedLateApproval CallbackEvent = "payment.refunded_late_approval"
	EventAwaitingDeposit      CallbackEvent = "payment.awaiting_deposit"
)

// CallbackPayload is the body of a merchant callback (docs/callbacks.md):
// the event, when it was written, and the order as it was then.
type CallbackPayload struct {
	Type      CallbackEvent `json:"type"`
	Timestamp time.Time     `json:"timestamp"`
	Data      CallbackData  `json:"data"`
}

// CallbackData is the order snapshot a callback carries.
type CallbackData struct {
	Order
	PreviousStatus Status `json:"previousStatus"`
}

// EventFor returns the callback a merchant must hear of when an order enters
// to, or "" when none is due.
func EventFor(to Status) CallbackEvent {
	switch to {
	case Paid:
		return EventPaid
	case Failed:
		return EventFailed
	case Canceled:
		return EventCanceled
	case PartiallyCanceled:
		return EventPartiallyCanceled
	case Expired:
		return EventExpired
	case AwaitingDeposit:
		return EventAwaitingDeposit
	}
	return ""
}

// Error is a domain error with a stable code. Its message is safe to show the
// caller; anything sensitive belongs in logs, not here.
type Error struct {
	Code    string
	Message string
	// Fields carries structured extras for the caller (e.g. the stored order
	// for a duplicate); nil for most errors.
	Fields map[string]any
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of a domain error, or CodeInternal.
func ErrorCode(err error) string {
	if e, ok := AsError(err); ok {
		return e.Code
	}
	return CodeInternal
}
