package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/payment"
)

// writeError answers every error from the one table: domain and auth codes
// with their status, a code the table lacks as a logged 500 (never the old
// silent 400), anything else as a logged 500 that leaks nothing.
func TestWriteErrorUsesTheOneTable(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
		logged string
	}{
		{payment.Errorf(payment.CodeOrderNotFound, "x"), 404, payment.CodeOrderNotFound, ""},
		{payment.Errorf(payment.CodeOperatorExists, "x"), 409, payment.CodeOperatorExists, ""},
		{&auth.Error{Code: auth.CodeMerchantSuspended}, 403, payment.CodeMerchantSuspended, ""},
		{&auth.Error{Code: auth.CodeAuthUnavailable, Err: errors.New("redis: secret-cause")}, 503, payment.CodeAuthUnavailable, "auth unavailable"},
		{payment.Errorf("SOMETHING_NEW", "x"), 500, payment.CodeInternal, "error code missing from the status table"},
		{fmt.Errorf("wrapped: %w", context.Canceled), 499, payment.CodeClientClosedRequest, ""},
		{errors.New("pq: secret-cause"), 500, payment.CodeInternal, "internal error"},
	}
	for _, c := range cases {
		var logs bytes.Buffer
		ctx := context.WithValue(context.Background(), keyLogger, slog.New(slog.NewTextHandler(&logs, nil)))
		rec := httptest.NewRecorder()
		writeError(ctx, rec, c.err)
		var p Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("%v: body %q: %v", c.err, rec.Body, err)
		}
		if rec.Code != c.status || p.Status != c.status || p.Code != c.code || p.Title == "" {
			t.Errorf("%v: %d %+v, want %d %s with a title", c.err, rec.Code, p, c.status, c.code)
		}
		if c.logged != "" && !strings.Contains(logs.String(), c.logged) {
			t.Errorf("%v: log %q lacks %q", c.err, logs.String(), c.logged)
		}
		if strings.Contains(rec.Body.String(), "secret-cause") {
			t.Errorf("%v: the answer leaks the cause: %s", c.err, rec.Body)
		}
	}
}
