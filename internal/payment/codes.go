package payment

import "net/http"

// Error codes: stable strings merchants and operators can branch on. Every
// code payrail answers with is here and in AllCodes; the HTTP layer maps
// each to one status in one table (internal/httpapi), an unknown code is a
// logged 500, and a test walks AllCodes against that table and
// api/openapi.yaml.
const (
	CodeInvalidRequest        = "INVALID_REQUEST"
	CodeBodyTooLarge          = "BODY_TOO_LARGE"
	CodeUnsupportedMediaType  = "UNSUPPORTED_MEDIA_TYPE"
	CodeNotFound              = "NOT_FOUND"
	CodeMethodNotAllowed      = "METHOD_NOT_ALLOWED"
	CodeOrderNotFound         = "ORDER_NOT_FOUND"
	CodeMerchantNotFound      = "MERCHANT_NOT_FOUND"
	CodeSecretNotFound        = "SECRET_NOT_FOUND"
	CodePaymentNotFound       = "PAYMENT_NOT_FOUND"
	CodeCancelNotFound        = "CANCEL_NOT_FOUND"
	CodeCallbackNotFound      = "CALLBACK_NOT_FOUND"
	CodeOperatorNotFound      = "OPERATOR_NOT_FOUND"
	CodeOperatorExists        = "OPERATOR_ALREADY_EXISTS"
	CodeOrderAlreadyExists    = "ORDER_ALREADY_EXISTS"
	CodeAmountMismatch        = "AMOUNT_MISMATCH"
	CodeInvalidPaymentToken   = "INVALID_PAYMENT_TOKEN"
	CodeOrderNotConfirmable   = "ORDER_NOT_CONFIRMABLE"
	CodePaymentKeyConflict    = "PAYMENT_KEY_CONFLICT"
	CodeCancelAmountExceeded  = "CANCEL_AMOUNT_EXCEEDED"
	CodeOrderNotCancelable    = "ORDER_NOT_CANCELABLE"
	CodeRefundAccountRequired = "REFUND_ACCOUNT_REQUIRED"
	CodeInvalidDepositSecret  = "INVALID_DEPOSIT_SECRET"
	CodeIdempotencyKeyReused  = "IDEMPOTENCY_KEY_REUSED"
	CodeIdempotencyKeyInUse   = "IDEMPOTENCY_KEY_IN_USE"
	CodeIdempotencyKeyMissing = "IDEMPOTENCY_KEY_REQUIRED"
	CodeIllegalTransition     = "ILLEGAL_TRANSITION"
	CodeVersionConflict       = "VERSION_CONFLICT"
	CodeUnauthorized          = "UNAUTHORIZED"
	CodeForbidden             = "FORBIDDEN"
	CodeUnavailable           = "SERVICE_UNAVAILABLE"
	CodeLastSecret            = "LAST_ACTIVE_SECRET"
	CodeTooManySecrets        = "TOO_MANY_ACTIVE_SECRETS"
	CodeInvalidCallbackURL    = "INVALID_CALLBACK_URL"
	CodeRateLimited           = "RATE_LIMITED"
	CodeOverloaded            = "OVERLOADED"
	CodeClientClosedRequest   = "CLIENT_CLOSED_REQUEST"
	CodeInternal              = "INTERNAL"

	// Request authentication (internal/auth): a merchant learns only
	// which rule its request broke.
	CodeMissingAuth       = "MISSING_AUTH"       // a header is absent, repeated or malformed
	CodeUnknownClient     = "UNKNOWN_CLIENT"     //
	CodeStaleTimestamp    = "STALE_TIMESTAMP"    // more than the allowed skew from server time
	CodeReplayedNonce     = "REPLAYED_NONCE"     // nonce already used by this client
	CodeInvalidSignature  = "INVALID_SIGNATURE"  // also a PG webhook's bad signature
	CodeMerchantSuspended = "MERCHANT_SUSPENDED" // only ever after a valid signature
	CodeAuthUnavailable   = "AUTH_UNAVAILABLE"   // a store did not answer; fail closed
)

// AllCodes is every error code, in the order the docs list them.
var AllCodes = []string{
	CodeInvalidRequest, CodeBodyTooLarge, CodeUnsupportedMediaType, CodeNotFound, CodeMethodNotAllowed,
	CodeOrderNotFound, CodeMerchantNotFound, CodeSecretNotFound, CodePaymentNotFound, CodeCancelNotFound,
	CodeCallbackNotFound, CodeOperatorNotFound, CodeOperatorExists, CodeOrderAlreadyExists, CodeAmountMismatch,
	CodeInvalidPaymentToken, CodeOrderNotConfirmable, CodePaymentKeyConflict, CodeCancelAmountExceeded,
	CodeOrderNotCancelable, CodeRefundAccountRequired, CodeInvalidDepositSecret, CodeIdempotencyKeyReused, CodeIdempotencyKeyInUse, CodeIdempotencyKeyMissing,
	CodeIllegalTransition, CodeVersionConflict,
	CodeMissingAuth, CodeUnknownClient, CodeStaleTimestamp, CodeReplayedNonce, CodeInvalidSignature,
	CodeMerchantSuspended, CodeAuthUnavailable,
	CodeUnauthorized, CodeForbidden, CodeUnavailable, CodeLastSecret, CodeTooManySecrets,
	CodeInvalidCallbackURL, CodeRateLimited, CodeOverloaded, CodeClientClosedRequest, CodeInternal,
}

// httpStatus is the one table from error code (AllCodes) to HTTP status,
// read by the API and the ops console alike.
var httpStatus = map[string]int{
	CodeInvalidRequest:        http.StatusBadRequest,
	CodeBodyTooLarge:          http.StatusRequestEntityTooLarge,
	CodeUnsupportedMediaType:  http.StatusUnsupportedMediaType,
	CodeNotFound:              http.StatusNotFound,
	CodeMethodNotAllowed:      http.StatusMethodNotAllowed,
	CodeOrderNotFound:         http.StatusNotFound,
	CodeMerchantNotFound:      http.StatusNotFound,
	CodeSecretNotFound:        http.StatusNotFound,
	CodePaymentNotFound:       http.StatusNotFound,
	CodeCancelNotFound:        http.StatusNotFound,
	CodeCallbackNotFound:      http.StatusNotFound,
	CodeOperatorNotFound:      http.StatusNotFound,
	CodeOperatorExists:        http.StatusConflict,
	CodeOrderAlreadyExists:    http.StatusConflict,
	CodeAmountMismatch:        http.StatusBadRequest,
	CodeInvalidPaymentToken:   http.StatusForbidden,
	CodeOrderNotConfirmable:   http.StatusConflict,
	CodePaymentKeyConflict:    http.StatusConflict,
	CodeCancelAmountExceeded:  http.StatusConflict,
	CodeOrderNotCancelable:    http.StatusConflict,
	CodeRefundAccountRequired: http.StatusBadRequest,
	CodeInvalidDepositSecret:  http.StatusUnauthorized,
	CodeIdempotencyKeyReused:  http.StatusUnprocessableEntity,
	CodeIdempotencyKeyInUse:   http.StatusConflict,
	CodeIdempotencyKeyMissing: http.StatusBadRequest,
	CodeIllegalTransition:     http.StatusConflict,
	CodeVersionConflict:       http.StatusConflict,
	CodeMissingAuth:           http.StatusUnauthorized,
	CodeUnknownClient:         http.StatusUnauthorized,
	CodeStaleTimestamp:        http.StatusUnauthorized,
	CodeReplayedNonce:         http.StatusUnauthorized,
	CodeInvalidSignature:      http.StatusUnauthorized,
	CodeMerchantSuspended:     http.StatusForbidden,
	CodeAuthUnavailable:       http.StatusServiceUnavailable,
	CodeUnauthorized:          http.StatusUnauthorized,
	CodeForbidden:             http.StatusForbidden,
	CodeUnavailable:           http.StatusServiceUnavailable,
	CodeLastSecret:            http.StatusConflict,
	CodeTooManySecrets:        http.StatusConflict,
	CodeInvalidCallbackURL:    http.StatusBadRequest,
	CodeRateLimited:           http.StatusTooManyRequests,
	CodeOverloaded:            http.StatusServiceUnavailable,
	CodeClientClosedRequest:   StatusClientClosedRequest,
	CodeInternal:              http.StatusInternalServerError,
}

// StatusClientClosedRequest is nginx's 499: the client went away before
// the answer; nobody reads it, but logs and metrics tell it from a 5xx.
const StatusClientClosedRequest = 499

// HTTPStatus is code's HTTP status; known is false for a code that is not
// in the table (a bug: callers log it and answer 500).
func HTTPStatus(code string) (status int, known bool) {
	status, known = httpStatus[code]
	return status, known
}
