package httpapi_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/systest"
)

// adminDo sends an admin request and keeps the answer's headers.
func adminDo(t *testing.T, sys *systest.System, method, path string, body any) systest.Response {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	h := http.Header{"Authorization": {"Bearer " + systest.AdminToken}, "Content-Type": {"application/json"}}
	return rawDo(t, sys, method, path, raw, h)
}

func TestAdminBearerRequired(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	body := []byte(`{"name":"x","callbackUrl":"https://example.com/cb"}`)
	for _, c := range []struct{ name, auth string }{
		{"no header", ""},
		{"wrong token", "Bearer not-the-token"},
		{"token prefix", "Bearer " + systest.AdminToken[:10]},
		{"token plus more", "Bearer " + systest.AdminToken + "x"},
		{"lowercase scheme", "bearer " + systest.AdminToken},
		{"basic scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+systest.AdminToken))},
		{"bare token", systest.AdminToken},
	} {
		h := http.Header{"Content-Type": {"application/json"}}
		if c.auth != "" {
			h.Set("Authorization", c.auth)
		}
		r := rawDo(t, sys, "POST", "/admin/merchants", body, h)
		wantProblem(t, c.name, r, 401, "UNAUTHORIZED")
		if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", c.name, r.Header.Get("WWW-Authenticate"))
		}
		wantProblem(t, c.name+" (GET)", rawDo(t, sys, "GET", "/admin/merchants/mer_x", nil, h), 401, "UNAUTHORIZED")
	}
	if n := sys.Count(`SELECT count(*) FROM merchants`); n != 0 {
		t.Fatalf("merchants = %d, want 0", n)
	}
}

func TestAdminCreateMerchantShowsSecretsOnce(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	st, b := sys.Admin("POST", "/admin/merchants", map[string]any{"name": "Shop", "callbackUrl": "https://shop.example/cb", "returnUrl": "https://shop.example/return"})
	if st != 201 {
		t.Fatalf("create: %d %s", st, b)
	}
	var c struct {
		MerchantID, ClientID, ClientSecret, ClientSecretID, CallbackSecret, CallbackSecretID, Status string
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"merchantId": c.MerchantID, "clientId": c.ClientID, "clientSecret": c.ClientSecret,
		"clientSecretId": c.ClientSecretID, "callbackSecret": c.CallbackSecret, "callbackSecretId": c.CallbackSecretID} {
		if v == "" {
			t.Errorf("created merchant has no %s: %s", name, b)
		}
	}
	if c.Status != "ACTIVE" {
		t.Errorf("status = %q, want ACTIVE", c.Status)
	}
	raw, ok := strings.CutPrefix(c.CallbackSecret, "whsec_")
	if !ok {
		t.Fatalf("callbackSecret %q lacks the whsec_ prefix", c.CallbackSecret)
	}
	if key, err := base64.StdEncoding.DecodeString(raw); err != nil || len(key) < 24 {
		t.Fatalf("callbackSecret %q is not whsec_<base64 of ≥ 24 bytes>: %v", c.CallbackSecret, err)
	}

	st, g := sys.Admin("GET", "/admin/merchants/"+c.MerchantID, nil)
	if st != 200 {
		t.Fatalf("get: %d %s", st, g)
	}
	var got map[string]any
	_ = json.Unmarshal(g, &got)
	if got["merchantId"] != c.MerchantID || got["clientId"] != c.ClientID {
		t.Errorf("GET merchant: %s", g)
	}
	for _, k := range []string{"clientSecret", "callbackSecret", "secret"} {
		if _, ok := got[k]; ok {
			t.Errorf("GET merchant shows %s", k)
		}
	}
	for _, s := range []string{c.ClientSecret, c.CallbackSecret, raw} {
		if bytes.Contains(g, []byte(s)) {
			t.Errorf("GET merchant leaks a secret")
		}
	}
	// Secrets are encrypted at rest.
	var cts [][]byte
	if err := sys.DB.DB.Select(&cts, `SELECT ciphertext FROM merchant_secrets WHERE merchant_id = $1`, c.MerchantID); err != nil || len(cts) != 2 {
		t.Fatalf("secret rows: %d %v", len(cts), err)
	}
	for _, ct := range cts {
		if bytes.Contains(ct, []byte(c.ClientSecret)) || bytes.Contains(ct, []byte(raw)) {
			t.Errorf("a secret is stored in plaintext")
		}
	}
}

func TestAdminValidation(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	for _, c := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"callbackUrl not a URL", map[string]any{"name": "x", "callbackUrl": "not a url"}, 400, "INVALID_CALLBACK_URL"},
		{"callbackUrl ftp", map[string]any{"name": "x", "callbackUrl": "ftp://example.com/cb"}, 400, "INVALID_CALLBACK_URL"},
		{"callbackUrl javascript", map[string]any{"name": "x", "callbackUrl": "javascript:alert(1)"}, 400, "INVALID_CALLBACK_URL"},
		{"callbackUrl missing", map[string]any{"name": "x"}, 400, "INVALID_CALLBACK_URL"},
		{"name missing", map[string]any{"callbackUrl": "https://example.com/cb"}, 400, "INVALID_REQUEST"},
		{"returnUrl relative", map[string]any{"name": "x", "callbackUrl": "https://example.com/cb", "returnUrl": "/back"}, 400, "INVALID_REQUEST"},
		{"unknown field", map[string]any{"name": "x", "callbackUrl": "https://example.com/cb", "admin": true}, 400, "INVALID_REQUEST"},
		{"name as number", map[string]any{"name": 5, "callbackUrl": "https://example.com/cb"}, 400, "INVALID_REQUEST"},
	} {
		wantProblem(t, c.name, adminDo(t, sys, "POST", "/admin/merchants", c.body), c.status, c.code)
	}
	if n := sys.Count(`SELECT count(*) FROM merchants`); n != 0 {
		t.Fatalf("merchants = %d, want 0", n)
	}

	m := sys.NewMerchant("")
	path := "/admin/merchants/" + m.MerchantID
	wantProblem(t, "PATCH unknown merchant", adminDo(t, sys, "PATCH", "/admin/merchants/mer_nosuchmerchant00000", map[string]any{"status": "SUSPENDED"}), 404, "MERCHANT_NOT_FOUND")
	wantProblem(t, "GET unknown merchant", adminDo(t, sys, "GET", "/admin/merchants/mer_nosuchmerchant00000", nil), 404, "MERCHANT_NOT_FOUND")
	wantProblem(t, "PATCH bad status", adminDo(t, sys, "PATCH", path, map[string]any{"status": "DELETED"}), 400, "INVALID_REQUEST")
	wantProblem(t, "PATCH bad callbackUrl", adminDo(t, sys, "PATCH", path, map[string]any{"callbackUrl": "gopher://x"}), 400, "INVALID_CALLBACK_URL")
	wantProblem(t, "secret of unknown kind", adminDo(t, sys, "POST", path+"/secrets", map[string]any{"kind": "admin"}), 400, "INVALID_REQUEST")
	wantProblem(t, "secret for unknown merchant", adminDo(t, sys, "POST", "/admin/merchants/mer_nosuchmerchant00000/secrets", map[string]any{"kind": "client"}), 404, "MERCHANT_NOT_FOUND")
	wantProblem(t, "revoke unknown secret", adminDo(t, sys, "DELETE", path+"/secrets/sec_nosuchsecret", nil), 404, "SECRET_NOT_FOUND")

	// PATCH changes only what it names.
	st, b := sys.Admin("PATCH", path, map[string]any{"callbackEnabled": false})
	var pm map[string]any
	_ = json.Unmarshal(b, &pm)
	if st != 200 || pm["callbackEnabled"] != false || pm["status"] != "ACTIVE" || pm["callbackUrl"] != "http://127.0.0.1:9/callbacks" {
		t.Fatalf("PATCH callbackEnabled: %d %s", st, b)
	}
}

func TestAdminSecretLimits(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	m, other := sys.NewMerchant(""), sys.NewMerchant("")
	path := "/admin/merchants/" + m.MerchantID + "/secrets"
	for _, c := range []struct{ kind, firstID string }{{"client", m.ClientSecretID}, {"callback", m.CallbackSecretID}} {
		wantProblem(t, "revoke the only "+c.kind+" secret", adminDo(t, sys, "DELETE", path+"/"+c.firstID, nil), 409, "LAST_ACTIVE_SECRET")
		st, b := sys.Admin("POST", path, map[string]any{"kind": c.kind})
		if st != 201 {
			t.Fatalf("second %s secret: %d %s", c.kind, st, b)
		}
		var sec struct{ SecretID, Secret string }
		_ = json.Unmarshal(b, &sec)
		if c.kind == "callback" && !strings.HasPrefix(sec.Secret, "whsec_") {
			t.Errorf("new callback secret %q lacks whsec_", sec.Secret)
		}
		wantProblem(t, "third "+c.kind+" secret", adminDo(t, sys, "POST", path, map[string]any{"kind": c.kind}), 409, "TOO_MANY_ACTIVE_SECRETS")
		// Another merchant cannot revoke it.
		wantProblem(t, "revoke through another merchant", adminDo(t, sys, "DELETE", "/admin/merchants/"+other.MerchantID+"/secrets/"+sec.SecretID, nil), 404, "SECRET_NOT_FOUND")
		if st, b := sys.Admin("DELETE", path+"/"+c.firstID, nil); st != 204 {
			t.Fatalf("revoke first %s secret: %d %s", c.kind, st, b)
		}
		wantProblem(t, "revoke the last "+c.kind+" secret", adminDo(t, sys, "DELETE", path+"/"+sec.SecretID, nil), 409, "LAST_ACTIVE_SECRET")
	}
	if n := sys.Count(`SELECT count(*) FROM merchant_secrets WHERE merchant_id = $1 AND revoked_at IS NULL`, m.MerchantID); n != 2 {
		t.Fatalf("active secrets = %d, want 2 (one of each kind)", n)
	}
}

// TestAdminErrorsAreProblems covers bodies that are not JSON at all.
func TestAdminErrorsAreProblems(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	h := http.Header{"Authorization": {"Bearer " + systest.AdminToken}, "Content-Type": {"application/json"}}
	wantProblem(t, "unknown merchant", rawDo(t, sys, "GET", "/admin/merchants/mer_none", nil, h), 404, "MERCHANT_NOT_FOUND")
	wantProblem(t, "bad JSON", rawDo(t, sys, "POST", "/admin/merchants", []byte(`{"name":`), h), 400, "INVALID_REQUEST")
	h.Set("Content-Type", "text/plain")
	wantProblem(t, "text/plain", rawDo(t, sys, "POST", "/admin/merchants", []byte(`{}`), h), 415, "UNSUPPORTED_MEDIA_TYPE")
}

// During a rotation both admin tokens open the admin API (the old
// PAYRAIL_ADMIN_TOKEN and the new one in PAYRAIL_ADMIN_TOKENS); any other
// token, or none, is refused.
func TestAdminTokenRotation(t *testing.T) {
	t.Parallel()
	const next = "test_admin_rotation_0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	sys := systest.Start(t, systest.Options{Env: map[string]string{"PAYRAIL_ADMIN_TOKENS": next}})
	get := func(token string) int {
		req, _ := http.NewRequest("GET", sys.URL+"/admin/merchants/mer_nosuchmerchant0000", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for token, want := range map[string]int{systest.AdminToken: 404, next: 404, next + "x": 401, systest.AdminToken[:20]: 401, "": 401} {
		if got := get(token); got != want {
			t.Errorf("token %.12q…: %d, want %d", token, got, want)
		}
	}
}
