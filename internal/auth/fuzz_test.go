package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// FuzzVerify feeds the verifier arbitrary header values, targets and bodies.
// It must never panic, must answer every failure with an *Error of a known
// code, and must never accept a request whose signature is not the right one.
// When sign is true the fuzzer's inputs are signed with the real secret, so
// the accepting path is explored too.
func FuzzVerify(f *testing.F) {
	f.Fuzz(func(t *testing.T, method, target, clientID, ts, nonce, sig string, body []byte, sign bool) {
		v, b := setup(t)
		if sign {
			sig = Sign(b.secret, method, target, ts, nonce, body)
		}
		r := &http.Request{Method: method, RequestURI: target, Header: http.Header{}}
		for k, val := range map[string]string{HeaderClientID: clientID, HeaderTimestamp: ts, HeaderNonce: nonce, HeaderSignature: sig} {
			if val != "" {
				r.Header[k] = []string{val}
			}
		}
		m, err := v.Verify(context.Background(), r, body)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if ae.Code == CodeAuthUnavailable {
				// The stores answer in this test: input alone is never an outage.
				t.Fatalf("%s for input alone", ae.Code)
			}
			if m != "" {
				t.Fatalf("merchant %q returned with %v", m, err)
			}
			if ae.Code != CodeReplayedNonce && b.nonces.count() != 0 {
				t.Fatalf("nonce recorded for a request failing with %s", ae.Code)
			}
			return
		}
		// Accepted: the signature must be the right one for what was sent.
		creds := b.creds[clientID]
		meth := method
		if meth == "" {
			meth = http.MethodGet
		}
		ok := false
		for _, s := range creds.Secrets {
			if s != "" && sig == Sign(s, meth, requestTarget(r), ts, nonce, body) {
				ok = true
			}
		}
		if !ok || m != creds.MerchantID || creds.Suspended {
			t.Fatalf("accepted %q for client %q with signature %q", m, clientID, sig)
		}
		if !validNonce(nonce) || b.nonces.count() != 1 {
			t.Fatalf("accepted nonce %q, %d recorded", nonce, b.nonces.count())
		}
		if _, err := v.Verify(context.Background(), r, body); !isCode(err, CodeReplayedNonce) {
			t.Fatalf("replay: %v, want REPLAYED_NONCE", err)
		}
		// Any change to the body is caught.
		if _, err := v.Verify(context.Background(), r, append(body, 'x')); !isCode(err, CodeInvalidSignature) {
			t.Fatalf("body changed: %v, want INVALID_SIGNATURE", err)
		}
	})
}

func isCode(err error, code string) bool {
	var ae *Error
	return errors.As(err, &ae) && ae.Code == code
}

// FuzzCanonical checks that CanonicalString is a faithful encoding: for inputs
// without newlines the five lines give back the inputs and the body's hash,
// and Sign always has the v1 form.
func FuzzCanonical(f *testing.F) {
	f.Fuzz(func(t *testing.T, method, target, ts, nonce string, body []byte, secret string) {
		c := CanonicalString(method, target, ts, nonce, body)
		if c != CanonicalString(method, target, ts, nonce, body) {
			t.Fatal("not deterministic")
		}
		sig := Sign(secret, method, target, ts, nonce, body)
		if h, ok := strings.CutPrefix(sig, "v1="); !ok || len(h) != 64 || !isLowerHex(h) {
			t.Fatalf("Sign = %q, want v1=<64 lowercase hex>", sig)
		}
		if !strings.HasSuffix(c, "\n"+CanonicalString("", "", "", "", body)[4:]) {
			t.Fatalf("canonical %q does not end with the body hash", c)
		}
		if strings.ContainsRune(method+target+ts+nonce, '\n') {
			return
		}
		lines := strings.Split(c, "\n")
		if len(lines) != 5 || lines[0] != method || lines[1] != target || lines[2] != ts || lines[3] != nonce {
			t.Fatalf("canonical %q does not split back into its inputs", c)
		}
		if len(lines[4]) != 64 || !isLowerHex(lines[4]) {
			t.Fatalf("body hash line %q", lines[4])
		}
	})
}
