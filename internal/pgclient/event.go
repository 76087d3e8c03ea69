package pgclient

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/payrail/payrail/internal/payment"
)

// Status is a payment's status as the PG reports it; the type lives in
// package payment, beside the order states it is read against
// (payment.Reading).
type Status = payment.PGStatus

// The Payment statuses a TossPayments v1 PG reports. Anything else in an
// event is refused before it is stored.
const (
	StatusReady             = payment.PGReady
	StatusInProgress        = payment.PGInProgress
	StatusWaitingForDeposit = payment.PGWaitingForDeposit
	StatusDone              = payment.PGDone
	StatusCanceled          = payment.PGCanceled
	StatusPartialCanceled   = payment.PGPartialCanceled
	StatusAborted           = payment.PGAborted
	StatusExpired           = payment.PGExpired
)

// EventPaymentStatusChanged is the webhook type whose data is a Payment.
const EventPaymentStatusChanged = "PAYMENT_STATUS_CHANGED"

// MaxPaymentKey is the longest paymentKey Toss issues.
const MaxPaymentKey = 200

var (
	paymentKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)
	orderIDPattern    = regexp.MustCompile(`^[A-Za-z0-9_-]{6,64}$`)
)

// ValidPaymentKey reports whether s fits the PG's paymentKey alphabet and
// length (at most 200 of [A-Za-z0-9_-]).
func ValidPaymentKey(s string) bool { return paymentKeyPattern.MatchString(s) }

// ErrInvalidEvent is returned by CheckEvent for a payment event whose fields
// a real PG would never send.
var ErrInvalidEvent = errors.New("not a well-formed payment event")

// CheckEvent validates the fields of a PAYMENT_STATUS_CHANGED event's
// payment that payrail stores or acts on: the paymentKey's alphabet and
// length, the orderId's format, the status from the fixed list and an amount
// in range. The PG's webhooks are unsigned, so whatever passes here is still
// only a hint until a lookup agrees; this check keeps junk out of storage.
func CheckEvent(p Payment) error {
	switch {
	case !ValidPaymentKey(p.PaymentKey):
		return fmt.Errorf("%w: paymentKey must be 1-%d of [A-Za-z0-9_-]", ErrInvalidEvent, MaxPaymentKey)
	case !orderIDPattern.MatchString(p.OrderID):
		return fmt.Errorf("%w: orderId must be 6-64 of [A-Za-z0-9_-]", ErrInvalidEvent)
	case !p.Status.Known():
		return fmt.Errorf("%w: status %.40q is not a PG payment status", ErrInvalidEvent, p.Status)
	case p.TotalAmount < 0 || p.BalanceAmount < 0 || p.TotalAmount > 1_000_000_000_000:
		return fmt.Errorf("%w: amount out of range", ErrInvalidEvent)
	}
	return nil
}
