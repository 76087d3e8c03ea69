package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// memCreds is an in-memory CredentialStore.
type memCreds map[string]Credentials

func (m memCreds) Credentials(_ context.Context, clientID string) (Credentials, error) {
	c, ok := m[clientID]
	if !ok {
		return Credentials{}, fmt.Errorf("lookup %q: %w", clientID, ErrUnknownClient)
	}
	return c, nil
}

type downCreds struct{}

func (downCreds) Credentials(context.Context, string) (Credentials, error) {
	return Credentials{}, errors.New("connection refused")
}

// memNonces is an in-memory NonceStore that can be taken down.
type memNonces struct {
	mu   sync.Mutex
	used map[string]time.Duration
	down bool
}

func (m *memNonces) Use(_ context.Context, clientID, nonce string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return false, errors.New("dial tcp: connection refused")
	}
	k := clientID + ":" + nonce
	if _, ok := m.used[k]; ok {
		return false, nil
	}
	m.used[k] = ttl
	return true, nil
}

func (m *memNonces) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.used)
}

type bundle struct {
	clientID, secret, merchantID string
	now                          time.Time
	creds                        memCreds
	nonces                       *memNonces
}

func setup(tb testing.TB) (*Verifier, *bundle) {
	tb.Helper()
	b := &bundle{
		clientID:   "cli_test_1",
		secret:     "sk_test_primary",
		merchantID: "mer_1",
		now:        time.Unix(1767225600, 0),
		nonces:     &memNonces{used: map[string]time.Duration{}},
	}
	b.creds = memCreds{
		b.clientID:      {MerchantID: b.merchantID, Secrets: []string{b.secret}},
		"cli_rotating":  {MerchantID: "mer_2", Secrets: []string{"old-secret", "new-secret"}},
		"cli_suspended": {MerchantID: "mer_3", Suspended: true, Secrets: []string{"susp-secret"}},
		"cli_empty":     {MerchantID: "mer_4", Secrets: []string{""}},
	}
	v := &Verifier{Store: b.creds, Nonces: b.nonces, Now: func() time.Time { return b.now }}
	return v, b
}

// signed describes one request; sign builds it, signed as described.
type signed struct {
	method, target, body string
	clientID, secret     string
	ts                   int64
	nonce                string
}

func (b *bundle) req(mod func(*signed)) signed {
	s := signed{
		method:   "POST",
		target:   "/v1/orders/ord_1/confirm?wait=1",
		body:     `{"amount":15000}`,
		clientID: b.clientID,
		secret:   b.secret,
		ts:       b.now.Unix(),
		nonce:    "nonce-0123456789abcdef",
	}
	if mod != nil {
		mod(&s)
	}
	return s
}

func (s signed) request() (*http.Request, []byte) {
	ts := strconv.FormatInt(s.ts, 10)
	r := &http.Request{Method: s.method, RequestURI: s.target, Header: http.Header{}}
	r.Header.Set(HeaderClientID, s.clientID)
	r.Header.Set(HeaderTimestamp, ts)
	r.Header.Set(HeaderNonce, s.nonce)
	r.Header.Set(HeaderSignature, Sign(s.secret, s.method, s.target, ts, s.nonce, []byte(s.body)))
	return r, []byte(s.body)
}

func wantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	want := fail(code)
	var got *Error
	if !errors.As(err, &got) {
		tb.Fatalf("err = %v, want *Error %s", err, code)
	}
	if diff := cmp.Diff(want.Code, got.Code); diff != "" {
		tb.Fatalf("error mismatch (-want +got):\n%s", diff)
	}
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	v, b := setup(t)
	r, body := b.req(nil).request()
	m, err := v.Verify(context.Background(), r, body)
	if err != nil || m != b.merchantID {
		t.Fatalf("Verify = %q, %v; want %q", m, err, b.merchantID)
	}
	if diff := cmp.Diff(map[string]time.Duration{b.clientID + ":nonce-0123456789abcdef": DefaultNonceTTL}, b.nonces.used); diff != "" {
		t.Fatalf("nonces recorded (-want +got):\n%s", diff)
	}
}

func TestVerifyMissingHeaders(t *testing.T) {
	t.Parallel()
	for _, h := range []string{HeaderClientID, HeaderTimestamp, HeaderNonce, HeaderSignature} {
		t.Run("missing "+h, func(t *testing.T) {
			t.Parallel()
			v, b := setup(t)
			r, body := b.req(nil).request()
			r.Header.Del(h)
			_, err := v.Verify(context.Background(), r, body)
			wantCode(t, err, CodeMissingAuth)
			if b.nonces.count() != 0 {
				t.Fatal("a nonce was recorded")
			}
		})
		t.Run("empty "+h, func(t *testing.T) {
			t.Parallel()
			v, b := setup(t)
			r, body := b.req(nil).request()
			r.Header.Set(h, "")
			_, err := v.Verify(context.Background(), r, body)
			wantCode(t, err, CodeMissingAuth)
		})
		t.Run("repeated "+h, func(t *testing.T) {
			t.Parallel()
			v, b := setup(t)
			r, body := b.req(nil).request()
			r.Header.Add(h, r.Header.Get(h))
			_, err := v.Verify(context.Background(), r, body)
			wantCode(t, err, CodeMissingAuth)
		})
	}
}

func TestVerifyMalformedHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, header, value, code string
	}{
		{"nonce too short", HeaderNonce, "abcdefghijklmno", CodeMissingAuth},
		{"nonce too long", HeaderNonce, strings.Repeat("a", 65), CodeMissingAuth},
		{"nonce bad char", HeaderNonce, "abcdefghijklmnop:", CodeMissingAuth},
		{"nonce space", HeaderNonce, "abcdefgh ijklmnop", CodeMissingAuth},
		{"timestamp negative", HeaderTimestamp, "-1767225600", CodeMissingAuth},
		{"timestamp plus", HeaderTimestamp, "+1767225600", CodeMissingAuth},
		{"timestamp fraction", HeaderTimestamp, "1767225600.5", CodeMissingAuth},
		{"timestamp rfc3339", HeaderTimestamp, "2026-01-01T00:00:00Z", CodeMissingAuth},
		{"timestamp milliseconds", HeaderTimestamp, "1767225600000", CodeStaleTimestamp},
		{"timestamp overflow", HeaderTimestamp, strings.Repeat("9", 40), CodeStaleTimestamp},
		{"client id space", HeaderClientID, "cli test", CodeMissingAuth},
		{"client id too long", HeaderClientID, strings.Repeat("c", 129), CodeMissingAuth},
		{"signature no version", HeaderSignature, strings.Repeat("a", 64), CodeInvalidSignature},
		{"signature v2", HeaderSignature, "v2=" + strings.Repeat("a", 64), CodeInvalidSignature},
		{"signature uppercase hex", HeaderSignature, "v1=" + strings.Repeat("A", 64), CodeInvalidSignature},
		{"signature short", HeaderSignature, "v1=" + strings.Repeat("a", 63), CodeInvalidSignature},
		{"signature long", HeaderSignature, "v1=" + strings.Repeat("a", 66), CodeInvalidSignature},
		{"signature not hex", HeaderSignature, "v1=" + strings.Repeat("g", 64), CodeInvalidSignature},
		{"signature two values", HeaderSignature, "v1=" + strings.Repeat("a", 64) + ",v1=" + strings.Repeat("b", 64), CodeInvalidSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, b := setup(t)
			r, body := b.req(nil).request()
			r.Header.Set(tc.header, tc.value)
			_, err := v.Verify(context.Background(), r, body)
			wantCode(t, err, tc.code)
			if b.nonces.count() != 0 {
				t.Fatal("a nonce was recorded")
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// mod changes what is signed; tamper changes the request afterwards.
		mod    func(*signed)
		tamper func(r *http.Request, body []byte) []byte
		code   string
	}{
		{name: "unknown client", mod: func(s *signed) { s.clientID = "cli_nobody" }, code: CodeUnknownClient},
		{name: "stale timestamp", mod: func(s *signed) { s.ts -= 301 }, code: CodeStaleTimestamp},
		{name: "future timestamp", mod: func(s *signed) { s.ts += 301 }, code: CodeStaleTimestamp},
		{name: "zero timestamp", mod: func(s *signed) { s.ts = 0 }, code: CodeStaleTimestamp},
		{name: "wrong secret", mod: func(s *signed) { s.secret = "sk_test_other" }, code: CodeInvalidSignature},
		{name: "another client's secret", mod: func(s *signed) { s.secret = "new-secret" }, code: CodeInvalidSignature},
		{name: "empty secret configured", mod: func(s *signed) { s.clientID, s.secret = "cli_empty", "" }, code: CodeInvalidSignature},
		{
			name: "body changed after signing",
			tamper: func(_ *http.Request, body []byte) []byte {
				return []byte(strings.Replace(string(body), "15000", "1500", 1))
			},
			code: CodeInvalidSignature,
		},
		{
			name:   "body dropped after signing",
			tamper: func(*http.Request, []byte) []byte { return nil },
			code:   CodeInvalidSignature,
		},
		{
			name: "query changed after signing",
			tamper: func(r *http.Request, body []byte) []byte {
				r.RequestURI = "/v1/orders/ord_1/confirm?wait=30"
				return body
			},
			code: CodeInvalidSignature,
		},
		{
			name: "query dropped after signing",
			tamper: func(r *http.Request, body []byte) []byte {
				r.RequestURI = "/v1/orders/ord_1/confirm"
				return body
			},
			code: CodeInvalidSignature,
		},
		{
			name: "path changed after signing",
			tamper: func(r *http.Request, body []byte) []byte {
				r.RequestURI = "/v1/orders/ord_2/confirm?wait=1"
				return body
			},
			code: CodeInvalidSignature,
		},
		{
			name: "method changed after signing",
			tamper: func(r *http.Request, body []byte) []byte {
				r.Method = "PUT"
				return body
			},
			code: CodeInvalidSignature,
		},
		{
			name: "timestamp changed after signing",
			tamper: func(r *http.Request, body []byte) []byte {
				r.Header.Set(HeaderTimestamp, "1767225601")
				return body
			},
			code: CodeInvalidSignature,
		},
		{
			name: "nonce changed after signing",
			tamper: func(r *http.Request, body []byte) []byte {
				r.Header.Set(HeaderNonce, "nonce-0123456789abcdeX")
				return body
			},
			code: CodeInvalidSignature,
		},
		{
			name: "signed %2F, sent /",
			mod:  func(s *signed) { s.target = "/v1/payments/pk%2Fabc" },
			tamper: func(r *http.Request, body []byte) []byte {
				r.RequestURI = "/v1/payments/pk/abc"
				return body
			},
			code: CodeInvalidSignature,
		},
		{
			name: "signed /, sent %2F",
			mod:  func(s *signed) { s.target = "/v1/payments/pk/abc" },
			tamper: func(r *http.Request, body []byte) []byte {
				r.RequestURI = "/v1/payments/pk%2Fabc"
				return body
			},
			code: CodeInvalidSignature,
		},
		{
			name: "signed %2f, sent %2F",
			mod:  func(s *signed) { s.target = "/v1/payments/pk%2fabc" },
			tamper: func(r *http.Request, body []byte) []byte {
				r.RequestURI = "/v1/payments/pk%2Fabc"
				return body
			},
			code: CodeInvalidSignature,
		},
		{
			name: "client id swapped to another merchant",
			tamper: func(r *http.Request, body []byte) []byte {
				r.Header.Set(HeaderClientID, "cli_rotating")
				return body
			},
			code: CodeInvalidSignature,
		},
		{
			name: "suspended merchant, bad signature",
			mod:  func(s *signed) { s.clientID, s.secret = "cli_suspended", "guess" },
			code: CodeInvalidSignature,
		},
		{
			name: "suspended merchant, valid signature",
			mod:  func(s *signed) { s.clientID, s.secret = "cli_suspended", "susp-secret" },
			code: CodeMerchantSuspended,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, b := setup(t)
			r, body := b.req(tc.mod).request()
			if tc.tamper != nil {
				body = tc.tamper(r, body)
			}
			m, err := v.Verify(context.Background(), r, body)
			wantCode(t, err, tc.code)
			if m != "" {
				t.Fatalf("merchant %q returned with an error", m)
			}
			if b.nonces.count() != 0 {
				t.Fatal("a failed request recorded its nonce")
			}
		})
	}
}

func TestVerifySkewBoundary(t *testing.T) {
	t.Parallel()
	for _, d := range []int64{-300, 300} {
		v, b := setup(t)
		r, body := b.req(func(s *signed) { s.ts += d }).request()
		if _, err := v.Verify(context.Background(), r, body); err != nil {
			t.Errorf("timestamp now%+ds: %v, want accepted", d, err)
		}
	}
	v, b := setup(t)
	v.MaxSkew = 10 * time.Second
	r, body := b.req(func(s *signed) { s.ts -= 11 }).request()
	_, err := v.Verify(context.Background(), r, body)
	wantCode(t, err, CodeStaleTimestamp)
}

func TestVerifyReplay(t *testing.T) {
	t.Parallel()
	v, b := setup(t)
	r, body := b.req(nil).request()
	if _, err := v.Verify(context.Background(), r, body); err != nil {
		t.Fatal(err)
	}
	r, body = b.req(nil).request()
	_, err := v.Verify(context.Background(), r, body)
	wantCode(t, err, CodeReplayedNonce)

	// The same nonce from another client is that client's own business.
	r, body = b.req(func(s *signed) { s.clientID, s.secret = "cli_rotating", "new-secret" }).request()
	if _, err := v.Verify(context.Background(), r, body); err != nil {
		t.Fatalf("same nonce, other client: %v", err)
	}
}

func TestVerifyFailedAttemptDoesNotBurnNonce(t *testing.T) {
	t.Parallel()
	v, b := setup(t)
	forged, body := b.req(func(s *signed) { s.secret = "attacker" }).request()
	_, err := v.Verify(context.Background(), forged, body)
	wantCode(t, err, CodeInvalidSignature)

	r, body := b.req(nil).request() // same nonce, real secret
	if m, err := v.Verify(context.Background(), r, body); err != nil || m != b.merchantID {
		t.Fatalf("legitimate request after a forged one with its nonce: %q, %v", m, err)
	}
}

func TestVerifyRotation(t *testing.T) {
	t.Parallel()
	v, b := setup(t)
	for i, secret := range []string{"old-secret", "new-secret"} {
		r, body := b.req(func(s *signed) {
			s.clientID, s.secret = "cli_rotating", secret
			s.nonce = fmt.Sprintf("rotation-nonce-%04d", i)
		}).request()
		if m, err := v.Verify(context.Background(), r, body); err != nil || m != "mer_2" {
			t.Errorf("signed with %s: %q, %v; want mer_2", secret, m, err)
		}
	}
	r, body := b.req(func(s *signed) { s.clientID, s.secret = "cli_rotating", "retired-secret" }).request()
	_, err := v.Verify(context.Background(), r, body)
	wantCode(t, err, CodeInvalidSignature)
}

func TestVerifyStoresDown(t *testing.T) {
	t.Parallel()
	t.Run("nonce store", func(t *testing.T) {
		t.Parallel()
		v, b := setup(t)
		b.nonces.down = true
		r, body := b.req(nil).request()
		_, err := v.Verify(context.Background(), r, body)
		wantCode(t, err, CodeAuthUnavailable)
		if !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("error %q does not carry its cause for the logs", err)
		}

		// A bad signature is rejected before the nonce store is asked.
		r, body = b.req(func(s *signed) { s.secret = "wrong" }).request()
		_, err = v.Verify(context.Background(), r, body)
		wantCode(t, err, CodeInvalidSignature)

		// Once the store is back, the nonce was not burnt by the outage.
		b.nonces.mu.Lock()
		b.nonces.down = false
		b.nonces.mu.Unlock()
		r, body = b.req(nil).request()
		if _, err := v.Verify(context.Background(), r, body); err != nil {
			t.Fatalf("after the store came back: %v", err)
		}
	})
	t.Run("credential store", func(t *testing.T) {
		t.Parallel()
		v, b := setup(t)
		v.Store = downCreds{}
		r, body := b.req(nil).request()
		_, err := v.Verify(context.Background(), r, body)
		wantCode(t, err, CodeAuthUnavailable)
	})
	t.Run("not configured", func(t *testing.T) {
		t.Parallel()
		v, b := setup(t)
		v.Nonces = nil
		r, body := b.req(nil).request()
		_, err := v.Verify(context.Background(), r, body)
		wantCode(t, err, CodeAuthUnavailable)
	})
}

func TestVerifyNonceTTLCoversSkewWindow(t *testing.T) {
	t.Parallel()
	v, b := setup(t)
	v.MaxSkew = 15 * time.Minute
	v.NonceTTL = time.Minute
	r, body := b.req(nil).request()
	if _, err := v.Verify(context.Background(), r, body); err != nil {
		t.Fatal(err)
	}
	for _, ttl := range b.nonces.used {
		if ttl != 30*time.Minute {
			t.Fatalf("nonce ttl %v, want 30m (2×MaxSkew)", ttl)
		}
	}
}

func TestVerifyRequestTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    *http.Request
	}{
		{"RequestURI", &http.Request{RequestURI: "/v1/x?a=%2F"}},
		{"absolute form", &http.Request{RequestURI: "http://api.payrail.test:8080/v1/x?a=%2F"}},
		{"URL fallback", &http.Request{URL: mustURL(t, "http://h/v1/x?a=%2F")}},
	}
	for _, tc := range tests {
		if got := requestTarget(tc.r); got != "/v1/x?a=%2F" {
			t.Errorf("%s: requestTarget = %q", tc.name, got)
		}
	}
	if got := requestTarget(&http.Request{RequestURI: "https://h?q=1"}); got != "/?q=1" {
		t.Errorf("authority then query: %q", got)
	}
	if got := requestTarget(&http.Request{}); got != "" {
		t.Errorf("no target: %q", got)
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	if got := fail(CodeReplayedNonce).Error(); got != "auth: REPLAYED_NONCE" {
		t.Fatalf("Error() = %q", got)
	}
	cause := errors.New("boom")
	if err := unavailable(cause); !errors.Is(err, cause) || err.Code != CodeAuthUnavailable {
		t.Fatalf("unavailable does not wrap its cause or has code %s", err.Code)
	}
}
