package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

type vector struct {
	Name       string `json:"name"`
	Secret     string `json:"secret"`
	Method     string `json:"method"`
	Target     string `json:"target"`
	Timestamp  string `json:"timestamp"`
	Nonce      string `json:"nonce"`
	Body       string `json:"body"`
	BodySHA256 string `json:"bodySha256"`
	Canonical  string `json:"canonical"`
	Signature  string `json:"signature"`
}

func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var file struct{ Vectors []vector }
	if err := json.Unmarshal(raw, &file); err != nil {
		tb.Fatal(err)
	}
	if len(file.Vectors) == 0 {
		tb.Fatal("no vectors")
	}
	return file.Vectors
}

func TestVectors(t *testing.T) {
	t.Parallel()
	for _, vec := range loadVectors(t) {
		t.Run(vec.Name, func(t *testing.T) {
			t.Parallel()
			body := []byte(vec.Body)
			if got := CanonicalString(vec.Method, vec.Target, vec.Timestamp, vec.Nonce, body); got != vec.Canonical {
				t.Errorf("CanonicalString =\n%q\nwant\n%q", got, vec.Canonical)
			}
			if got := Sign(vec.Secret, vec.Method, vec.Target, vec.Timestamp, vec.Nonce, body); got != vec.Signature {
				t.Errorf("Sign = %s, want %s", got, vec.Signature)
			}

			// And the Verifier accepts the vector as a request.
			sec, _ := strconv.ParseInt(vec.Timestamp, 10, 64)
			v, _ := setup(t)
			v.Now = func() time.Time { return time.Unix(sec, 0) }
			v.Store = memCreds{"c": {MerchantID: "m", Secrets: []string{vec.Secret}}}
			r := &http.Request{Method: vec.Method, RequestURI: vec.Target, Header: http.Header{}}
			r.Header.Set(HeaderClientID, "c")
			r.Header.Set(HeaderTimestamp, vec.Timestamp)
			r.Header.Set(HeaderNonce, vec.Nonce)
			r.Header.Set(HeaderSignature, vec.Signature)
			if _, err := v.Verify(context.Background(), r, body); err != nil {
				t.Errorf("Verify(vector) = %v", err)
			}
		})
	}
}

func TestVectorsDistinguishEscaping(t *testing.T) {
	t.Parallel()
	vs := loadVectors(t)
	seen := map[string]string{}
	for _, v := range vs {
		if other, dup := seen[v.Signature]; dup {
			t.Errorf("vectors %q and %q share a signature", v.Name, other)
		}
		seen[v.Signature] = v.Name
	}
}

func TestCanonicalStringEmptyBody(t *testing.T) {
	t.Parallel()
	const emptySHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	want := "GET\n/v1/orders\n1\nnnnnnnnnnnnnnnnn\n" + emptySHA
	for _, body := range [][]byte{nil, {}} {
		if got := CanonicalString("GET", "/v1/orders", "1", "nnnnnnnnnnnnnnnn", body); got != want {
			t.Fatalf("CanonicalString = %q, want %q", got, want)
		}
	}
}

// TestSignRequestOverTheWire signs with net/http's client and verifies in a
// net/http server, so the target signed is the target the server receives,
// escaping included.
func TestSignRequestOverTheWire(t *testing.T) {
	t.Parallel()
	v, b := setup(t)
	v.Now = time.Now
	type result struct {
		merchant string
		err      error
		body     string
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		m, err := v.Verify(r.Context(), r, body)
		results <- result{m, err, string(body)}
	}))
	t.Cleanup(srv.Close)

	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/orders?status=PAID&limit=2", ""},
		{"GET", "/v1/payments/pk%2Fabc%20d", ""},
		{"POST", "/v1/orders/ord_1/confirm", `{"paymentKey":"pk","amount":15000}`},
		{"POST", "/v1/orders?x=%2F&y", "binary\x00body"},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, body)
		if err != nil {
			t.Fatal(err)
		}
		if err := SignRequest(req, b.clientID, b.secret, time.Now()); err != nil {
			t.Fatal(err)
		}
		if n := req.Header.Get(HeaderNonce); len(n) != 32 || !validNonce(n) {
			t.Fatalf("nonce %q: want 32 characters of [A-Za-z0-9_-]", n)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := <-results
		if got.err != nil || got.merchant != b.merchantID {
			t.Errorf("%s %s: Verify = %q, %v; want %q", tc.method, tc.path, got.merchant, got.err, b.merchantID)
		}
		if got.body != tc.body {
			t.Errorf("%s %s: server read body %q, want %q (SignRequest must restore it)", tc.method, tc.path, got.body, tc.body)
		}
	}
}

func TestSignRequestRestoresBody(t *testing.T) {
	t.Parallel()
	req, _ := http.NewRequest("POST", "http://x/v1/orders", bytes.NewBufferString("hello"))
	if err := SignRequest(req, "c", "s", time.Unix(1767225600, 0)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		var rc io.ReadCloser = req.Body
		if i == 1 {
			var err error
			if rc, err = req.GetBody(); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := io.ReadAll(rc)
		if string(got) != "hello" {
			t.Fatalf("body %d = %q, want hello", i, got)
		}
	}
	if req.ContentLength != 5 || req.Header.Get(HeaderTimestamp) != "1767225600" {
		t.Fatalf("ContentLength %d, timestamp %q", req.ContentLength, req.Header.Get(HeaderTimestamp))
	}
	want := Sign("s", "POST", "/v1/orders", "1767225600", req.Header.Get(HeaderNonce), []byte("hello"))
	if got := req.Header.Get(HeaderSignature); got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
	if err := SignRequest(req, "", "s", time.Now()); err == nil {
		t.Fatal("SignRequest with an empty client id: want an error")
	}
}

func mustURL(tb testing.TB, s string) *url.URL {
	tb.Helper()
	u, err := url.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}
