package pgclient

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

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

// EventDepositCallback is the virtual-account deposit notice. Unlike
// PAYMENT_STATUS_CHANGED its fields are at the top level and it carries the
// payment's secret instead of the payment (TOSS.md, 2nd-hand).
const EventDepositCallback = "DEPOSIT_CALLBACK"

// DepositEvent is a DEPOSIT_CALLBACK body: {createdAt, secret, status,
// transactionKey, orderId}. EventType is not part of Toss's body; mockpg
// and some integrations send it, and it is accepted when it names this
// event.
type DepositEvent struct {
	EventType      string `json:"eventType,omitempty"`
	CreatedAt      string `json:"createdAt"`
	Secret         string `json:"secret"`
	Status         Status `json:"status"`
	TransactionKey string `json:"transactionKey"`
	OrderID        string `json:"orderId"`
}

// IsDepositEvent tells a DEPOSIT_CALLBACK from a PAYMENT_STATUS_CHANGED
// by its shape: a top-level secret and orderId, no data.
func IsDepositEvent(hasData bool, ev DepositEvent) bool {
	return !hasData && ev.Secret != "" && (ev.EventType == "" || ev.EventType == EventDepositCallback)
}

// CheckDepositEvent validates what payrail reads of a DEPOSIT_CALLBACK: the
// orderId's format, one of the three statuses Toss sends in it, and a
// secret of sane length. The secret is compared, never trusted, and the
// status is believed only after a lookup agrees.
func CheckDepositEvent(ev DepositEvent) error {
	switch {
	case !orderIDPattern.MatchString(ev.OrderID):
		return fmt.Errorf("%w: orderId must be 6-64 of [A-Za-z0-9_-]", ErrInvalidEvent)
	case ev.Status != StatusDone && ev.Status != StatusWaitingForDeposit && ev.Status != StatusCanceled:
		return fmt.Errorf("%w: a deposit's status is DONE, WAITING_FOR_DEPOSIT or CANCELED, not %.40q", ErrInvalidEvent, ev.Status)
	case len(ev.Secret) < 8 || len(ev.Secret) > 200:
		return fmt.Errorf("%w: secret must be 8-200 characters", ErrInvalidEvent)
	case len(ev.TransactionKey) > 200:
		return fmt.Errorf("%w: transactionKey longer than 200", ErrInvalidEvent)
	}
	return nil
}

// SealedSecret is how a stored DEPOSIT_CALLBACK keeps its secret: the
// SHA-256 of it, so pg_events (shown to operators) never holds a secret
// that would let its reader forge deposits, yet the worker can still check
// it against the PG's record.
func SealedSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// SecretMatches compares an event's secret (clear, or as SealedSecret
// stored it) with the PG's own, in constant time.
func SecretMatches(eventSecret, pgSecret string) bool {
	if pgSecret == "" {
		return false
	}
	want := pgSecret
	if strings.HasPrefix(eventSecret, "sha256:") {
		want = SealedSecret(pgSecret)
	}
	return subtle.ConstantTimeCompare([]byte(eventSecret), []byte(want)) == 1
}
