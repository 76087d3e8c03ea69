package ops_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// The console's reconciliation: an operator runs a window, the run's page
// shows the repaired console cancel and the flagged payment the PG lost,
// the re-run is audited, and a form without CSRF does nothing.
func TestReconciliationPages(t *testing.T) {
	t.Parallel()
	// The console's own runs only: the worker's daily run of yesterday
	// would otherwise start whenever it likes and fill the empty page.
	sys := setup(t, systest.Options{Worker: true, Env: map[string]string{"PAYRAIL_RECON_DAILY": "false"}})
	m := sys.NewMerchant("")
	pay := func() (systest.Order, string) {
		o := m.CreateOrder(3000)
		key := sys.Session(o)
		if r := m.Confirm(o, key, "Prefer", "wait=10"); r.Status != 200 {
			t.Fatalf("pay: %d", r.Status)
		}
		return o, key
	}
	cancelled, ck := pay()
	lost, lk := pay()
	sys.QuietPGWebhooks()
	if r := sys.PGClient().Cancel(context.Background(), "console", ck, "console", 1000, nil); r.Outcome != pgclient.Approved {
		t.Fatalf("console cancel: %+v", r)
	}
	sys.PG.Forget(lk)
	b := loggedIn(t, sys)
	if p := b.get("/ops/recon"); p.Status != 200 || !strings.Contains(p.Body, `id="no-runs"`) {
		t.Fatalf("recon page before any run: %d", p.Status)
	}
	window := url.Values{"from": {time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}, "to": {time.Now().Add(time.Minute).UTC().Format(time.RFC3339)}}
	if p := b.post("/ops/recon", window); p.Status != http.StatusForbidden {
		t.Fatalf("a run without CSRF answered %d", p.Status)
	}
	if n := sys.Count(`SELECT count(*) FROM recon_runs`); n != 0 {
		t.Fatalf("a refused form recorded %d runs", n)
	}
	window.Set("csrf", b.csrf)
	p := b.post("/ops/recon", window)
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Header.Get("Location"), "/ops/recon/rcn_") {
		t.Fatalf("run: %d %s", p.Status, p.Header.Get("Location"))
	}
	loc := p.Header.Get("Location")
	testenv.Poll(t, 30*time.Second, "the run to succeed", func() bool {
		return sys.Count(`SELECT count(*) FROM recon_runs WHERE status = 'SUCCEEDED'`) == 1
	})
	page := b.get(loc)
	for _, want := range []string{`id="run-status">SUCCEEDED`, `data-class="CANCEL_MISMATCH" data-order="` + cancelled.OrderID, `data-class="MISSING_AT_PG" data-order="` + lost.OrderID, "needs attention 1"} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("run page lacks %q", want)
		}
	}
	if att := b.get(loc + "?attention=1"); strings.Contains(att.Body, cancelled.OrderID) || !strings.Contains(att.Body, lost.OrderID) {
		t.Error("the attention filter shows the repaired item, or hides the flagged one")
	}
	if n := sys.Count(`SELECT count(*) FROM audit_log WHERE action = 'recon.requested' AND actor = 'operator:` + opName + `'`); n != 1 {
		t.Errorf("audit rows for the run = %d", n)
	}
	if list := b.get("/ops/recon"); !strings.Contains(list.Body, strings.TrimPrefix(loc, "/ops/recon/")) {
		t.Error("the runs list does not show the run")
	}
}
