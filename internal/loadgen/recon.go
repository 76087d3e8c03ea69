package loadgen

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ReconResult is the growth phase's reconciliation: the seeded orders'
// approvals seeded at mockpg too, then one run over their window.
type ReconResult struct {
	Rows          int     `json:"rows"`
	SeedPGSeconds float64 `json:"seedPgSeconds"`
	RunID         string  `json:"runId"`
	Status        string  `json:"status"`
	PGRows        int64   `json:"pgRows"`
	Matched       int64   `json:"matched"`
	Repaired      int     `json:"repaired"`
	Flagged       int     `json:"flagged"`
	Seconds       float64 `json:"seconds"`
	RowsPerSec    float64 `json:"rowsPerSec"`
	// Cost is what the processes spent during the run (the worker's peak
	// RSS is the bounded-memory figure).
	Cost *Cost `json:"cost,omitempty"`
}

// SeedPGBooks gives mockpg an approval for every seeded PAID order (the
// books a real PG would have for them), 50,000 per request.
// Their approvals lie in a window of their own (from 2025-01-01, one a
// second), [from, to).
func SeedPGBooks(ctx context.Context, db *sql.DB, c *Client) (rows int, from, to time.Time, err error) {
	rs, err := db.QueryContext(ctx, `SELECT order_id, payment_key, amount, approved_at FROM orders
WHERE merchant_id = $1 AND status = 'PAID' ORDER BY approved_at`, SeedMerchant)
	if err != nil {
		return 0, from, to, err
	}
	defer rs.Close()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		req, err := http.NewRequestWithContext(ctx, "POST", c.T.MockPGURL+"/sandbox/transactions/seed", bytes.NewReader(buf.Bytes()))
		if err != nil {
			return err
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("mockpg seed: %d %s", resp.StatusCode, b)
		}
		rows += n
		buf.Reset()
		n = 0
		return nil
	}
	for rs.Next() {
		var r struct {
			PaymentKey string    `json:"paymentKey"`
			OrderID    string    `json:"orderId"`
			Amount     int64     `json:"amount"`
			ApprovedAt time.Time `json:"approvedAt"`
		}
		if err := rs.Scan(&r.OrderID, &r.PaymentKey, &r.Amount, &r.ApprovedAt); err != nil {
			return rows, from, to, err
		}
		if from.IsZero() {
			from = r.ApprovedAt
		}
		to = r.ApprovedAt.Add(time.Second)
		if err := enc.Encode(r); err != nil {
			return rows, from, to, err
		}
		if n++; n == 50_000 {
			if err := flush(); err != nil {
				return rows, from, to, err
			}
		}
	}
	if err := rs.Err(); err != nil {
		return rows, from, to, err
	}
	return rows, from, to, flush()
}

// RunRecon has payrail reconcile [from, to) through the admin API and
// follows the run to its end, printing progress to w (nil: none).
func RunRecon(ctx context.Context, c *Client, from, to time.Time, w io.Writer) (ReconResult, error) {
	var res ReconResult
	admin := func(method, path string, body any, out any) error {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.T.APIURL+path, rd)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.T.AdminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.HTTP.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return json.Unmarshal(b, out)
	}
	type run struct {
		RunID  string `json:"runId"`
		Status string `json:"status"`
		PGRows int64  `json:"pgRows"`
		Error  string `json:"error"`
		Counts struct {
			Matched  int64 `json:"matched"`
			Repaired int   `json:"repaired"`
			Flagged  int   `json:"flagged"`
		} `json:"counts"`
	}
	start := time.Now()
	var r run
	if err := admin("POST", "/admin/recon", map[string]string{"from": from.UTC().Format(time.RFC3339Nano), "to": to.UTC().Format(time.RFC3339Nano)}, &r); err != nil {
		return res, err
	}
	for r.Status == "PENDING" || r.Status == "RUNNING" {
		if w != nil {
			fmt.Fprintf(w, "\rreconciliation %s: %d PG rows read, %s", r.RunID, r.PGRows, time.Since(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Second):
		}
		var out struct{ Run run }
		if err := admin("GET", "/admin/recon/"+r.RunID, nil, &out); err != nil {
			return res, err
		}
		r = out.Run
	}
	if w != nil {
		fmt.Fprintln(w)
	}
	res.Seconds = time.Since(start).Seconds()
	res.RunID, res.Status, res.PGRows = r.RunID, r.Status, r.PGRows
	res.Matched, res.Repaired, res.Flagged = r.Counts.Matched, r.Counts.Repaired, r.Counts.Flagged
	if res.Seconds > 0 {
		res.RowsPerSec = float64(r.PGRows) / res.Seconds
	}
	if r.Status != "SUCCEEDED" {
		return res, fmt.Errorf("reconciliation %s %s: %s", r.RunID, r.Status, r.Error)
	}
	return res, nil
}
