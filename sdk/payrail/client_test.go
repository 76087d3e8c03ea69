package payrail_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/sdk/payrail"
)

// The signing golden vectors, shared with internal/auth and the
// TypeScript SDK: computed once outside Go.
func TestSigningVectors(t *testing.T) {
	raw, err := os.ReadFile("../../internal/auth/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []struct {
			Name, Secret, Method, Target, Timestamp, Nonce, Body, Canonical, Signature string
		}
	}
	if err := json.Unmarshal(raw, &file); err != nil || len(file.Vectors) == 0 {
		t.Fatalf("vectors: %v", err)
	}
	for _, v := range file.Vectors {
		if got := payrail.CanonicalString(v.Method, v.Target, v.Timestamp, v.Nonce, []byte(v.Body)); got != v.Canonical {
			t.Errorf("%s: canonical %q, want %q", v.Name, got, v.Canonical)
		}
		if got := payrail.Sign(v.Secret, v.Method, v.Target, v.Timestamp, v.Nonce, []byte(v.Body)); got != v.Signature {
			t.Errorf("%s: signature %s, want %s", v.Name, got, v.Signature)
		}
	}
}

// A 503 then a 201: the retry carries the same Idempotency-Key (so it can
// never create a second order) and a fresh nonce; Retry-After is honoured.
func TestRetriesKeepTheIdempotencyKey(t *testing.T) {
	var mu sync.Mutex
	var keys, nonces []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		nonces = append(nonces, r.Header.Get(payrail.HeaderNonce))
		n := len(keys)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "0")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(503)
			io.WriteString(w, `{"code":"OVERLOADED","title":"Service Unavailable","detail":"shed"}`)
			return
		}
		w.WriteHeader(201)
		io.WriteString(w, `{"orderId":"ord_1","status":"CREATED","amount":1000,"paymentToken":"pt_1"}`)
	}))
	defer srv.Close()
	c := payrail.New(srv.URL, "ck_1", "cs_1", payrail.WithBackoff(time.Millisecond))
	o, err := c.CreateOrder(context.Background(), payrail.CreateOrderParams{Amount: 1000, OrderName: "x"})
	if err != nil || o.OrderID != "ord_1" || o.PaymentToken != "pt_1" {
		t.Fatalf("create: %+v %v", o, err)
	}
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] || nonces[0] == nonces[1] {
		t.Fatalf("attempts: keys %v nonces %v", keys, nonces)
	}
}

// A refusal is an *Error with payrail's code; 429 is retried, then given
// up with RATE_LIMITED; a deadline shorter than Retry-After stops at once.
func TestTypedErrorsAndGivingUp(t *testing.T) {
	var calls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/problem+json")
		if strings.HasSuffix(r.URL.Path, "/missing") {
			w.WriteHeader(404)
			io.WriteString(w, `{"code":"ORDER_NOT_FOUND","title":"Not Found","detail":"order not found"}`)
			return
		}
		w.Header().Set("Retry-After", strings.TrimPrefix(r.URL.Path, "/v1/orders/wait"))
		w.WriteHeader(429)
		io.WriteString(w, `{"code":"RATE_LIMITED","title":"Too Many Requests","detail":"slow down"}`)
	}))
	defer srv.Close()
	c := payrail.New(srv.URL, "ck_1", "cs_1", payrail.WithRetries(2), payrail.WithBackoff(time.Millisecond))
	_, err := c.GetOrder(context.Background(), "missing")
	var e *payrail.Error
	if !errors.As(err, &e) || e.Code != "ORDER_NOT_FOUND" || e.Status != 404 || calls != 1 {
		t.Fatalf("404: %v (calls %d)", err, calls)
	}
	calls = 0
	if _, err := c.GetOrder(context.Background(), "wait0"); payrail.ErrorCode(err) != "RATE_LIMITED" || calls != 3 {
		t.Fatalf("429: %v after %d calls, want RATE_LIMITED after 3", err, calls)
	}
	calls = 0
	// A Retry-After (30 s) beyond the deadline (10 s) answers at once: not
	// a sleep until the deadline, nor one of 30 s. The bounds are far from
	// both, so a loaded machine does not trip them.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.GetOrder(ctx, "wait30"); payrail.ErrorCode(err) != "RATE_LIMITED" || calls != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("Retry-After beyond the deadline: %v after %s and %d calls, want RATE_LIMITED at once after 1", err, time.Since(start), calls)
	}
}
