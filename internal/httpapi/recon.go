package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

// ReconStore is what the admin API's reconciliation reads and writes.
type ReconStore interface {
	CreateReconRun(ctx context.Context, from, to time.Time, trigger, by string) (store.ReconRun, bool, error)
	ReconRunByID(ctx context.Context, runID string) (store.ReconRun, error)
	ReconRuns(ctx context.Context, limit int) ([]store.ReconRun, error)
	ReconItems(ctx context.Context, runID string, after int64, limit int, attentionOnly bool) ([]store.ReconItem, error)
}

// reconEnqueuer is the queue's reconciliation task (queue.Client).
type reconEnqueuer interface {
	Recon(ctx context.Context, runID string) error
}

// reconWait is how long POST /admin/recon waits for the run to end before
// answering 202 with its Location.
const reconWait = 10 * time.Second

func (s *Server) reconStore() (ReconStore, bool) {
	rs, ok := s.Store.(ReconStore)
	return rs, ok
}

// startRecon is POST /admin/recon {from, to}: records a run (or finds the
// live one of that window), has a worker run it, and answers 200 with the
// run once it ends within reconWait, else 202 with its Location.
func (s *Server) startRecon(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req struct {
		From *string `json:"from"`
		To   *string `json:"to"`
	}
	if err := decodeJSON(r, body(r), &req); err != nil {
		writeError(ctx, w, err)
		return
	}
	if req.From == nil || req.To == nil {
		writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "from and to are required"))
		return
	}
	from, to, err := store.ParseReconWindow(*req.From, *req.To)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	rs, ok := s.audited(r).(ReconStore)
	q, qok := s.Queue.(reconEnqueuer)
	if !ok || !qok {
		writeError(ctx, w, payment.Errorf(payment.CodeUnavailable, "reconciliation is not available here"))
		return
	}
	run, _, err := rs.CreateReconRun(ctx, from, to, "admin", "admin token")
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	// Also for a live run found: its task may be gone with a killed
	// worker; a new one takes the run over once its heartbeat is stale.
	if err := q.Recon(ctx, run.RunID); err != nil {
		writeError(ctx, w, err)
		return
	}
	leaveInFlight(r)
	deadline := time.Now().Add(reconWait)
	for run.Status == store.ReconPending || run.Status == store.ReconRunning {
		if time.Now().After(deadline) {
			w.Header().Set("Location", "/admin/recon/"+run.RunID)
			writeJSON(w, http.StatusAccepted, run)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		if run, err = rs.ReconRunByID(ctx, run.RunID); err != nil {
			writeError(ctx, w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, run)
}

// getRecon is GET /admin/recon/{runId}?after=&attention=: the run and a
// page of its items.
func (s *Server) getRecon(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rs, ok := s.reconStore()
	if !ok {
		writeError(ctx, w, payment.Errorf(payment.CodeUnavailable, "reconciliation is not available here"))
		return
	}
	run, err := rs.ReconRunByID(ctx, r.PathValue("runId"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(ctx, w, payment.Errorf(payment.CodeNotFound, "no such reconciliation run"))
		return
	} else if err != nil {
		writeError(ctx, w, err)
		return
	}
	var after int64
	if v := r.URL.Query().Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "after is an item id"))
			return
		}
	}
	items, err := rs.ReconItems(ctx, run.RunID, after, 500, r.URL.Query().Get("attention") != "")
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	out := map[string]any{"run": run, "items": items}
	if len(items) == 500 {
		out["nextAfter"] = items[len(items)-1].ItemID
	}
	writeJSON(w, http.StatusOK, out)
}

// listRecon is GET /admin/recon: the newest runs.
func (s *Server) listRecon(w http.ResponseWriter, r *http.Request) {
	rs, ok := s.reconStore()
	if !ok {
		writeError(r.Context(), w, payment.Errorf(payment.CodeUnavailable, "reconciliation is not available here"))
		return
	}
	runs, err := rs.ReconRuns(r.Context(), 50)
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": runs})
}
