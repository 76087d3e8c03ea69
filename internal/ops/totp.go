package ops

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"image/png"
	"net/http"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP (RFC 6238) as operators' second factor: pquerna/otp generates the
// keys and codes (SHA-1, 6 digits, 30 s, as every authenticator app does);
// a code is accepted within one step of the clock and never twice (the
// last step used is stored per operator); recovery codes are random,
// shown once, stored as SHA-256 hashes and single use.

// PendingCookie carries a sign-in between the password and the code.
const PendingCookie = "payrail_ops_2fa"

// pendingTTL is how long the code may come after the password.
const pendingTTL = 5 * time.Minute

// RecoveryCodes is how many recovery codes an enrolment hands out.
const RecoveryCodes = 10

// pending is a sign-in whose password was right and whose code is due.
type pending struct {
	OperatorID string `json:"operatorId"`
	Operator   string `json:"operator"`
	Addr       string `json:"addr"`
	Next       string `json:"next"`
	// Secret is the key being enrolled (shown once, until confirmed).
	Secret string `json:"secret,omitempty"`
}

func (s *Sessions) pendingKey(id string) string { return s.key("2fa:" + id) }

func (s *Sessions) savePending(ctx context.Context, id string, p pending) error {
	b, _ := json.Marshal(p)
	return s.Redis.Set(ctx, s.pendingKey(id), b, pendingTTL).Err()
}

func (s *Sessions) getPending(ctx context.Context, id string) (pending, error) {
	var p pending
	err := s.read(ctx, id, s.pendingKey, &p)
	return p, err
}

// startSecondFactor parks a password-verified sign-in and sends the
// browser to the code page.
func (c *Console) startSecondFactor(w http.ResponseWriter, r *http.Request, operatorID, name, addr, next string) {
	id := randomToken()
	if err := c.Sessions.savePending(r.Context(), id, pending{OperatorID: operatorID, Operator: name, Addr: addr, Next: next}); err != nil {
		c.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: PendingCookie, Value: id, Path: "/ops/login", MaxAge: int(pendingTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.isHTTPS(r)})
	http.Redirect(w, r, "/ops/login/totp", http.StatusSeeOther)
}

// totpPage asks for the code, or enrols an operator who has none yet.
func (c *Console) totpPage(w http.ResponseWriter, r *http.Request) {
	id, p, ok := c.pendingSignIn(w, r)
	if !ok {
		return
	}
	c.renderTOTP(w, r, id, p, http.StatusOK, "")
}

func (c *Console) renderTOTP(w http.ResponseWriter, r *http.Request, id string, p pending, status int, msg string) {
	secret, err := c.Store.OperatorTOTP(r.Context(), p.OperatorID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	data := map[string]any{"Name": p.Operator, "Error": msg}
	if secret == "" {
		if p.Secret == "" {
			key, err := totp.Generate(totp.GenerateOpts{Issuer: "payrail ops", AccountName: p.Operator})
			if err != nil {
				c.fail(w, r, err)
				return
			}
			p.Secret = key.Secret()
			if err := c.Sessions.savePending(r.Context(), id, p); err != nil {
				c.fail(w, r, err)
				return
			}
		}
		key, err := otp.NewKeyFromURL(fmt.Sprintf("otpauth://totp/payrail%%20ops:%s?secret=%s&issuer=payrail%%20ops", p.Operator, p.Secret))
		if err != nil {
			c.fail(w, r, err)
			return
		}
		img, err := key.Image(200, 200)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			c.fail(w, r, err)
			return
		}
		data["Enrol"], data["Secret"] = true, p.Secret
		data["QR"] = templateURL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()))
	}
	w.WriteHeader(status)
	c.render(w, r, "totp.html", "Second factor", data)
}

// pendingSignIn reads the pending sign-in, or sends the browser back to
// the password form.
func (c *Console) pendingSignIn(w http.ResponseWriter, r *http.Request) (string, pending, bool) {
	ck, err := r.Cookie(PendingCookie)
	var p pending
	if err == nil {
		p, err = c.Sessions.getPending(r.Context(), ck.Value)
	}
	if err != nil {
		if !errors.Is(err, errNoSession) && !errors.Is(err, http.ErrNoCookie) {
			c.fail(w, r, err)
			return "", p, false
		}
		http.Redirect(w, r, "/ops/login", http.StatusSeeOther)
		return "", p, false
	}
	return ck.Value, p, true
}

// totpSubmit checks the code (or a recovery code) and starts the session.
// Wrong codes count towards the name's lock like wrong passwords.
func (c *Console) totpSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if !sameOrigin(r, false) {
		http.Error(w, "cross-origin sign-in refused", http.StatusForbidden)
		return
	}
	id, p, ok := c.pendingSignIn(w, r)
	if !ok {
		return
	}
	if c.Throttle != nil {
		release, err := c.Throttle.Admit(r.Context(), p.Operator, c.clientAddr(r))
		var th *Throttled
		if errors.As(err, &th) {
			c.observeLogin("throttled")
			w.Header().Set("Retry-After", fmt.Sprint(max(1, int(th.RetryAfter.Seconds()+0.999))))
			c.renderTOTP(w, r, id, p, th.Status, "Sign-in paused: "+th.Reason+".")
			return
		}
		if err != nil {
			c.Log.Warn("login throttle unavailable; admitting", "err", err)
		}
		defer release() // admitted (with or without Redis): the bcrypt slot is held
	}
	code := strings.ReplaceAll(strings.TrimSpace(r.PostFormValue("code")), " ", "")
	enrolled, err := c.Store.OperatorTOTP(r.Context(), p.OperatorID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	secret := enrolled
	if secret == "" {
		secret = p.Secret
	}
	accepted := false
	var recovery []string
	switch {
	case secret == "":
		// No key on either side: the page was never shown. Start over.
		http.Redirect(w, r, "/ops/login/totp", http.StatusSeeOther)
		return
	case enrolled != "" && len(code) > 6:
		accepted, err = c.Store.UseRecoveryCode(r.Context(), p.OperatorID, recoveryHash(code))
	default:
		step, valid := matchTOTP(secret, code, c.now())
		if valid && enrolled == "" {
			recovery = newRecoveryCodes()
			hashes := make([][]byte, len(recovery))
			for i, rc := range recovery {
				hashes[i] = recoveryHash(rc)
			}
			if err = c.audited(w, r).EnableTOTP(r.Context(), p.OperatorID, secret, hashes); err != nil {
				break
			}
		}
		if valid {
			accepted, err = c.Store.UseTOTPStep(r.Context(), p.OperatorID, step)
		}
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if !accepted {
		c.observeLogin("failed")
		c.auditLogin(w, r, "login.totp_failed", p.Operator, nil)
		if c.Throttle != nil {
			lock, terr := c.Throttle.Failed(r.Context(), p.Operator)
			if terr != nil {
				c.Log.Warn("login throttle unavailable", "err", terr)
			}
			if lock > 0 {
				c.auditLogin(w, r, "login.throttled", p.Operator, map[string]any{"lockedForSeconds": int(lock.Seconds())})
			}
		}
		c.Log.Warn("operator second factor refused", "operator", p.Operator, "remote", c.clientAddr(r))
		c.renderTOTP(w, r, id, p, http.StatusUnauthorized, "That code is wrong, expired or already used.")
		return
	}
	_ = c.Sessions.Redis.Del(r.Context(), c.Sessions.pendingKey(id)).Err()
	http.SetCookie(w, &http.Cookie{Name: PendingCookie, Value: "", Path: "/ops/login", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	if c.Throttle != nil {
		_ = c.Throttle.Succeeded(r.Context(), p.Operator)
	}
	if !c.openSession(w, r, p.OperatorID, p.Operator, p.Addr) {
		return
	}
	if recovery != nil {
		c.render(w, r, "recovery.html", "Recovery codes", map[string]any{"Codes": recovery, "Next": p.Next})
		return
	}
	http.Redirect(w, r, p.Next, http.StatusSeeOther)
}

func subtleEqual(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// templateURL marks the QR code's data: URI as safe for the img src (it is
// built here, never from input).
func templateURL(s string) template.URL { return template.URL(s) } //nolint:gosec

// matchTOTP finds the time step (within one of now) whose code is code.
func matchTOTP(secret, code string, now time.Time) (int64, bool) {
	if len(code) != 6 {
		return 0, false
	}
	for _, off := range []int64{0, -1, 1} {
		at := now.Add(time.Duration(off) * 30 * time.Second)
		want, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err == nil && len(want) == len(code) && subtleEqual(want, code) {
			return at.Unix() / 30, true
		}
	}
	return 0, false
}

// newRecoveryCodes returns RecoveryCodes random codes like "K7QX-M2PD-9VTR".
func newRecoveryCodes() []string {
	out := make([]string, RecoveryCodes)
	for i := range out {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		s := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)[:12]
		out[i] = s[:4] + "-" + s[4:8] + "-" + s[8:12]
	}
	return out
}

// recoveryHash is how a recovery code is stored: dashes, spaces and case
// do not matter.
func recoveryHash(code string) []byte {
	c := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))
	sum := sha256.Sum256([]byte("payrail-recovery|" + c))
	return sum[:]
}
