package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/secretbox"
)

// Cancel is a merchant's cancel request as the API shows it.
type Cancel struct {
	CancelID         string               `json:"cancelId" db:"cancel_id"`
	OrderID          string               `json:"orderId" db:"order_id"`
	MerchantID       string               `json:"-" db:"merchant_id"`
	Amount           int64                `json:"amount" db:"amount"`
	Reason           string               `json:"reason" db:"reason"`
	Status           payment.CancelStatus `json:"status" db:"status"`
	PGIdempotencyKey string               `json:"-" db:"pg_idempotency_key"`
	FailureCode      *string              `json:"failureCode" db:"failure_code"`
	FailureMessage   *string              `json:"failureMessage" db:"failure_message"`
	Attempts         int                  `json:"attempts" db:"attempts"`
	// NeedsReconciliation: the PG's answer stayed unknown past the session
	// window; the cancel is reconciled by lookup and shown to operators.
	NeedsReconciliation bool      `json:"needsReconciliation" db:"needs_reconciliation"`
	CreatedAt           time.Time `json:"createdAt" db:"created_at"`
	UpdatedAt           time.Time `json:"updatedAt" db:"updated_at"`
	// RefundAccountMasked is the refund account as the merchant may see it
	// again (bank, last four digits, first character of the holder).
	RefundAccountMasked map[string]any `json:"refundReceiveAccount,omitempty" db:"-"`
	// RefundAccount is the account in clear, for the PG call only; read by
	// CancelAnyMerchant (workers), never serialised.
	RefundAccount *payment.RefundAccount `json:"-" db:"-"`

	RefundKeyID      *string `json:"-" db:"refund_account_key_id"`
	RefundAADVersion *int    `json:"-" db:"refund_account_aad_version"`
	RefundSealed     []byte  `json:"-" db:"refund_account"`
}

const cancelColumns = `cancel_id, order_id, merchant_id, amount, reason, status, pg_idempotency_key, failure_code, failure_message, attempts, needs_reconciliation, created_at, updated_at,
refund_account_key_id, refund_account_aad_version, refund_account`

// openRefundAccount fills c.RefundAccount (and the masked form) from its
// sealed column.
func (s *Store) openRefundAccount(c *Cancel) error {
	if c.RefundKeyID == nil || c.RefundAADVersion == nil || len(c.RefundSealed) == 0 {
		return nil
	}
	aad, err := refundAccountAAD(*c.RefundAADVersion, c.CancelID)
	if err != nil {
		return err
	}
	pt, err := s.keys.Decrypt(*c.RefundKeyID, c.RefundSealed, aad)
	if err != nil {
		return fmt.Errorf("open refund account of %s: %w", c.CancelID, err)
	}
	var a payment.RefundAccount
	if err := json.Unmarshal(pt, &a); err != nil {
		return fmt.Errorf("refund account of %s: %w", c.CancelID, err)
	}
	c.RefundAccount, c.RefundAccountMasked = &a, a.Masked()
	return nil
}

func (s *Store) sealRefundAccount(cancelID string, a *payment.RefundAccount) (keyID *string, v *int, ct []byte, err error) {
	if a == nil {
		return nil, nil, nil, nil
	}
	pt, err := json.Marshal(a)
	if err != nil {
		return nil, nil, nil, err
	}
	aad, err := refundAccountAAD(secretbox.AADVersion, cancelID)
	if err != nil {
		return nil, nil, nil, err
	}
	id, ct, err := s.keys.Encrypt(pt, aad)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("seal refund account: %w", err)
	}
	ver := secretbox.AADVersion
	return &id, &ver, ct, nil
}

const sqlRequestCancelUpdateOrders = `UPDATE orders SET reserved_cancel_amount = reserved_cancel_amount + $3, version = version + 1, updated_at = now()
WHERE order_id = $1 AND version = $2 AND (status IN ('PAID', 'PARTIALLY_CANCELED', 'AWAITING_DEPOSIT')) IS TRUE` // by primary key only (package doc)

const sqlRequestCancelInsertCancels = `INSERT INTO cancels (cancel_id, order_id, merchant_id, amount, reason, pg_idempotency_key,
    refund_account_key_id, refund_account_aad_version, refund_account)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ` + cancelColumns

// RequestCancel reserves amount (0 = all that remains) on a PAID or
// PARTIALLY_CANCELED order and records a PENDING cancel, in one fenced
// transaction: pending cancels count, so concurrent requests can never
// reserve more than the order holds. ORDER_NOT_FOUND, ORDER_NOT_CANCELABLE,
// CANCEL_AMOUNT_EXCEEDED.
//
// A virtual account waiting for its deposit (AWAITING_DEPOSIT) is
// cancelled whole and needs no refund account (any given is not kept); a
// deposited one needs refund, the buyer's account the PG sends the money
// back to (REFUND_ACCOUNT_REQUIRED without it), stored sealed and shown
// only masked.
func (s *Store) RequestCancel(ctx context.Context, merchantID, orderID, reason string, amount int64, refund *payment.RefundAccount, fin *IdemFinish[Cancel]) (Cancel, error) {
	if err := scoped(merchantID); err != nil {
		return Cancel{}, err
	}
	var c Cancel
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		row, err := s.orderRow(ctx, tx, merchantID, orderID, true)
		if err != nil {
			return err
		}
		st := payment.Status(row.Status)
		if st != payment.Paid && st != payment.PartiallyCanceled && st != payment.AwaitingDeposit {
			return payment.Errorf(payment.CodeOrderNotCancelable, "order is %s; only PAID, PARTIALLY_CANCELED or AWAITING_DEPOSIT orders can be canceled", st)
		}
		remaining := row.Amount - row.CanceledAmount - row.ReservedCancelAmount
		if amount == 0 {
			amount = remaining
		}
		if amount <= 0 || amount > remaining {
			return payment.Errorf(payment.CodeCancelAmountExceeded, "%d remains cancelable (canceled %d, pending %d)", remaining, row.CanceledAmount, row.ReservedCancelAmount)
		}
		deposited := row.Method != nil && *row.Method == payment.MethodVirtualAccount && st != payment.AwaitingDeposit
		switch {
		case st == payment.AwaitingDeposit:
			if amount != row.Amount {
				return payment.Errorf(payment.CodeCancelAmountExceeded, "a virtual account is cancelled whole before its deposit (%d)", row.Amount)
			}
			refund = nil // nothing was paid: nothing to refund
		case deposited && refund == nil:
			return payment.Errorf(payment.CodeRefundAccountRequired, "a deposited virtual account is refunded by bank transfer: refundReceiveAccount {bank, accountNumber, holderName} is required")
		case !deposited:
			refund = nil // a card refund goes back to the card
		}
		res, err := tx.ExecContext(ctx, sqlRequestCancelUpdateOrders, orderID, row.Version, amount)
		if err != nil {
			return fmt.Errorf("reserve cancel: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrVersionConflict
		}
		id := NewID("cnl_", 20)
		keyID, ver, sealed, err := s.sealRefundAccount(id, refund)
		if err != nil {
			return err
		}
		if err := tx.GetContext(ctx, &c, sqlRequestCancelInsertCancels, id, orderID, row.MerchantID, amount, reason, payment.CancelIdempotencyKey(id),
			keyID, ver, sealed); err != nil {
			return fmt.Errorf("insert cancel: %w", err)
		}
		details := map[string]any{"cancelId": id, "amount": amount, "reason": reason}
		if refund != nil {
			c.RefundAccountMasked = refund.Masked()
			details["refundReceiveAccount"] = c.RefundAccountMasked
		}
		if err := appendLogTx(ctx, tx, orderID, "cancel.requested", nil, nil, "merchant", details); err != nil {
			return err
		}
		return fin.finish(ctx, tx, s, c)
	})
	return c, err
}

// CancelByID returns one of the merchant's order's cancels.
// CANCEL_NOT_FOUND when absent, another order's or another merchant's;
// ErrUnscoped without a merchant id.
func (s *Store) CancelByID(ctx context.Context, merchantID, orderID, cancelID string) (Cancel, error) {
	if err := scoped(merchantID); err != nil {
		return Cancel{}, err
	}
	return s.cancelByID(ctx, merchantID, orderID, cancelID)
}

// CancelAnyMerchant returns a cancel by its id alone (workers).
// CANCEL_NOT_FOUND when absent.
func (s *Store) CancelAnyMerchant(ctx context.Context, cancelID string) (Cancel, error) {
	return s.cancelByID(ctx, anyMerchant, "", cancelID)
}

const sqlCancelByID = `SELECT ` + cancelColumns + ` FROM cancels WHERE cancel_id = $1 AND (($2 = '' OR order_id = $2) AND ($3 = '' OR merchant_id = $3)) IS TRUE` // by primary key only (package doc)

func (s *Store) cancelByID(ctx context.Context, merchantID, orderID, cancelID string) (Cancel, error) {
	var c Cancel
	err := s.db.GetContext(ctx, &c, sqlCancelByID, cancelID, orderID, merchantID)
	if errors.Is(err, sql.ErrNoRows) {
		return c, payment.Errorf(payment.CodeCancelNotFound, "cancel not found")
	}
	if err != nil {
		return c, err
	}
	return c, s.openRefundAccount(&c)
}

const sqlCancelsOfOrder = `SELECT ` + cancelColumns + ` FROM cancels WHERE order_id = $1 ORDER BY created_at`

// CancelsOfOrder lists an order's cancels, oldest first.
func (s *Store) CancelsOfOrder(ctx context.Context, orderID string) ([]Cancel, error) {
	var cs []Cancel
	err := s.db.SelectContext(ctx, &cs, sqlCancelsOfOrder, orderID)
	return cs, err
}

const sqlRecordCancelAttempt = `UPDATE cancels SET attempts = attempts + 1, needs_reconciliation = needs_reconciliation OR $2, updated_at = now()
WHERE cancel_id = $1 AND (status = 'PENDING') IS TRUE` // by primary key only (package doc)

// RecordCancelAttempt notes a PG cancel call whose outcome is not final.
func (s *Store) RecordCancelAttempt(ctx context.Context, c Cancel, outcome, code string, needsReconciliation bool) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, sqlRecordCancelAttempt, c.CancelID, needsReconciliation); err != nil {
			return err
		}
		d := map[string]any{"cancelId": c.CancelID, "outcome": outcome, "code": code}
		if needsReconciliation {
			d["needsReconciliation"] = true
		}
		return appendLogTx(ctx, tx, c.OrderID, "pg.cancel", nil, nil, "worker", d)
	})
}

// CancelOutcome is how a PENDING cancel settles.
type CancelOutcome struct {
	// Succeeded: the PG cancelled the amount.
	Succeeded bool
	// Code and Message are the PG's refusal.
	Code, Message string
	// CanceledAtPG: the PG refused because its record shows the payment
	// fully cancelled (its console, while ours was pending). The refusal
	// releases this cancel's reservation and, once no other cancel holds
	// one, the order moves to CANCELED for what remained, in the same
	// transaction: the cancel that happened is applied, not lost.
	CanceledAtPG bool
}

const sqlFinishCancelSelectCancels = `SELECT ` + cancelColumns + ` FROM cancels WHERE cancel_id = $1 FOR UPDATE`

const sqlFinishCancelSucceeded = `UPDATE cancels SET status = 'SUCCEEDED', attempts = attempts + 1, updated_at = now() WHERE cancel_id = $1`

const sqlFinishCancelFailed = `UPDATE cancels SET status = 'FAILED', failure_code = $2, failure_message = $3, attempts = attempts + 1, updated_at = now() WHERE cancel_id = $1`

const sqlFinishCancelUpdateOrders = `UPDATE orders SET reserved_cancel_amount = reserved_cancel_amount - $3, version = version + 1, updated_at = now()
WHERE order_id = $1 AND version = $2 RETURNING ` + orderColumns

// FinishCancel settles a PENDING cancel in one transaction. On success the
// reservation becomes canceled amount and the order moves to
// PARTIALLY_CANCELED or CANCELED (fenced, with its callback); on refusal the
// reservation is released and payment.cancel_failed is emitted. A cancel
// that is no longer PENDING is left alone (ok=false).
func (s *Store) FinishCancel(ctx context.Context, cancelID string, out CancelOutcome) (ok bool, err error) {
	succeeded, code, message := out.Succeeded, out.Code, out.Message
	err = s.inOutboxTx(ctx, func(tx *sqlx.Tx, ob *outbox) error {
		var c Cancel
		if err := tx.GetContext(ctx, &c, sqlFinishCancelSelectCancels, cancelID); err != nil {
			return fmt.Errorf("cancel %s: %w", cancelID, err)
		}
		if c.Status != payment.CancelPending {
			return nil
		}
		row, err := s.orderRow(ctx, tx, anyMerchant, c.OrderID, true)
		if err != nil {
			return err
		}
		ok = true
		if succeeded {
			if _, err := tx.ExecContext(ctx, sqlFinishCancelSucceeded, cancelID); err != nil {
				return err
			}
			to := payment.PartiallyCanceled
			if row.CanceledAmount+c.Amount >= row.Amount {
				to = payment.Canceled
			}
			_, err := s.transitionTx(ctx, tx, ob, row, Change{OrderID: row.OrderID, Version: row.Version, To: to, Action: "cancel.succeeded", Actor: "worker",
				CanceledAmountDelta: c.Amount, ReservedDelta: -c.Amount, Details: map[string]any{"cancelId": cancelID, "amount": c.Amount}})
			return err
		}
		if _, err := tx.ExecContext(ctx, sqlFinishCancelFailed, cancelID, code, message); err != nil {
			return err
		}
		var updated OrderRow
		if err := tx.GetContext(ctx, &updated, sqlFinishCancelUpdateOrders, row.OrderID, row.Version, c.Amount); err != nil {
			return fmt.Errorf("release reservation: %w", err)
		}
		if err := appendLogTx(ctx, tx, row.OrderID, "cancel.failed", nil, nil, "worker", map[string]any{"cancelId": cancelID, "amount": c.Amount, "code": code, "message": message}); err != nil {
			return err
		}
		if err := insertCallbackTx(ctx, tx, ob, s.now(), updated.Order(), payment.Status(row.Status), payment.EventCancelFailed); err != nil {
			return err
		}
		st := payment.Status(updated.Status)
		if !out.CanceledAtPG || updated.ReservedCancelAmount > 0 || (st != payment.Paid && st != payment.PartiallyCanceled) {
			return nil // another pending cancel settles the rest
		}
		_, err = s.transitionTx(ctx, tx, ob, updated, Change{OrderID: updated.OrderID, Version: updated.Version, To: payment.Canceled,
			Action: "payment.canceled_at_pg", Actor: "worker", CanceledAmountDelta: updated.Amount - updated.CanceledAmount,
			Details: map[string]any{"source": "pg.lookup after a refused cancel", "refusedCancelId": cancelID}})
		return err
	})
	return ok, err
}

const sqlStalePendingCancels = `SELECT cancel_id FROM cancels WHERE status = 'PENDING' AND updated_at <= $1 ORDER BY updated_at LIMIT $2`

// StalePendingCancels returns PENDING cancels not touched for `age`.
func (s *Store) StalePendingCancels(ctx context.Context, age time.Duration, limit int) ([]string, error) {
	var ids []string
	err := s.db.SelectContext(ctx, &ids, sqlStalePendingCancels, s.now().Add(-age), limit)
	return ids, err
}
