package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/secretbox"
)

// totpAAD binds a sealed TOTP secret to its operator: a row copied to
// another operator no longer decrypts.
func totpAAD(operatorID string) []byte {
	return secretbox.AssociatedData("operators.totp", operatorID)
}

const sqlOperatorTOTP = `SELECT totp_key_id, totp_secret FROM operators WHERE operator_id = $1 AND totp_enabled_at IS NOT NULL`

// OperatorTOTP returns an operator's TOTP secret, or "" when they have not
// enrolled.
func (s *Store) OperatorTOTP(ctx context.Context, operatorID string) (string, error) {
	var row struct {
		KeyID  *string `db:"totp_key_id"`
		Secret []byte  `db:"totp_secret"`
	}
	err := s.db.GetContext(ctx, &row, sqlOperatorTOTP, operatorID)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && row.KeyID == nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("operator totp: %w", err)
	}
	b, err := s.keys.Decrypt(*row.KeyID, row.Secret, totpAAD(operatorID))
	if err != nil {
		return "", fmt.Errorf("decrypt operator totp: %w", err)
	}
	return string(b), nil
}

const sqlEnableTOTPUpdateOperators = `UPDATE operators SET totp_key_id = $2, totp_secret = $3, totp_enabled_at = $4, totp_last_step = 0
WHERE operator_id = $1 RETURNING name`

const sqlEnableTOTPDeleteOperatorRecoveryCodes = `DELETE FROM operator_recovery_codes WHERE operator_id = $1`

const sqlEnableTOTPInsertOperatorRecoveryCodes = `INSERT INTO operator_recovery_codes (operator_id, code_hash) VALUES ($1, $2)`

// EnableTOTP stores an operator's confirmed TOTP secret (sealed) and their
// recovery codes' hashes, replacing any earlier ones, in one transaction.
func (s *Store) EnableTOTP(ctx context.Context, operatorID, secret string, recoveryHashes [][]byte) error {
	keyID, ct, err := s.keys.Encrypt([]byte(secret), totpAAD(operatorID))
	if err != nil {
		return fmt.Errorf("encrypt totp: %w", err)
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		var name string
		if err := tx.GetContext(ctx, &name, sqlEnableTOTPUpdateOperators, operatorID, keyID, ct, s.now()); errors.Is(err, sql.ErrNoRows) {
			return payment.Errorf(payment.CodeOperatorNotFound, "operator not found")
		} else if err != nil {
			return fmt.Errorf("enable totp: %w", err)
		}
		if _, err := tx.ExecContext(ctx, sqlEnableTOTPDeleteOperatorRecoveryCodes, operatorID); err != nil {
			return err
		}
		for _, h := range recoveryHashes {
			if _, err := tx.ExecContext(ctx, sqlEnableTOTPInsertOperatorRecoveryCodes, operatorID, h); err != nil {
				return fmt.Errorf("recovery code: %w", err)
			}
		}
		return s.auditTx(ctx, tx, "operator.totp_enrolled", "operator:"+name, nil, map[string]int{"recoveryCodes": len(recoveryHashes)})
	})
}

const sqlUseTOTPStep = `UPDATE operators SET totp_last_step = $2 WHERE operator_id = $1 AND totp_last_step < $2`

// UseTOTPStep accepts time step `step` for the operator once: false when
// that step or a later one was already used (a replayed code).
func (s *Store) UseTOTPStep(ctx context.Context, operatorID string, step int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, sqlUseTOTPStep, operatorID, step)
	if err != nil {
		return false, fmt.Errorf("use totp step: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

const sqlUseRecoveryCode = `UPDATE operator_recovery_codes SET used_at = $3 WHERE operator_id = $1 AND code_hash = $2 AND used_at IS NULL`

// UseRecoveryCode spends one unused recovery code; false when there is
// none with that hash.
func (s *Store) UseRecoveryCode(ctx context.Context, operatorID string, hash []byte) (bool, error) {
	res, err := s.db.ExecContext(ctx, sqlUseRecoveryCode, operatorID, hash, s.now())
	if err != nil {
		return false, fmt.Errorf("use recovery code: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

const sqlResetTOTPUpdateOperators = `UPDATE operators SET totp_key_id = NULL, totp_secret = NULL, totp_enabled_at = NULL, totp_last_step = 0
WHERE name = $1 RETURNING operator_id`

const sqlResetTOTPDeleteOperatorRecoveryCodes = `DELETE FROM operator_recovery_codes WHERE operator_id = $1`

// ResetTOTP removes an operator's second factor and recovery codes: their
// next sign-in enrols again. OPERATOR_NOT_FOUND when absent.
func (s *Store) ResetTOTP(ctx context.Context, name string) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		var id string
		err := tx.GetContext(ctx, &id, sqlResetTOTPUpdateOperators, name)
		if errors.Is(err, sql.ErrNoRows) {
			return payment.Errorf(payment.CodeOperatorNotFound, "operator not found")
		}
		if err != nil {
			return fmt.Errorf("reset totp: %w", err)
		}
		if _, err := tx.ExecContext(ctx, sqlResetTOTPDeleteOperatorRecoveryCodes, id); err != nil {
			return err
		}
		return s.auditTx(ctx, tx, "operator.totp_reset", "operator:"+name, nil, nil)
	})
}
