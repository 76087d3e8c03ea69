package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/systest"
)

// signed is one hand-built merchant request: every part of what is signed
// and of what is sent can be set apart, so a test can sign one thing and send
// another.
type signed struct {
	method   string
	target   string // what is signed
	sendTo   string // what is sent; target when empty
	body     []byte // what is signed
	sendBody []byte // what is sent; body when nil
	clientID string
	secret   string
	ts       string
	nonce    string
	drop     string // a header to leave out
}

var nonceSeq = make(chan int, 1)

func init() { nonceSeq <- 0 }

// freshNonce returns a nonce never used before in this process.
func freshNonce() string {
	n := <-nonceSeq
	nonceSeq <- n + 1
	return "n" + strconv.FormatInt(time.Now().UnixNano(), 36) + "x" + strconv.Itoa(n) + "abcdefghijklmnop"
}

func (s signed) headers() http.Header {
	if s.method == "" {
		s.method = "GET"
	}
	if s.ts == "" {
		s.ts = strconv.FormatInt(time.Now().Unix(), 10)
	}
	if s.nonce == "" {
		s.nonce = freshNonce()
	}
	h := http.Header{}
	h.Set(auth.HeaderClientID, s.clientID)
	h.Set(auth.HeaderTimestamp, s.ts)
	h.Set(auth.HeaderNonce, s.nonce)
	h.Set(auth.HeaderSignature, auth.Sign(s.secret, s.method, s.target, s.ts, s.nonce, s.body))
	if s.body != nil {
		h.Set("Content-Type", "application/json")
	}
	if s.drop != "" {
		h.Del(s.drop)
	}
	return h
}

// send sends s to sys as built, headers included, and returns the answer.
func (s signed) send(t *testing.T, sys *systest.System) systest.Response {
	t.Helper()
	if s.method == "" {
		s.method = "GET"
	}
	h := s.headers()
	to := s.sendTo
	if to == "" {
		to = s.target
	}
	b := s.sendBody
	if b == nil {
		b = s.body
	}
	return rawDo(t, sys, s.method, to, b, h)
}

// rawDo sends a request exactly as given, unsigned unless h carries a signature.
func rawDo(t *testing.T, sys *systest.System, method, path string, body []byte, h http.Header) systest.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, sys.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return systest.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// wantProblem fails t unless r is a problem+json answer with status and code.
func wantProblem(t *testing.T, what string, r systest.Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.Code() != code {
		t.Errorf("%s: got %d %q, want %d %s; body %s", what, r.Status, r.Code(), status, code, r.Body)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", what, ct)
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(r.Body, &p); err != nil || p.Status != status || p.Type == "" {
		t.Errorf("%s: not a problem document: %s", what, r.Body)
	}
}

// as returns a copy of m that signs with another client id or secret.
func as(m *systest.Merchant, clientID, secret string) *systest.Merchant {
	c := *m
	if clientID != "" {
		c.ClientID = clientID
	}
	if secret != "" {
		c.ClientSecret = secret
	}
	return &c
}

func orderBody(name string) []byte {
	return []byte(`{"amount":15000,"orderName":"` + name + `"}`)
}

func TestAuthFailures(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	base := signed{method: "POST", target: "/v1/orders", body: orderBody("auth"), clientID: m.ClientID, secret: m.ClientSecret}
	now := time.Now().Unix()

	tests := []struct {
		name   string
		req    func() signed
		status int
		code   string
	}{
		{"missing client id", func() signed { s := base; s.drop = auth.HeaderClientID; return s }, 401, auth.CodeMissingAuth},
		{"missing timestamp", func() signed { s := base; s.drop = auth.HeaderTimestamp; return s }, 401, auth.CodeMissingAuth},
		{"missing nonce", func() signed { s := base; s.drop = auth.HeaderNonce; return s }, 401, auth.CodeMissingAuth},
		{"missing signature", func() signed { s := base; s.drop = auth.HeaderSignature; return s }, 401, auth.CodeMissingAuth},
		{"short nonce", func() signed { s := base; s.nonce = "short"; return s }, 401, auth.CodeMissingAuth},
		{"timestamp not digits", func() signed { s := base; s.ts = "-5"; return s }, 401, auth.CodeMissingAuth},
		{"unknown client", func() signed { s := base; s.clientID = "ck_nosuchclient000000000000"; return s }, 401, auth.CodeUnknownClient},
		{"stale timestamp", func() signed { s := base; s.ts = strconv.FormatInt(now-301-60, 10); return s }, 401, auth.CodeStaleTimestamp},
		{"future timestamp", func() signed { s := base; s.ts = strconv.FormatInt(now+301+60, 10); return s }, 401, auth.CodeStaleTimestamp},
		{"huge timestamp", func() signed { s := base; s.ts = "99999999999999999999999"; return s }, 401, auth.CodeStaleTimestamp},
		{"wrong secret", func() signed { s := base; s.secret = "sk_not_the_secret"; return s }, 401, auth.CodeInvalidSignature},
		{"body changed after signing", func() signed { s := base; s.sendBody = orderBody("auth2"); return s }, 401, auth.CodeInvalidSignature},
	}
	for _, tc := range tests {
		r := tc.req().send(t, sys)
		wantProblem(t, tc.name, r, tc.status, tc.code)
	}

	// Query changed after signing.
	q := signed{method: "GET", target: "/v1/orders?limit=5", sendTo: "/v1/orders?limit=6", clientID: m.ClientID, secret: m.ClientSecret}
	wantProblem(t, "query changed after signing", q.send(t, sys), 401, auth.CodeInvalidSignature)
	// Path changed after signing.
	p := signed{method: "GET", target: "/v1/orders/ord_a", sendTo: "/v1/orders/ord_b", clientID: m.ClientID, secret: m.ClientSecret}
	wantProblem(t, "path changed after signing", p.send(t, sys), 401, auth.CodeInvalidSignature)

	if n := sys.Count(`SELECT count(*) FROM orders`); n != 0 {
		t.Fatalf("orders after rejected requests = %d, want 0", n)
	}
	// The same merchant signing correctly gets through.
	if r := base.send(t, sys); r.Status != 201 {
		t.Fatalf("correctly signed: %d %s", r.Status, r.Body)
	}
}

func TestAuthErrorsTellNothingMore(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	r := as(m, "", "sk_wrong").Do("GET", "/v1/orders", nil)
	wantProblem(t, "wrong secret", r, 401, auth.CodeInvalidSignature)
	var p map[string]any
	_ = json.Unmarshal(r.Body, &p)
	if d, ok := p["detail"]; ok && d != "" {
		t.Errorf("auth failure has a detail %q; it must say its code and nothing more", d)
	}
}

func TestAuthReplayedNonce(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	req := signed{method: "POST", target: "/v1/orders", body: orderBody("replay"), clientID: m.ClientID, secret: m.ClientSecret,
		ts: strconv.FormatInt(time.Now().Unix(), 10), nonce: freshNonce()}
	if r := req.send(t, sys); r.Status != 201 {
		t.Fatalf("first: %d %s", r.Status, r.Body)
	}
	wantProblem(t, "identical request again", req.send(t, sys), 401, auth.CodeReplayedNonce)
	if n := sys.Count(`SELECT count(*) FROM orders`); n != 1 {
		t.Fatalf("orders = %d, want 1: the replay must create nothing", n)
	}
}

func TestAuthFailedSignatureDoesNotBurnNonce(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	nonce := freshNonce()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	forged := signed{method: "GET", target: "/v1/orders", clientID: m.ClientID, secret: "sk_forger", ts: ts, nonce: nonce}
	wantProblem(t, "forged", forged.send(t, sys), 401, auth.CodeInvalidSignature)
	real := forged
	real.secret = m.ClientSecret
	if r := real.send(t, sys); r.Status != 200 {
		t.Fatalf("the merchant's own request with the nonce a forger tried: %d %s", r.Status, r.Body)
	}
	wantProblem(t, "now replayed", real.send(t, sys), 401, auth.CodeReplayedNonce)
}

func TestAuthSecretRotationAndRevocation(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	st, b := sys.Admin("POST", "/admin/merchants/"+m.MerchantID+"/secrets", map[string]string{"kind": "client"})
	if st != 201 {
		t.Fatalf("add secret: %d %s", st, b)
	}
	var sec struct {
		SecretID string `json:"secretId"`
		Secret   string `json:"secret"`
	}
	if err := json.Unmarshal(b, &sec); err != nil || sec.Secret == "" || sec.SecretID == "" {
		t.Fatalf("add secret answer: %s", b)
	}
	old, rotated := m, as(m, "", sec.Secret)

	// Overlap: both secrets work while both are active.
	for i, mm := range []*systest.Merchant{old, rotated, old, rotated} {
		if r := mm.Do("GET", "/v1/orders", nil); r.Status != 200 {
			t.Fatalf("during overlap, secret %d: %d %s", i%2, r.Status, r.Body)
		}
	}

	if st, b := sys.Admin("DELETE", "/admin/merchants/"+m.MerchantID+"/secrets/"+m.ClientSecretID, nil); st != 204 {
		t.Fatalf("revoke old secret: %d %s", st, b)
	}
	wantProblem(t, "revoked secret", old.Do("GET", "/v1/orders", nil), 401, auth.CodeInvalidSignature)
	if r := rotated.Do("POST", "/v1/orders", orderBody("rotated")); r.Status != 201 {
		t.Fatalf("new secret after revocation: %d %s", r.Status, r.Body)
	}
	// Revoking it twice is not found.
	if st, b := sys.Admin("DELETE", "/admin/merchants/"+m.MerchantID+"/secrets/"+m.ClientSecretID, nil); st != 404 {
		t.Fatalf("revoke again: %d %s", st, b)
	}
}

func TestAuthSuspendedMerchant(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m := sys.NewMerchant("")
	patch := func(status string) {
		t.Helper()
		if st, b := sys.Admin("PATCH", "/admin/merchants/"+m.MerchantID, map[string]string{"status": status}); st != 200 {
			t.Fatalf("PATCH status %s: %d %s", status, st, b)
		}
	}
	patch("SUSPENDED")
	wantProblem(t, "suspended", m.Do("POST", "/v1/orders", orderBody("suspended")), 403, auth.CodeMerchantSuspended)
	// A bad signature learns nothing about the merchant's status.
	wantProblem(t, "suspended, wrong secret", as(m, "", "sk_wrong").Do("GET", "/v1/orders", nil), 401, auth.CodeInvalidSignature)
	if n := sys.Count(`SELECT count(*) FROM orders`); n != 0 {
		t.Fatalf("orders created while suspended: %d", n)
	}
	patch("ACTIVE")
	if r := m.Do("POST", "/v1/orders", orderBody("active again")); r.Status != 201 {
		t.Fatalf("active again: %d %s", r.Status, r.Body)
	}
}

func TestAuthRedisDownFailsClosed(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: every nonce check fails to reach Redis.
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_REDIS_URL": "redis://127.0.0.1:1/0"}})
	m := sys.NewMerchant("")
	r := m.Do("POST", "/v1/orders", orderBody("no redis"))
	wantProblem(t, "signed request with Redis down", r, 503, auth.CodeAuthUnavailable)
	if n := sys.Count(`SELECT count(*) FROM orders`); n != 0 {
		t.Fatalf("orders created with Redis down: %d, want 0", n)
	}
	// A bad signature is still a 401: the nonce store is only asked after the
	// signature verified.
	wantProblem(t, "wrong secret with Redis down", as(m, "", "sk_wrong").Do("GET", "/v1/orders", nil), 401, auth.CodeInvalidSignature)
}
