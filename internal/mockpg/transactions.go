package mockpg

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// txn is one row of the ledger's transaction list: an approval (a card's,
// or a virtual account's deposit) or a cancel, as GET /v1/transactions
// serves it. The list is kept sorted by (At, seq).
type txn struct {
	Key, PaymentKey, OrderID, Method, Status string
	At                                       time.Time
	Amount                                   int64
	seq                                      int64
	deleted                                  bool
}

// Transaction is a row of GET /v1/transactions, Toss-shaped.
type Transaction struct {
	MID            string `json:"mId"`
	TransactionKey string `json:"transactionKey"`
	PaymentKey     string `json:"paymentKey"`
	OrderID        string `json:"orderId"`
	Method         string `json:"method"`
	CustomerKey    string `json:"customerKey"`
	UseEscrow      bool   `json:"useEscrow"`
	ReceiptURL     string `json:"receiptUrl"`
	Status         string `json:"status"`
	TransactionAt  string `json:"transactionAt"`
	Currency       string `json:"currency"`
	Amount         int64  `json:"amount"`
}

// recordTxnLocked appends a transaction at the ledger's now.
func (s *Server) recordTxnLocked(p *payment, key, status string, amount int64) {
	s.insertTxnLocked(&txn{Key: key, PaymentKey: p.PaymentKey, OrderID: p.OrderID, Method: p.Method, Status: status, At: s.ledgerNow(), Amount: amount})
}

func (s *Server) insertTxnLocked(t *txn) {
	s.txnSeq++
	t.seq = s.txnSeq
	if t.Key == "" {
		t.Key = "ttx_" + randomID()
	}
	n := len(s.txns)
	if n == 0 || !t.At.Before(s.txns[n-1].At) {
		s.txns = append(s.txns, t)
	} else {
		i := sort.Search(n, func(i int) bool { return s.txns[i].At.After(t.At) })
		s.txns = append(s.txns, nil)
		copy(s.txns[i+1:], s.txns[i:])
		s.txns[i] = t
	}
	s.txnByKey[t.Key] = t
}

// before reports whether a sorts before b in the list.
func (a *txn) before(b *txn) bool {
	return a.At.Before(b.At) || (a.At.Equal(b.At) && a.seq < b.seq)
}

// handleTransactions is Toss's GET /v1/transactions: rows with
// startDate <= transactionAt < endDate (local date-times, KST), oldest first,
// at most limit (default 100, at most 5000) after startingAfter. Injected
// 5xx faults apply, like on the payment calls.
func (s *Server) handleTransactions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err1 := s.parseLocal(q.Get("startDate"))
	to, err2 := s.parseLocal(q.Get("endDate"))
	if err1 != nil || err2 != nil || !from.Before(to) {
		writeRaw(w, response{http.StatusBadRequest, errBody("INVALID_REQUEST", "startDate and endDate (yyyy-MM-ddTHH:mm:ss) are required, startDate before endDate.")})
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5000 {
			writeRaw(w, response{http.StatusBadRequest, errBody("INVALID_REQUEST", "limit must be 1-5000.")})
			return
		}
		limit = n
	}
	s.mu.Lock()
	if s.rollLocked(s.faults.Error5xxRate) {
		s.noteLocked("fault", "transactions: injected 500")
		s.mu.Unlock()
		writeRaw(w, response{http.StatusInternalServerError, errBody("FAILED_INTERNAL_SYSTEM_PROCESSING", "내부 시스템 처리 작업이 실패했습니다. 잠시 후 다시 시도해주세요.")})
		return
	}
	i := sort.Search(len(s.txns), func(i int) bool { return !s.txns[i].At.Before(from) })
	if after := q.Get("startingAfter"); after != "" {
		a := s.txnByKey[after]
		if a == nil {
			s.mu.Unlock()
			writeRaw(w, response{http.StatusBadRequest, errBody("INVALID_REQUEST", "startingAfter is not a transactionKey.")})
			return
		}
		if j := sort.Search(len(s.txns), func(i int) bool { return a.before(s.txns[i]) }); j > i {
			i = j
		}
	}
	out := make([]Transaction, 0, min(limit, 256))
	for ; i < len(s.txns) && len(out) < limit && s.txns[i].At.Before(to); i++ {
		t := s.txns[i]
		if t.deleted {
			continue
		}
		out = append(out, Transaction{MID: "tmockmid", TransactionKey: t.Key, PaymentKey: t.PaymentKey, OrderID: t.OrderID,
			Method: t.Method, Status: t.Status, TransactionAt: t.At.In(s.kst).Format(timeLayout), Currency: "KRW", Amount: t.Amount})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) parseLocal(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, errors.New("empty")
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.ParseInLocation("2006-01-02T15:04:05", v, s.kst)
}

// Forget removes a payment and its transactions from the books, as if the
// PG had lost it: lookups answer NOT_FOUND_PAYMENT and the list omits it.
// It is how tests make "PAID here, unknown at the PG".
func (s *Server) Forget(paymentKey string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.payments[paymentKey]
	if p == nil {
		return false
	}
	delete(s.payments, paymentKey)
	for _, t := range s.txns {
		if t.PaymentKey == paymentKey {
			t.deleted = true
		}
	}
	s.noteLocked("sandbox", "forgot payment "+paymentKey+" of "+p.OrderID)
	return true
}

// SeedTransaction adds an approval to the books without a session (the
// bench seeds a million, matching the orders it seeds in payrail): the
// payment is DONE, with one approval row at `at`.
func (s *Server) SeedTransaction(paymentKey, orderID string, amount int64, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &payment{PaymentKey: paymentKey, OrderID: orderID, OrderName: "seeded", Status: "DONE", TotalAmount: amount, BalanceAmount: amount,
		RequestedAt: at, ApprovedAt: at, Method: MethodCard}
	s.payments[paymentKey] = p
	s.paidOrder[orderID] = paymentKey
	s.insertTxnLocked(&txn{PaymentKey: paymentKey, OrderID: orderID, Method: MethodCard, Status: "DONE", At: at, Amount: amount})
}

// SeedRow is one approval SeedTransactions adds.
type SeedRow struct {
	PaymentKey string    `json:"paymentKey"`
	OrderID    string    `json:"orderId"`
	Amount     int64     `json:"amount"`
	ApprovedAt time.Time `json:"approvedAt"`
}

// SeedTransactions adds many approvals at once (sorted into the list
// once, not row by row).
func (s *Server) SeedTransactions(rows []SeedRow) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rows {
		p := &payment{PaymentKey: r.PaymentKey, OrderID: r.OrderID, OrderName: "seeded", Status: "DONE", TotalAmount: r.Amount,
			BalanceAmount: r.Amount, RequestedAt: r.ApprovedAt, ApprovedAt: r.ApprovedAt, Method: MethodCard}
		s.payments[r.PaymentKey] = p
		s.paidOrder[r.OrderID] = r.PaymentKey
		s.txnSeq++
		t := &txn{Key: "ttx_seed_" + r.PaymentKey, PaymentKey: r.PaymentKey, OrderID: r.OrderID, Method: MethodCard, Status: "DONE",
			At: r.ApprovedAt, Amount: r.Amount, seq: s.txnSeq}
		s.txns = append(s.txns, t)
		s.txnByKey[t.Key] = t
	}
	sort.Slice(s.txns, func(i, j int) bool { return s.txns[i].before(s.txns[j]) })
	s.noteLocked("sandbox", "seeded "+strconv.Itoa(len(rows))+" approvals")
}

// handleSeedTransactions is POST /sandbox/transactions/seed: NDJSON lines
// of SeedRow (at most 100,000 per request).
func (s *Server) handleSeedTransactions(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20))
	var rows []SeedRow
	for dec.More() {
		var row SeedRow
		if err := dec.Decode(&row); err != nil || row.PaymentKey == "" || !orderIDPattern.MatchString(row.OrderID) || row.Amount <= 0 || row.ApprovedAt.IsZero() {
			sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", "each line is {paymentKey, orderId, amount, approvedAt}")
			return
		}
		if rows = append(rows, row); len(rows) > 100_000 {
			sandboxError(w, http.StatusBadRequest, "INVALID_REQUEST", "at most 100000 rows per request")
			return
		}
	}
	s.SeedTransactions(rows)
	writeJSON(w, http.StatusOK, map[string]int{"seeded": len(rows)})
}
