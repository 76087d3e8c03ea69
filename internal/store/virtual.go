package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/secretbox"
)

// sealedVA is a Change's virtual account as the transition's UPDATE takes
// it: all nil when the change carries none (COALESCE keeps what is stored).
type sealedVA struct {
	bank, number, customer, keyID *string
	due                           *time.Time
	aadVersion                    *int
	secret                        []byte
}

// vaSecretAAD binds a sealed DEPOSIT_CALLBACK secret to its order, so a
// ciphertext copied onto another order does not open.
func vaSecretAAD(v int, orderID string) ([]byte, error) {
	if v != secretbox.AADVersion {
		return nil, fmt.Errorf("order %s: unknown va_secret aad_version %d", orderID, v)
	}
	return secretbox.AssociatedData("orders.va_secret", orderID), nil
}

func (s *Store) sealVirtualAccount(c Change) (sealedVA, error) {
	var out sealedVA
	if c.VirtualAccount != nil {
		va := c.VirtualAccount
		out.bank, out.number, out.customer = &va.BankCode, &va.AccountNumber, &va.CustomerName
		if !va.DueDate.IsZero() {
			out.due = &va.DueDate
		}
	}
	if c.VASecret != "" {
		aad, err := vaSecretAAD(secretbox.AADVersion, c.OrderID)
		if err != nil {
			return out, err
		}
		keyID, ct, err := s.keys.Encrypt([]byte(c.VASecret), aad)
		if err != nil {
			return out, fmt.Errorf("seal virtual account secret: %w", err)
		}
		v := secretbox.AADVersion
		out.keyID, out.aadVersion, out.secret = &keyID, &v, ct
	}
	return out, nil
}

// VASecret opens the DEPOSIT_CALLBACK secret the PG issued for the order.
// stored is false when the order has none (no virtual account issued, or
// not yet). Compare it in constant time (pgclient.SecretMatches).
func (s *Store) VASecret(row OrderRow) (secret string, stored bool, err error) {
	if row.VASecretKeyID == nil || row.VASecretAADVersion == nil || len(row.VASecret) == 0 {
		return "", false, nil
	}
	aad, err := vaSecretAAD(*row.VASecretAADVersion, row.OrderID)
	if err != nil {
		return "", true, err
	}
	b, err := s.keys.Decrypt(*row.VASecretKeyID, row.VASecret, aad)
	if err != nil {
		return "", true, fmt.Errorf("open virtual account secret of %s: %w", row.OrderID, err)
	}
	return string(b), true, nil
}

// RecordDepositSecretMismatch writes the security event of a
// DEPOSIT_CALLBACK whose secret did not match: who sent it (the source
// address), never what it said.
func (s *Store) RecordDepositSecretMismatch(ctx context.Context, orderID, source string) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		return appendLogTx(ctx, tx, orderID, "security.invalid_deposit_secret", nil, nil, "pg:webhook", map[string]any{"source": source})
	})
}

const sqlClaimDueDeposits = `UPDATE orders SET next_check_at = $3
WHERE order_id IN (
    SELECT order_id FROM orders WHERE status = 'AWAITING_DEPOSIT' AND next_check_at <= $1
    ORDER BY next_check_at LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING order_id, version, needs_reconciliation`

// ClaimDueDeposits returns AWAITING_DEPOSIT orders whose next check (their
// account's due date, then a retry) has come, and pushes it back by again
// so one sweep hands each out once. The worker looks each up: paid,
// expired at the PG, or still unpaid past its due date (→ EXPIRED).
func (s *Store) ClaimDueDeposits(ctx context.Context, limit int, again time.Duration) ([]OrderRef, error) {
	var refs []OrderRef
	err := s.db.SelectContext(ctx, &refs, sqlClaimDueDeposits, s.now(), limit, s.now().Add(again))
	if err != nil {
		return nil, fmt.Errorf("claim due deposits: %w", err)
	}
	return refs, nil
}

// refundAccountAAD binds a sealed refund account to its cancel.
func refundAccountAAD(v int, cancelID string) ([]byte, error) {
	if v != secretbox.AADVersion {
		return nil, fmt.Errorf("cancel %s: unknown refund_account aad_version %d", cancelID, v)
	}
	return secretbox.AssociatedData("cancels.refund_account", cancelID), nil
}

var _ = payment.MethodVirtualAccount
