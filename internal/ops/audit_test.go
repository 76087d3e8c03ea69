package ops_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/systest"
)

// Every privileged change writes exactly one audit row, in its own
// transaction, naming who did it, from where and in which request; a
// refused change writes none; sign-ins are recorded; the console and the
// admin API list the trail; and nobody can rewrite it.
func TestEveryPrivilegedActionIsAudited(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{}) // creates alice.ops: operator.created
	rows := func(actor, action, target string) int {
		return sys.Count(`SELECT count(*) FROM audit_log WHERE actor = $1 AND action = $2 AND target = $3 AND request_id <> '' AND source_addr <> ''`, actor, action, target)
	}
	total := func() int { return sys.Count(`SELECT count(*) FROM audit_log`) }
	const admin = "admin token"
	if rows(admin, "operator.created", "operator:"+opName) != 1 {
		t.Fatal("creating an operator left no audit row")
	}
	m := sys.NewMerchant("") // POST /admin/merchants
	if rows(admin, "merchant.created", m.MerchantID) != 1 {
		t.Fatal("creating a merchant left no audit row")
	}
	if code, b := sys.Admin("PATCH", "/admin/merchants/"+m.MerchantID, map[string]any{"rateLimit": map[string]int{"perSecond": 7, "burst": 9}}); code != 200 {
		t.Fatalf("patch: %d %s", code, b)
	}
	if n := sys.Count(`SELECT count(*) FROM audit_log WHERE action = 'merchant.updated' AND target = $1
  AND before->>'rateLimit' IS NULL AND before->>'merchantId' = $1 AND (after->'rateLimit'->>'perSecond')::int = 7`, m.MerchantID); n != 1 {
		t.Fatalf("the rate-limit change's row with before and after: %d", n)
	}
	code, b := sys.Admin("POST", "/admin/merchants/"+m.MerchantID+"/secrets", map[string]string{"kind": "client"})
	if code != 201 {
		t.Fatalf("add secret: %d %s", code, b)
	}
	if rows(admin, "secret.added", m.MerchantID) != 1 {
		t.Fatal("adding a secret left no audit row")
	}
	if n := sys.Count(`SELECT count(*) FROM audit_log WHERE after::text LIKE '%sk\_%' OR after::text LIKE '%whsec%' OR after::text LIKE '%$2a$%'`); n != 0 {
		t.Fatalf("%d audit rows hold a secret or a hash", n)
	}
	// Refused changes write nothing.
	before := total()
	if code, _ := sys.Admin("PATCH", "/admin/merchants/mer_nosuchmerchant0000", map[string]any{"status": "SUSPENDED"}); code != 404 {
		t.Fatalf("patch unknown: %d", code)
	}
	if code, _ := sys.Admin("POST", "/admin/operators", map[string]string{"name": opName, "password": opPassword}); code != 409 {
		t.Fatalf("duplicate operator: %d", code)
	}
	if total() != before {
		t.Fatalf("refused changes wrote %d audit rows", total()-before)
	}
	if code, b := sys.Admin("PATCH", "/admin/operators/"+opName, map[string]string{"status": "SUSPENDED"}); code != 200 {
		t.Fatalf("suspend: %d %s", code, b)
	}
	sys.Admin("PATCH", "/admin/operators/"+opName, map[string]string{"status": "ACTIVE"})
	if n := sys.Count(`SELECT count(*) FROM audit_log WHERE action = 'operator.status' AND target = $1`, "operator:"+opName); n != 2 {
		t.Fatalf("suspend and reinstate: %d rows, want 2", n)
	}

	// The console: sign-ins and actions, as the operator.
	if p := newBrowser(t, sys.URL).login(opName, "not the password"); p.Status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", p.Status)
	}
	br := loggedIn(t, sys)
	op := "operator:" + opName
	if rows(op, "login.failed", op) != 1 || rows(op, "login.succeeded", op) != 1 {
		t.Fatal("sign-ins are not audited")
	}
	_, cbID := deadCallback(t, sys, m)
	if p := br.post("/ops/callbacks/"+cbID+"/redeliver", url.Values{"csrf": {br.csrf}}); p.Status != http.StatusSeeOther {
		t.Fatalf("redeliver: %d", p.Status)
	}
	if p := br.post("/ops/endpoints/"+m.MerchantID+"/probe", url.Values{"csrf": {br.csrf}}); p.Status != http.StatusSeeOther {
		t.Fatalf("probe: %d", p.Status)
	}
	if rows(op, "callback.redelivered", cbID) != 1 || rows(op, "endpoint.probed", m.MerchantID) != 1 {
		t.Fatal("console actions are not audited under the operator")
	}
	// A refused console action (no CSRF token) writes nothing.
	before = total()
	if p := br.post("/ops/endpoints/"+m.MerchantID+"/probe", url.Values{}); p.Status != http.StatusForbidden {
		t.Fatalf("probe without a token: %d", p.Status)
	}
	if total() != before {
		t.Fatal("a refused console action was audited")
	}

	// Listed in the console (filtered) and by the admin API.
	page := br.get("/ops/audit?actor=" + url.QueryEscape(op))
	if page.Status != 200 || !strings.Contains(page.Body, "callback.redelivered") || strings.Contains(page.Body, "merchant.created") {
		t.Fatalf("audit page filtered by actor: %d", page.Status)
	}
	code, b = sys.Admin("GET", "/admin/audit?action=secret.added", nil)
	if code != 200 || !strings.Contains(string(b), `"action":"secret.added"`) || strings.Contains(string(b), "merchant.created") {
		t.Fatalf("GET /admin/audit: %d %s", code, b)
	}

	// Append-only, for every role (the test connects as a superuser).
	for _, q := range []string{`UPDATE audit_log SET actor = 'someone else'`, `DELETE FROM audit_log`, `TRUNCATE audit_log`} {
		if _, err := sys.DB.DB.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want the append-only refusal", q, err)
		}
	}
}
