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

// problemTitle is a problem document's title for status.
func problemTitle(status int) string {
	if status == payment.StatusClientClosedRequest {
		return "Client Closed Request"
	}
	return http.StatusText(status)
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
		if ae.Err != nil {
			logger(ctx).Warn("auth unavailable", "err", ae.Err)
		}
		// Auth failures say their code and nothing more.
		writeCode(ctx, w, ae.Code, "")
		return
	}
	if e, ok := payment.AsError(err); ok {
		writeCode(ctx, w, e.Code, e.Message)
		return
	}
	if errors.Is(err, context.Canceled) {
		// The client went away; nobody reads this answer.
		writeCode(ctx, w, payment.CodeClientClosedRequest, "")
		return
	}
	logger(ctx).Error("internal error", "err", err)
	writeCode(ctx, w, payment.CodeInternal, "internal error; quote the requestId to support")
}

// writeCode answers code with its status from the one table; a code the
// table lacks is a bug, logged and answered as a 500.
func writeCode(ctx context.Context, w http.ResponseWriter, code, detail string) {
	status, known := payment.HTTPStatus(code)
	if !known {
		logger(ctx).Error("error code missing from the status table", "code", code, "detail", detail)
		code, status, detail = payment.CodeInternal, http.StatusInternalServerError, "internal error; quote the requestId to support"
	}
	writeProblem(ctx, w, status, code, detail)
}

func writeProblem(ctx context.Context, w http.ResponseWriter, status int, code, detail string) {
	p := Problem{Type: "https://payrail.dev/problems/" + code, Title: problemTitle(status), Status: status, Code: code, Detail: detail, RequestID: requestID(ctx)}
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
