package httpapi

import (
	"net/http"
	"strings"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

type cancelRequest struct {
	Reason *string `json:"reason"`
	Amount *int64  `json:"amount"`
	// RefundReceiveAccount is required to refund a deposited virtual
	// account (REFUND_ACCOUNT_REQUIRED), ignored otherwise.
	RefundReceiveAccount *payment.RefundAccount `json:"refundReceiveAccount"`
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req cancelRequest
	if err := decodeJSON(r, body(r), &req); err != nil {
		writeError(ctx, w, err)
		return
	}
	if req.Reason == nil || strings.TrimSpace(*req.Reason) == "" || len(*req.Reason) > 200 {
		writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "reason is required (1–200 characters)"))
		return
	}
	var amount int64
	if req.Amount != nil {
		if *req.Amount < payment.MinAmount || *req.Amount > payment.MaxAmount {
			writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "amount must be a positive integer (minor units)"))
			return
		}
		amount = *req.Amount
	}
	if a := req.RefundReceiveAccount; a != nil {
		a.HolderName = strings.TrimSpace(a.HolderName)
		if err := a.Validate(); err != nil {
			writeError(ctx, w, err)
			return
		}
	}
	orderID := r.PathValue("orderId")
	c, ok := idempotent(s, w, r, true, func(fin *store.IdemFinish[store.Cancel]) (store.Cancel, error) {
		return s.Store.RequestCancel(ctx, merchantID(r), orderID, strings.TrimSpace(*req.Reason), amount, req.RefundReceiveAccount, fin)
	}, cancelReply)
	if !ok {
		return
	}
	if err := s.Queue.Cancel(ctx, c.CancelID); err != nil {
		logger(ctx).Warn("enqueue cancel failed; the sweep will re-enqueue", "cancel_id", c.CancelID, "err", err)
	}
	rp, err := cancelReply(c)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	rp.write(w)
}

func cancelReply(c store.Cancel) (reply, error) {
	return makeReply(http.StatusAccepted, map[string]string{"Location": "/v1/orders/" + c.OrderID + "/cancels/" + c.CancelID},
		map[string]any{"cancelId": c.CancelID, "orderId": c.OrderID, "amount": c.Amount, "status": c.Status})
}

func (s *Server) getCancel(w http.ResponseWriter, r *http.Request) {
	c, err := s.Store.CancelByID(r.Context(), merchantID(r), r.PathValue("orderId"), r.PathValue("cancelId"))
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}
