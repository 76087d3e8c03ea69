package pgclient_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/payrail/payrail/internal/pgclient"
)

// Toss's documented test secret key; its Basic header is the one in Toss's
// own examples, pinned in testdata.
const tossDocsKey = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R"

const (
	docPaymentKey = "5EnNZRJGvaBX7zk2yd8ydw26XvwXkLrx9POLqKQjmAw4b0e1"
	docOrderID    = "a4CWyWY5m89PNh7xJwhk1"
)

// recordedRequest is the shape of testdata/*.request.json.
type recordedRequest struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Body    any               `json:"body,omitempty"`
}

// pinnedHeaders are compared exactly: present with the golden value, or
// absent when the golden file does not list them.
var pinnedHeaders = []string{"Authorization", "Content-Type", "Idempotency-Key"}

// recorder is an httptest server that records what it receives and
// answers with a fixed body.
type recorder struct {
	mu   sync.Mutex
	got  []recordedRequest
	body []byte
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rr := recordedRequest{Method: r.Method, Path: r.URL.EscapedPath(), Headers: map[string]string{}}
	for _, h := range pinnedHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			rr.Headers[h] = strings.Join(v, ",")
		}
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &rr.Body); err != nil {
			rr.Body = "unparseable: " + string(b)
		}
	}
	rc.mu.Lock()
	rc.got = append(rc.got, rr)
	rc.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(rc.body)
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRequestShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		golden, response string
		call             func(context.Context, *pgclient.Client) pgclient.Result
	}{
		{"confirm.request.json", "payment_done.response.json", func(ctx context.Context, c *pgclient.Client) pgclient.Result {
			return c.Confirm(ctx, "confirm:"+docOrderID+":"+docPaymentKey, docPaymentKey, docOrderID, 15000)
		}},
		{"cancel_partial.request.json", "payment_partial_canceled.response.json", func(ctx context.Context, c *pgclient.Client) pgclient.Result {
			return c.Cancel(ctx, "cancel:0f1e2d3c-partial", docPaymentKey, "고객 변심", 5000, nil)
		}},
		{"cancel_full.request.json", "payment_partial_canceled.response.json", func(ctx context.Context, c *pgclient.Client) pgclient.Result {
			return c.Cancel(ctx, "cancel:0f1e2d3c-full", docPaymentKey, "late approval of an expired order", 0, nil)
		}},
		{"get_payment.request.json", "payment_done.response.json", func(ctx context.Context, c *pgclient.Client) pgclient.Result {
			return c.GetPayment(ctx, docPaymentKey)
		}},
		{"get_by_order.request.json", "payment_done.response.json", func(ctx context.Context, c *pgclient.Client) pgclient.Result {
			return c.GetPaymentByOrderID(ctx, docOrderID)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{body: readGolden(t, tt.response)}
			srv := httptest.NewServer(rec)
			t.Cleanup(srv.Close)
			// A trailing slash on the base URL must not double the slash.
			c := pgclient.New(srv.URL+"/", tossDocsKey, srv.Client())

			res := tt.call(ctxT(t), c)
			if res.Outcome != pgclient.Approved {
				t.Fatalf("outcome %s %s %v", res.Outcome, res.Code, res.Err)
			}
			var want recordedRequest
			if err := json.Unmarshal(readGolden(t, tt.golden), &want); err != nil {
				t.Fatal(err)
			}
			if len(rec.got) != 1 {
				t.Fatalf("%d requests, want 1", len(rec.got))
			}
			if diff := cmp.Diff(want, rec.got[0]); diff != "" {
				t.Errorf("request differs from %s (-want +got):\n%s", tt.golden, diff)
			}
		})
	}
}

func TestDecodesTossPayment(t *testing.T) {
	t.Parallel()
	rec := &recorder{body: readGolden(t, "payment_partial_canceled.response.json")}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	res := pgclient.New(srv.URL, tossDocsKey, nil).GetPayment(ctxT(t), docPaymentKey)
	want := &pgclient.Payment{
		PaymentKey: docPaymentKey, OrderID: docOrderID, OrderName: "토스 티셔츠 외 2건",
		Status: "PARTIAL_CANCELED", Method: "카드", TotalAmount: 15000, BalanceAmount: 10000,
		RequestedAt: "2024-02-13T12:17:57+09:00", ApprovedAt: "2024-02-13T12:18:14+09:00",
		Cancels: []pgclient.Cancel{{
			CancelAmount: 5000, CancelReason: "고객 변심", CanceledAt: "2024-02-13T12:20:23+09:00",
			TransactionKey: "090A796806E726BBB929F4A2CA7DB9A7", RefundableAmount: 10000,
		}},
	}
	if diff := cmp.Diff(want, res.Payment); diff != "" {
		t.Errorf("payment (-want +got):\n%s", diff)
	}
}

// TestClassification pins how answers the contract tests cannot provoke
// through mockpg are classified.
func TestClassification(t *testing.T) {
	t.Parallel()
	done := string(readGolden(t, "payment_done.response.json"))
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    pgclient.Outcome
		code    string
	}{
		{"2xx payment", answer(200, done), pgclient.Approved, ""},
		{"2xx garbled", answer(200, `{"paymentKey":`), pgclient.Unknown, ""},
		{"2xx without payment", answer(200, `{}`), pgclient.Unknown, ""},
		{"2xx html", answer(200, `<html>ok</html>`), pgclient.Unknown, ""},
		{"2xx over 1 MiB", answer(200, `{"paymentKey":"x","orderName":"`+strings.Repeat("a", 1<<20)+`"}`), pgclient.Unknown, ""},
		{"2xx truncated", truncated, pgclient.Unknown, ""},
		{"provider error", answer(400, `{"code":"PROVIDER_ERROR","message":"일시적인 오류"}`), pgclient.Retryable, "PROVIDER_ERROR"},
		// payrail's own credentials or request: never the buyer's decline (review item 2).
		{"invalid request", answer(400, `{"code":"INVALID_REQUEST","message":"bad"}`), pgclient.Misconfigured, "INVALID_REQUEST"},
		{"unauthorized key", answer(401, `{"code":"UNAUTHORIZED_KEY","message":"no"}`), pgclient.Misconfigured, "UNAUTHORIZED_KEY"},
		{"invalid api key", answer(400, `{"code":"INVALID_API_KEY","message":"no"}`), pgclient.Misconfigured, "INVALID_API_KEY"},
		{"forbidden", answer(403, `{"code":"FORBIDDEN_REQUEST","message":"no"}`), pgclient.Misconfigured, "FORBIDDEN_REQUEST"},
		{"401 with any code", answer(401, `{"code":"SOMETHING_NEW","message":"no"}`), pgclient.Misconfigured, "SOMETHING_NEW"},
		{"card rejected (403)", answer(403, `{"code":"REJECT_CARD_PAYMENT","message":"한도초과"}`), pgclient.Declined, "REJECT_CARD_PAYMENT"},
		{"insufficient funds", answer(400, `{"code":"NOT_ENOUGH_BALANCE","message":"잔액 부족"}`), pgclient.Declined, "NOT_ENOUGH_BALANCE"},
		{"session gone", answer(404, `{"code":"NOT_FOUND_PAYMENT_SESSION","message":"gone"}`), pgclient.Declined, "NOT_FOUND_PAYMENT_SESSION"},
		{"4xx without code", answer(400, `<html>bad gateway config</html>`), pgclient.Unknown, ""},
		{"409 in flight", answer(409, `{"code":"IDEMPOTENT_REQUEST_PROCESSING","message":"wait"}`), pgclient.Unknown, "IDEMPOTENT_REQUEST_PROCESSING"},
		{"429", answer(429, `{"code":"TOO_MANY_REQUESTS","message":"slow down"}`), pgclient.Retryable, "TOO_MANY_REQUESTS"},
		// Any 5xx after the request went out may have been applied (review item 5).
		{"500", answer(500, `{"code":"FAILED_INTERNAL_SYSTEM_PROCESSING","message":"x"}`), pgclient.Unknown, "FAILED_INTERNAL_SYSTEM_PROCESSING"},
		{"502 html", answer(502, `<html>bad gateway</html>`), pgclient.Unknown, ""},
		{"504 proxy timeout", answer(504, `<html>gateway timeout</html>`), pgclient.Unknown, ""},
		{"503 with code", answer(503, `{"code":"FAILED_INTERNAL_SYSTEM_PROCESSING","message":"x"}`), pgclient.Unknown, "FAILED_INTERNAL_SYSTEM_PROCESSING"},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusSeeOther)
		}, pgclient.Unknown, ""},
		{"reset after request", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}, pgclient.Unknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			res := pgclient.New(srv.URL, tossDocsKey, nil).Confirm(ctxT(t), "k", docPaymentKey, docOrderID, 15000)
			if res.Outcome != tt.want || res.Code != tt.code {
				t.Errorf("got %s code=%q err=%v, want %s code=%q", res.Outcome, res.Code, res.Err, tt.want, tt.code)
			}
			if res.Outcome != pgclient.Approved && res.Outcome != pgclient.Declined && res.Outcome != pgclient.Retryable && res.Err == nil && res.Code == "" {
				t.Errorf("an Unknown without Code must carry Err")
			}
		})
	}
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// truncated promises more body than it sends, then hangs up.
func truncated(w http.ResponseWriter, r *http.Request) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"paymentKey\":\"5En")
	_ = buf.Flush()
}

func TestConfirmAnsweredForAnotherOrderIsUnknown(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(answer(200, string(readGolden(t, "payment_done.response.json"))))
	t.Cleanup(srv.Close)
	// A reused idempotency key makes Toss replay another payment's approval.
	res := pgclient.New(srv.URL, tossDocsKey, nil).Confirm(ctxT(t), "k", docPaymentKey, "another_order", 15000)
	if res.Outcome != pgclient.Unknown || res.Err == nil {
		t.Fatalf("got %s %v, want Unknown with an error", res.Outcome, res.Err)
	}
}

func TestRefusesBeforeSending(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	c := pgclient.New(srv.URL, tossDocsKey, nil)
	for name, res := range map[string]pgclient.Result{
		"confirm without key":    c.Confirm(ctxT(t), "", docPaymentKey, docOrderID, 15000),
		"cancel without key":     c.Cancel(ctxT(t), "", docPaymentKey, "why", 0, nil),
		"cancel without reason":  c.Cancel(ctxT(t), "k", docPaymentKey, "", 0, nil),
		"cancel negative amount": c.Cancel(ctxT(t), "k", docPaymentKey, "why", -1, nil),
		"lookup without key":     c.GetPayment(ctxT(t), ""),
		"lookup without orderId": c.GetPaymentByOrderID(ctxT(t), ""),
	} {
		if res.Outcome != pgclient.Misconfigured || res.Code != "INVALID_REQUEST" {
			t.Errorf("%s: %s %q", name, res.Outcome, res.Code)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

func TestOutcomeString(t *testing.T) {
	t.Parallel()
	for o, want := range map[pgclient.Outcome]string{
		pgclient.Approved: "approved", pgclient.Declined: "declined",
		pgclient.Retryable: "retryable", pgclient.Unknown: "unknown", pgclient.Misconfigured: "misconfigured", 0: "Outcome(0)",
	} {
		if got := o.String(); got != want {
			t.Errorf("%d: %q, want %q", int(o), got, want)
		}
	}
}
