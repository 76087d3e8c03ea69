package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

type createOrderRequest struct {
	MerchantOrderID *string `json:"merchantOrderId"`
	Amount          *int64  `json:"amount"`
	Currency        *string `json:"currency"`
	OrderName       *string `json:"orderName"`
	SuccessURL      *string `json:"successUrl"`
	FailURL         *string `json:"failUrl"`
}

type createdOrder struct {
	payment.Order
	PaymentToken string `json:"paymentToken"`
	CheckoutURL  string `json:"checkoutUrl"`
}

func validRedirect(u *string) bool {
	if u == nil {
		return true
	}
	pu, err := url.Parse(*u)
	return err == nil && (pu.Scheme == "https" || pu.Scheme == "http") && pu.Host != "" && len(*u) <= 2048
}

func (s *Server) createOrder(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if s.refuseIfOverloaded(w, r) {
		return
	}
	var req createOrderRequest
	if err := decodeJSON(r, body(r), &req); err != nil {
		writeError(ctx, w, err)
		return
	}
	bad := func(format string, args ...any) {
		writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, format, args...))
	}
	switch {
	case req.Amount == nil:
		bad("amount is required")
		return
	case *req.Amount < payment.MinAmount || *req.Amount > payment.MaxAmount:
		bad("amount must be an integer from %d to %d (minor units)", payment.MinAmount, payment.MaxAmount)
		return
	case req.OrderName == nil || strings.TrimSpace(*req.OrderName) == "" || len(*req.OrderName) > 100:
		bad("orderName is required (1–100 characters)")
		return
	case req.MerchantOrderID != nil && !payment.ValidID(*req.MerchantOrderID):
		bad("merchantOrderId must be 6–64 characters of A–Z, a–z, 0–9, _ and -")
		return
	case req.Currency != nil && *req.Currency != "KRW":
		bad("currency must be KRW")
		return
	case !validRedirect(req.SuccessURL) || !validRedirect(req.FailURL):
		bad("successUrl and failUrl must be absolute http(s) URLs")
		return
	}
	token := store.NewSecret("pt_")
	o, ok := idempotent(s, w, r, false, func(fin *store.IdemFinish[payment.Order]) (payment.Order, error) {
		return s.Store.CreateOrder(ctx, store.NewOrder{
			MerchantID: merchantID(r), MerchantOrderID: req.MerchantOrderID, Amount: *req.Amount, Currency: "KRW",
			OrderName: strings.TrimSpace(*req.OrderName), SuccessURL: req.SuccessURL, FailURL: req.FailURL,
			TokenHash: store.HashToken(token), TTL: s.OrderTTL,
		}, fin)
	}, func(o payment.Order) (reply, error) {
		return makeReply(http.StatusCreated, map[string]string{"Location": "/v1/orders/" + o.OrderID}, s.created(o, token))
	})
	if !ok {
		return
	}
	c := s.created(o, token)
	w.Header().Set("Location", "/v1/orders/"+c.OrderID)
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) created(o payment.Order, token string) createdOrder {
	q := url.Values{"orderId": {o.OrderID}, "amount": {strconv.FormatInt(o.Amount, 10)}, "orderName": {o.OrderName}}
	if o.SuccessURL != nil {
		q.Set("successUrl", *o.SuccessURL)
	}
	if o.FailURL != nil {
		q.Set("failUrl", *o.FailURL)
	}
	return createdOrder{Order: o, PaymentToken: token, CheckoutURL: s.CheckoutURL + "?" + q.Encode()}
}

func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) {
	o, err := s.Store.Order(r.Context(), merchantID(r), r.PathValue("orderId"), true)
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

// getHistory pages through an order's history (GET /v1/orders/{id} carries
// the first page), so no read of an order grows without bound.
func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	limit := store.HistoryPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.HistoryPageSize {
			writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "limit must be 1–%d", store.HistoryPageSize))
			return
		}
		limit = n
	}
	row, err := s.Store.OrderRow(ctx, merchantID(r), r.PathValue("orderId"))
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	entries, next, err := s.Store.History(ctx, row.OrderID, q.Get("cursor"), limit)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	resp := map[string]any{"history": entries, "nextCursor": nil}
	if next != "" {
		resp["nextCursor"] = next
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) getPayment(w http.ResponseWriter, r *http.Request) {
	o, err := s.Store.OrderByPaymentKey(r.Context(), merchantID(r), r.PathValue("paymentKey"))
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) listOrders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.ListFilter{Status: q.Get("status"), MerchantOrderID: q.Get("merchantOrderId"), Cursor: q.Get("cursor")}
	if f.Status != "" && !payment.Status(f.Status).Valid() {
		writeError(r.Context(), w, payment.Errorf(payment.CodeInvalidRequest, "status must be one of the order statuses"))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(r.Context(), w, payment.Errorf(payment.CodeInvalidRequest, "limit must be 1–100"))
			return
		}
		f.Limit = n
	}
	orders, next, err := s.Store.ListOrders(r.Context(), merchantID(r), f)
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	resp := map[string]any{"orders": orders, "nextCursor": nil}
	if next != "" {
		resp["nextCursor"] = next
	}
	writeJSON(w, http.StatusOK, resp)
}

type confirmRequest struct {
	PaymentKey   *string `json:"paymentKey"`
	Amount       *int64  `json:"amount"`
	PaymentToken *string `json:"paymentToken"`
}

type confirmAnswer struct {
	payment.Order
	Result payment.ConfirmResult `json:"result"`
}

func (s *Server) confirm(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req confirmRequest
	if err := decodeJSON(r, body(r), &req); err != nil {
		writeError(ctx, w, err)
		return
	}
	if req.PaymentKey == nil || *req.PaymentKey == "" || len(*req.PaymentKey) > 200 || req.Amount == nil || req.PaymentToken == nil || *req.PaymentToken == "" {
		writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "paymentKey (≤200 chars), amount and paymentToken are required"))
		return
	}
	orderID := r.PathValue("orderId")
	wait := preferWait(r)
	var ticket *Ticket
	if wait > 0 && s.Waiter != nil {
		// Before the commit: the settlement it waits for is then always
		// notified to it (no read needed to cover the gap).
		ticket = s.Waiter.Register(orderID)
		defer ticket.Cancel()
	}
	cr, ok := idempotent(s, w, r, false, func(fin *store.IdemFinish[store.ConfirmResult]) (store.ConfirmResult, error) {
		return s.Store.RequestConfirm(ctx, merchantID(r), orderID, *req.PaymentKey, *req.PaymentToken, *req.Amount, fin)
	}, confirmReply)
	if !ok {
		return
	}
	if cr.Enqueue {
		// After commit, by design. A lost enqueue is recovered by the sweep.
		if err := s.Queue.Confirm(ctx, merchantID(r), cr.Order.OrderID, cr.Order.Version, cr.Accepted); err != nil {
			logger(ctx).Warn("enqueue confirm failed; the sweep will re-enqueue", "order_id", cr.Order.OrderID, "err", err)
		}
	}
	if cr.Result == payment.ConfirmAccepted {
		if wait > 0 && s.Waiter != nil {
			w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
			leaveInFlight(r) // watching state holds nothing shared
			if o, settled := ticket.Wait(ctx, wait); settled {
				cr.Order = o
				// Settled but not paid (declined, or canceled at the PG
				// before we confirmed) is a failure for the buyer.
				cr.Result = payment.ConfirmFailure
				switch o.Status {
				case payment.Paid, payment.PartiallyCanceled:
					cr.Result = payment.ConfirmSuccess
				case payment.AwaitingDeposit:
					// Not paid, not failed: the buyer transfers to the
					// account in o.VirtualAccount.
					cr.Result = payment.ConfirmAwaitingDeposit
				}
			}
		}
	}
	rp, err := confirmReply(cr)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	rp.write(w)
}

func confirmReply(cr store.ConfirmResult) (reply, error) {
	if cr.Result == payment.ConfirmAccepted {
		loc := "/v1/orders/" + cr.Order.OrderID
		return makeReply(http.StatusAccepted, map[string]string{"Location": loc},
			map[string]string{"orderId": cr.Order.OrderID, "status": string(payment.Confirming), "result": string(payment.ConfirmAccepted)})
	}
	return makeReply(http.StatusOK, nil, confirmAnswer{Order: cr.Order, Result: cr.Result})
}

// preferWait parses `Prefer: wait=N` (RFC 7240), capped at 30 s.
func preferWait(r *http.Request) time.Duration {
	for _, v := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "wait") {
				continue
			}
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
			if err != nil || n <= 0 {
				return 0
			}
			if n > 30 {
				n = 30
			}
			return time.Duration(n) * time.Second
		}
	}
	return 0
}
