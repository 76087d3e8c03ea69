package httpapi

import (
	"net/http"
	"strconv"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

// listCallbacks answers GET /v1/callbacks?orderId=&limit=: the merchant's
// callbacks (of one order, when given), newest first, with their attempts.
// Another merchant's order yields an empty list.
func (s *Server) listCallbacks(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	f := store.CallbackFilter{MerchantID: merchantID(r), OrderID: q.Get("orderId"), Limit: 100}
	if f.OrderID != "" && !payment.ValidID(f.OrderID) {
		writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "orderId must be 6–64 characters of A–Z, a–z, 0–9, _ and -"))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "limit must be 1–200"))
			return
		}
		f.Limit = n
	}
	cbs, err := s.Store.Callbacks(ctx, f)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"callbacks": cbs})
}

// redeliverCallback answers POST /v1/callbacks/{callbackId}/redeliver with
// 202: the callback is due now (a DELIVERED or DEAD one in a new attempt
// generation, its schedule restarted). Its merchant's lane is woken after
// the commit; if that enqueue is lost, the sweep wakes it.
func (s *Server) redeliverCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("callbackId")
	if id == "" || len(id) > 64 {
		writeError(ctx, w, payment.Errorf(payment.CodeCallbackNotFound, "callback not found"))
		return
	}
	c, err := s.Store.RedeliverCallback(ctx, merchantID(r), id)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	logger(ctx).Info("callback redelivery requested", "callback_id", c.CallbackID, "attempt", c.Attempt)
	writeJSON(w, http.StatusAccepted, c)
}
