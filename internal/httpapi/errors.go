package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/payment"
)

// statusByCode is the one table from error code to HTTP status.
var statusByCode = map[string]int{
	payment.CodeInvalidRequest:        http.StatusBadRequest,
	payment.CodeBodyTooLarge:          http.StatusRequestEntityTooLarge,
	payment.CodeUnsupportedMediaType:  http.StatusUnsupportedMediaType,
	payment.CodeNotFound:              http.StatusNotFound,
	payment.CodeOrderNotFound:         http.StatusNotFound,
	payment.CodeMerchantNotFound:      http.StatusNotFound,
	payment.CodeSecretNotFound:        http.StatusNotFound,
	payment.CodePaymentNotFound:       http.StatusNotFound,
	payment.CodeCancelNotFound:        http.StatusNotFound,
	payment.CodeCallbackNotFound:      http.StatusNotFound,
	payment.CodeOrderAlreadyExists:    http.StatusConflict,
	payment.CodeAmountMismatch:        http.StatusBadRequest,
	payment.CodeInvalidPaymentToken:   http.StatusForbidden,
	payment.CodeOrderNotConfirmable:   http.StatusConflict,
	payment.CodePaymentKeyConflict:    http.StatusConflict,
	payment.CodeCancelAmountExceeded:  http.StatusConflict,
	payment.CodeOrderNotCancelable:    http.StatusConflict,
	payment.CodeIdempotencyKeyReused:  http.StatusUnprocessableEntity,
	payment.CodeIdempotencyKeyInUse:   http.StatusConflict,
	payment.CodeIdempotencyKeyMissing: http.StatusBadRequest,
	payment.CodeIllegalTransition:     http.StatusConflict,
	payment.CodeVersionConflict:       http.StatusConflict,
	payment.CodeUnauthorized:          http.StatusUnauthorized,
	payment.CodeForbidden:             http.StatusForbidden,
	payment.CodeUnavailable:           http.StatusServiceUnavailable,
	payment.CodeLastSecret:            http.StatusConflict,
	payment.CodeTooManySecrets:        http.StatusConflict,
	payment.CodeInvalidCallbackURL:    http.StatusBadRequest,
	payment.CodeInvalidSignature:      http.StatusUnauthorized,
	payment.CodeRateLimited:           http.StatusTooManyRequests,
	payment.CodeOverloaded:            http.StatusServiceUnavailable,
	"METHOD_NOT_ALLOWED":              http.StatusMethodNotAllowed,
}

// Problem is an RFC 9457 problem document with payrail's stable code.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`
	// RequestID lets a merchant quote the failing request to support.
	RequestID string `json:"requestId,omitempty"`
}

// writeError turns any error into a problem response. Domain and auth errors
// keep their code; anything else is logged and answered with a generic 500.
func writeError(ctx context.Context, w http.ResponseWriter, err error) {
	var ae *auth.Error
	if errors.As(err, &ae) {
		// Auth failures say their code and nothing more.
		writeProblem(ctx, w, ae.Status, ae.Code, "")
		return
	}
	if e, ok := payment.AsError(err); ok {
		status, known := statusByCode[e.Code]
		if !known {
			status = http.StatusBadRequest
		}
		writeProblem(ctx, w, status, e.Code, e.Message)
		return
	}
	if errors.Is(err, context.Canceled) {
		// The client went away; nobody reads this answer.
		writeProblem(ctx, w, 499, "CLIENT_CLOSED_REQUEST", "")
		return
	}
	logger(ctx).Error("internal error", "err", err)
	writeProblem(ctx, w, http.StatusInternalServerError, payment.CodeInternal, "internal error; quote the requestId to support")
}

func writeProblem(ctx context.Context, w http.ResponseWriter, status int, code, detail string) {
	p := Problem{Type: "https://payrail.dev/problems/" + code, Title: http.StatusText(status), Status: status, Code: code, Detail: detail, RequestID: requestID(ctx)}
	if p.Title == "" {
		p.Title = code
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b, _ := marshal(v)
	_, _ = w.Write(b)
}

// marshal is json.Marshal without HTML escaping: URLs in answers keep their
// "&" readable.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return buf.Bytes(), err
}

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyLogger
	keyMerchant
	keyBody
	keyRelease
)

func requestID(ctx context.Context) string {
	v, _ := ctx.Value(keyRequestID).(string)
	return v
}

func logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(keyLogger).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}
