package ops_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/payrail/payrail/internal/systest"
)

var (
	secretRE   = regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`)
	recoveryRE = regexp.MustCompile(`class="recovery-code">([A-Z2-7-]+)<`)
)

// With PAYRAIL_OPS_REQUIRE_TOTP the password alone opens no session: a
// first sign-in enrols (QR and secret shown once), later ones ask for a
// code; a used code is refused, a recovery code works once, the secret is
// stored sealed, and reset-2fa makes the next sign-in enrol again. The
// codes are computed in the test from the secret, as an authenticator
// app would.
func TestTOTPEnrolmentAndSignIn(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{Env: map[string]string{"PAYRAIL_OPS_REQUIRE_TOTP": "true"}})
	password := func(b *browser) page {
		t.Helper()
		p := b.post("/ops/login", url.Values{"name": {opName}, "password": {opPassword}, "next": {"/ops/"}})
		if p.Status != http.StatusSeeOther || p.Header.Get("Location") != "/ops/login/totp" {
			t.Fatalf("password step: %d → %q, want the code page", p.Status, p.Header.Get("Location"))
		}
		return b.get("/ops/login/totp")
	}
	code := func(b *browser, c string) page {
		t.Helper()
		return b.post("/ops/login/totp", url.Values{"code": {c}})
	}

	b1 := newBrowser(t, sys.URL)
	enrol := password(b1)
	m := secretRE.FindStringSubmatch(enrol.Body)
	if enrol.Status != 200 || m == nil || !strings.Contains(enrol.Body, `id="totp-qr" alt="TOTP QR code" src="data:image/png;base64,`) {
		t.Fatalf("enrolment page: %d, secret found %v", enrol.Status, m != nil)
	}
	secret := m[1]
	if p := b1.get("/ops/"); p.Status != http.StatusSeeOther {
		t.Fatalf("the console before the code: %d, want a redirect", p.Status)
	}
	if p := code(b1, "12345"); p.Status != http.StatusUnauthorized {
		t.Fatalf("a malformed code: %d", p.Status)
	}
	now, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec := code(b1, now)
	codes := recoveryRE.FindAllStringSubmatch(rec.Body, -1)
	if rec.Status != 200 || len(codes) != 10 {
		t.Fatalf("enrolment: %d with %d recovery codes, want 200 and 10", rec.Status, len(codes))
	}
	if p := b1.get("/ops/"); p.Status != 200 {
		t.Fatalf("the console after enrolling: %d", p.Status)
	}
	if n := sys.Count(`SELECT count(*) FROM operators WHERE name = $1 AND totp_secret IS NOT NULL AND position(convert_to($2, 'UTF8') in totp_secret) = 0`, opName, secret); n != 1 {
		t.Fatal("the TOTP secret is not stored sealed")
	}

	// The same code again (a replay, even within its 30 s) is refused.
	b2 := newBrowser(t, sys.URL)
	if p := password(b2); strings.Contains(p.Body, "totp-secret") {
		t.Fatal("the secret is shown again after enrolment")
	}
	if p := code(b2, now); p.Status != http.StatusUnauthorized {
		t.Fatalf("a used code: %d, want 401", p.Status)
	}
	// A recovery code signs in once.
	if p := code(b2, strings.ToLower(codes[3][1])); p.Status != http.StatusSeeOther {
		t.Fatalf("a recovery code: %d", p.Status)
	}
	if p := b2.get("/ops/"); p.Status != 200 {
		t.Fatalf("the console after a recovery code: %d", p.Status)
	}
	b3 := newBrowser(t, sys.URL)
	password(b3)
	if p := code(b3, codes[3][1]); p.Status != http.StatusUnauthorized {
		t.Fatalf("a recovery code used twice: %d", p.Status)
	}

	// reset-2fa: the next sign-in enrols a new authenticator.
	if status, body := sys.Admin("POST", "/admin/operators/"+opName+"/reset-2fa", nil); status != http.StatusNoContent {
		t.Fatalf("reset-2fa: %d %s", status, body)
	}
	if p := password(newBrowser(t, sys.URL)); secretRE.FindStringSubmatch(p.Body) == nil {
		t.Fatal("after reset-2fa the sign-in does not enrol again")
	}
	for action, want := range map[string]int{"operator.totp_enrolled": 1, "operator.totp_reset": 1, "login.totp_failed": 3, "login.succeeded": 2} {
		if n := sys.Count(`SELECT count(*) FROM audit_log WHERE action = $1`, action); n != want {
			t.Errorf("audit %s: %d rows, want %d", action, n, want)
		}
	}
}
