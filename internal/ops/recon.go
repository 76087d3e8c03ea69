package ops

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

// reconPage lists the newest reconciliation runs with their counts, and
// offers to (re-)run a window.
func (c *Console) reconPage(w http.ResponseWriter, r *http.Request) error {
	runs, err := c.Store.ReconRuns(r.Context(), 50)
	if err != nil {
		return err
	}
	yesterday := c.now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour).Format("2006-01-02")
	c.render(w, r, "recon.html", "Reconciliation", map[string]any{"Runs": runs, "Default": yesterday, "CanRun": c.EnqueueRecon != nil})
	return nil
}

// reconRunPage shows one run and its items (the attention ones first is
// the operator's filter: ?attention=1).
func (c *Console) reconRunPage(w http.ResponseWriter, r *http.Request) error {
	run, err := c.Store.ReconRunByID(r.Context(), r.PathValue("runId"))
	if errors.Is(err, store.ErrNotFound) {
		return payment.Errorf(payment.CodeNotFound, "no such reconciliation run")
	}
	if err != nil {
		return err
	}
	attention := r.URL.Query().Get("attention") != ""
	items, err := c.Store.ReconItems(r.Context(), run.RunID, 0, 500, attention)
	if err != nil {
		return err
	}
	c.render(w, r, "recon_run.html", "Reconciliation "+run.RunID, map[string]any{"Run": run, "Items": items, "Attention": attention, "CanRun": c.EnqueueRecon != nil})
	return nil
}

// reconRerun records a run of the posted window (from, to: UTC dates or
// RFC 3339 times), audited as the operator's, and has a worker run it.
func (c *Console) reconRerun(w http.ResponseWriter, r *http.Request) error {
	if c.EnqueueRecon == nil {
		return payment.Errorf(payment.CodeUnavailable, "reconciliation cannot be started from this console")
	}
	from, to, err := store.ParseReconWindow(strings.TrimSpace(r.PostFormValue("from")), strings.TrimSpace(r.PostFormValue("to")))
	if err != nil {
		return err
	}
	run, _, err := c.audited(w, r).CreateReconRun(r.Context(), from, to, "operator", session(r).sess.Operator)
	if err != nil {
		return err
	}
	// A live run found is enqueued too: a new task takes it over if its
	// worker died.
	if err := c.EnqueueRecon(r.Context(), run.RunID); err != nil {
		return err
	}
	c.Log.Info("operator action", "operator", session(r).sess.Operator, "action", "recon.requested", "run_id", run.RunID, "from", from, "to", to)
	http.Redirect(w, r, "/ops/recon/"+url.PathEscape(run.RunID), http.StatusSeeOther)
	return nil
}
