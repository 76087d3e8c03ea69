package pgclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Transaction is one row of the PG's transaction list (Toss's
// GET /v1/transactions, 2nd-hand): one per approval and one per cancel.
type Transaction struct {
	MID            string `json:"mId"`
	TransactionKey string `json:"transactionKey"`
	PaymentKey     string `json:"paymentKey"`
	OrderID        string `json:"orderId"`
	Method         string `json:"method"`
	// Status is the payment status the row records: DONE for an approval
	// (a card's, or a virtual account's deposit), CANCELED or
	// PARTIAL_CANCELED for a cancel.
	Status        Status `json:"status"`
	TransactionAt string `json:"transactionAt"`
	Currency      string `json:"currency"`
	Amount        int64  `json:"amount"`
}

// IsCancel reports whether the row records a cancel (money back), not an
// approval.
func (t Transaction) IsCancel() bool {
	return t.Status == StatusCanceled || t.Status == StatusPartialCanceled
}

// MaxTransactionsPage is the largest page Toss serves.
const MaxTransactionsPage = 5000

// maxListBody caps a transactions page: 5,000 rows of about 300 bytes.
const maxListBody = 8 << 20

// TransactionsPage is the classified answer of one page.
type TransactionsPage struct {
	Outcome      Outcome
	Transactions []Transaction
	Code         string
	Message      string
	HTTPStatus   int
	Err          error
	Latency      time.Duration
}

// kst is the PG's local time; its list takes local date-times.
var kst = time.FixedZone("KST", 9*60*60)

// LocalDateTime renders t as the list's startDate/endDate (KST, no offset).
func LocalDateTime(t time.Time) string { return t.In(kst).Format("2006-01-02T15:04:05") }

// Transactions reads one page of the PG's transactions in [from, to):
// at most limit rows (1…5000) after the row startingAfter ("" from the
// start), oldest first. Approved is a well-formed page (maybe empty); a
// lookup has no side effect, so the caller simply retries anything else.
// Like every call, it never retries on its own.
func (c *Client) Transactions(ctx context.Context, from, to time.Time, startingAfter string, limit int) TransactionsPage {
	start := time.Now()
	if limit < 1 || limit > MaxTransactionsPage {
		return TransactionsPage{Outcome: Misconfigured, Code: CodeInvalidRequest, Message: "limit must be 1-5000"}
	}
	q := url.Values{"startDate": {LocalDateTime(from)}, "endDate": {LocalDateTime(to)}, "limit": {strconv.Itoa(limit)}}
	if startingAfter != "" {
		q.Set("startingAfter", startingAfter)
	}
	status, raw, readErr, failed := c.send(ctx, http.MethodGet, "/v1/transactions?"+q.Encode(), "", nil, maxListBody)
	page := TransactionsPage{Latency: time.Since(start)}
	if failed != nil {
		page.Outcome, page.Code, page.Message, page.Err = failed.Outcome, failed.Code, failed.Message, failed.Err
		return page
	}
	page.HTTPStatus = status
	if status < 200 || status >= 300 {
		// Every refusal means what it means for a payment call.
		r := classifyAnswer(status, raw, readErr)
		page.Outcome, page.Code, page.Message, page.Err = r.Outcome, r.Code, r.Message, r.Err
		return page
	}
	if readErr != nil {
		page.Outcome, page.Err = Unknown, fmt.Errorf("read transactions: %w", readErr)
		return page
	}
	if err := json.Unmarshal(raw, &page.Transactions); err != nil {
		page.Outcome, page.Err = Unknown, fmt.Errorf("garbled transactions page: %w", err)
		return page
	}
	for i, t := range page.Transactions {
		if t.TransactionKey == "" || t.PaymentKey == "" || !t.Status.Known() || t.Amount < 0 {
			page.Outcome, page.Transactions = Unknown, nil
			page.Err = fmt.Errorf("transactions row %d is malformed: %w", i, errors.New("key, paymentKey, status or amount"))
			return page
		}
	}
	page.Outcome = Approved
	return page
}

// ParseTransactionTime reads a row's transactionAt (ISO 8601 with offset,
// or a local date-time in KST).
func ParseTransactionTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.ParseInLocation("2006-01-02T15:04:05", s, kst)
}
