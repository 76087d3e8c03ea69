package httpapi_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

func TestIdempotencyConcurrentCreates(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	body := []byte(`{"merchantOrderId":"concurrent-0001","amount":15000,"orderName":"fifty at once"}`)

	const n = 50
	answers := make([]systest.Response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i] = m.Do("POST", "/v1/orders", body, "Idempotency-Key", "same-key-for-all")
		}()
	}
	close(start)
	wg.Wait()

	if got := sys.Count(`SELECT count(*) FROM orders`); got != 1 {
		t.Fatalf("orders = %d, want exactly 1", got)
	}
	first := answers[0].JSON()
	fresh := 0
	for i, r := range answers {
		if r.Status != 201 {
			t.Fatalf("answer %d: %d %s", i, r.Status, r.Body)
		}
		if diff := cmp.Diff(first, r.JSON()); diff != "" {
			t.Errorf("answer %d differs from answer 0 (-0 +%d):\n%s", i, i, diff)
		}
		if r.Header.Get("Idempotent-Replayed") != "true" {
			fresh++
		}
	}
	if first["orderId"] == nil || first["paymentToken"] == nil || first["status"] != "CREATED" {
		t.Fatalf("answer: %v", first)
	}
	if fresh != 1 {
		t.Errorf("%d answers were not replays, want 1", fresh)
	}
}

func TestIdempotencyKeyReusedWithAnotherBody(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	r1 := m.Do("POST", "/v1/orders", orderBody("first"), "Idempotency-Key", "k-reuse")
	if r1.Status != 201 {
		t.Fatalf("first: %d %s", r1.Status, r1.Body)
	}
	wantProblem(t, "same key, other body", m.Do("POST", "/v1/orders", orderBody("second"), "Idempotency-Key", "k-reuse"), 422, "IDEMPOTENCY_KEY_REUSED")
	// The same body again is the stored answer, even byte for byte.
	r3 := m.Do("POST", "/v1/orders", orderBody("first"), "Idempotency-Key", "k-reuse")
	if r3.Status != 201 || r3.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(r3.Body, r1.Body) {
		t.Fatalf("replay: %d %s\nwant %s", r3.Status, r3.Body, r1.Body)
	}
	if r3.Header.Get("Location") != r1.Header.Get("Location") || r1.Header.Get("Location") == "" {
		t.Errorf("Location %q on replay, %q first", r3.Header.Get("Location"), r1.Header.Get("Location"))
	}
	if n := sys.Count(`SELECT count(*) FROM orders`); n != 1 {
		t.Fatalf("orders = %d, want 1", n)
	}
}

func TestIdempotencyKeyScopedToPathAndMerchant(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m, other := sys.NewMerchant(""), sys.NewMerchant("")
	const key = "shared-key-1"
	r := m.Do("POST", "/v1/orders", orderBody("scoped"), "Idempotency-Key", key)
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var o systest.Order
	testenv.Must(t, json.Unmarshal(r.Body, &o))
	// Another path: independent, so the confirm runs.
	c := m.Confirm(o, sys.Session(o), "Idempotency-Key", key)
	if c.Status != 202 || c.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("confirm with the same key: %d %s", c.Status, c.Body)
	}
	// Another merchant, same path, same key, same body: independent too.
	r2 := other.Do("POST", "/v1/orders", orderBody("scoped"), "Idempotency-Key", key)
	if r2.Status != 201 || r2.Header.Get("Idempotent-Replayed") != "" || r2.JSON()["orderId"] == o.OrderID {
		t.Fatalf("other merchant, same key: %d %s", r2.Status, r2.Body)
	}
	// Its own scope remembers its own body.
	c2 := m.Confirm(o, "pk_another_key", "Idempotency-Key", key)
	wantProblem(t, "confirm, same key, other body", c2, 422, "IDEMPOTENCY_KEY_REUSED")
	if n := sys.Count(`SELECT count(*) FROM orders`); n != 2 {
		t.Fatalf("orders = %d, want 2", n)
	}
}

// insertInFlight plants a key as a crashed (lease past) or a live (lease
// ahead) request would leave it.
func insertInFlight(t *testing.T, sys *systest.System, m *systest.Merchant, key string, body []byte, lease time.Duration) {
	t.Helper()
	h := sha256.Sum256(body)
	_, err := sys.DB.DB.Exec(`INSERT INTO idempotency_keys (merchant_id, method, path, idem_key, request_hash, state, owner_token, lease_until, expires_at)
VALUES ($1, 'POST', '/v1/orders', $2, $3, 'IN_FLIGHT', 'crashed-owner', now() + $4 * interval '1 millisecond', now() + interval '24 hours')`,
		m.MerchantID, key, h[:], lease.Milliseconds())
	testenv.Must(t, err)
}

func TestIdempotencyAbandonedKeyIsTakenOver(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	body := orderBody("after a crash")
	insertInFlight(t, sys, m, "abandoned", body, -time.Minute)
	start := time.Now()
	r := m.Do("POST", "/v1/orders", body, "Idempotency-Key", "abandoned")
	if r.Status != 201 || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("abandoned key: %d %s", r.Status, r.Body)
	}
	// Waiting would mean the idempotency wait (5 s) or more; a loaded
	// machine's slow request is well under it.
	if d := time.Since(start); d >= 5*time.Second {
		t.Errorf("taking over an expired lease took %s; it must not wait", d)
	}
	if n := sys.Count(`SELECT count(*) FROM orders`); n != 1 {
		t.Fatalf("orders = %d, want 1", n)
	}
	if n := sys.Count(`SELECT count(*) FROM idempotency_keys WHERE idem_key = 'abandoned' AND state = 'DONE' AND owner_token <> 'crashed-owner'`); n != 1 {
		t.Fatalf("the key is not DONE under a new owner")
	}
	r2 := m.Do("POST", "/v1/orders", body, "Idempotency-Key", "abandoned")
	if r2.Status != 201 || r2.JSON()["orderId"] != r.JSON()["orderId"] {
		t.Fatalf("replay after take-over: %d %s", r2.Status, r2.Body)
	}
}

// TestIdempotencyKeyInUse waits out store.IdemWait (5 s) once: the only slow
// test here, and parallel with the rest.
func TestIdempotencyKeyInUse(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	body := orderBody("in flight")
	insertInFlight(t, sys, m, "live", body, time.Minute)
	wantProblem(t, "key in flight", m.Do("POST", "/v1/orders", body, "Idempotency-Key", "live"), 409, "IDEMPOTENCY_KEY_IN_USE")
	if n := sys.Count(`SELECT count(*) FROM orders`); n != 0 {
		t.Fatalf("orders = %d, want 0", n)
	}
	// Another body under a live key is still REUSED, at once.
	wantProblem(t, "other body, key in flight", m.Do("POST", "/v1/orders", orderBody("other"), "Idempotency-Key", "live"), 422, "IDEMPOTENCY_KEY_REUSED")
}

func TestIdempotencyStoredResponseEncrypted(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	r := m.Do("POST", "/v1/orders", orderBody("secret token"), "Idempotency-Key", "enc-1")
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	token, _ := r.JSON()["paymentToken"].(string)
	orderID, _ := r.JSON()["orderId"].(string)
	if token == "" {
		t.Fatalf("no paymentToken: %s", r.Body)
	}
	var row struct {
		Status int    `db:"response_status"`
		KeyID  string `db:"response_key_id"`
		Body   []byte `db:"response_body"`
	}
	testenv.Must(t, sys.DB.DB.Get(&row, `SELECT response_status, response_key_id, response_body FROM idempotency_keys WHERE idem_key = 'enc-1'`))
	if row.Status != 201 || row.KeyID == "" || len(row.Body) == 0 {
		t.Fatalf("stored row: %+v", row)
	}
	for _, plain := range []string{token, strings.TrimPrefix(token, "pt_"), orderID, "paymentToken"} {
		if bytes.Contains(row.Body, []byte(plain)) {
			t.Errorf("stored response contains %q in plaintext", plain)
		}
	}
	if n := sys.Count(`SELECT count(*) FROM orders WHERE encode(payment_token_hash, 'escape') LIKE '%' || $1 || '%'`, token); n != 0 {
		t.Errorf("the paymentToken is stored in plaintext on the order")
	}
}

func TestIdempotencyKeyLength(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	wantProblem(t, "256-char key", m.Do("POST", "/v1/orders", orderBody("long key"), "Idempotency-Key", strings.Repeat("k", 256)), 400, "INVALID_REQUEST")
	if n := sys.Count(`SELECT count(*) FROM orders`); n != 0 {
		t.Fatalf("orders = %d after a rejected key", n)
	}
	if r := m.Do("POST", "/v1/orders", orderBody("long key"), "Idempotency-Key", strings.Repeat("k", 255)); r.Status != 201 {
		t.Fatalf("255-char key: %d %s", r.Status, r.Body)
	}
}

// TestIdempotencyFailedEffectReleasesKey: an error answer is not stored, so
// the merchant may retry with the same key once the cause is gone.
func TestIdempotencyFailedEffectReleasesKey(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	o := m.CreateOrder(15000)
	key := sys.Session(o)
	bad := o
	bad.Amount = 1
	wantProblem(t, "amount mismatch", m.Confirm(bad, key, "Idempotency-Key", "retry-me"), 400, "AMOUNT_MISMATCH")
	if n := sys.Count(`SELECT count(*) FROM idempotency_keys WHERE idem_key = 'retry-me'`); n != 0 {
		t.Fatalf("a failed request left its key behind")
	}
	if r := m.Confirm(o, key, "Idempotency-Key", "retry-me"); r.Status != 202 {
		t.Fatalf("retry with the right amount: %d %s", r.Status, r.Body)
	}
}
