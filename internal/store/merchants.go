package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/secretbox"
)

// MaxActiveSecrets is how many secrets of one kind a merchant may hold at
// once: two, so a rotation overlaps.
const MaxActiveSecrets = 2

// Merchant is a merchant account as the admin API shows it.
type Merchant struct {
	MerchantID      string  `json:"merchantId" db:"merchant_id"`
	Name            string  `json:"name" db:"name"`
	ClientID        string  `json:"clientId" db:"client_id"`
	Status          string  `json:"status" db:"status"`
	CallbackURL     string  `json:"callbackUrl" db:"callback_url"`
	ReturnURL       *string `json:"returnUrl" db:"return_url"`
	CallbackEnabled bool    `json:"callbackEnabled" db:"callback_enabled"`
	// RateLimit is the merchant's own ingress limit; nil = the default.
	RateLimit     *RateLimit `json:"rateLimit"`
	RatePerSecond *int       `json:"-" db:"rate_limit_per_second"`
	RateBurst     *int       `json:"-" db:"rate_limit_burst"`
	CreatedAt     time.Time  `json:"createdAt" db:"created_at"`
	UpdatedAt     time.Time  `json:"updatedAt" db:"updated_at"`
}

// NewMerchant is what creating a merchant takes.
type NewMerchant struct {
	Name        string
	CallbackURL string
	ReturnURL   *string
}

// CreatedMerchant carries the secrets shown once at creation.
type CreatedMerchant struct {
	Merchant
	ClientSecret     string `json:"clientSecret"`
	ClientSecretID   string `json:"clientSecretId"`
	CallbackSecret   string `json:"callbackSecret"`
	CallbackSecretID string `json:"callbackSecretId"`
}

const sqlInsertMerchant = `
INSERT INTO merchants (merchant_id, name, client_id, callback_url, return_url)
VALUES ($1, $2, $3, $4, $5)
RETURNING merchant_id, name, client_id, status, callback_url, return_url, callback_enabled, rate_limit_per_second, rate_limit_burst, created_at, updated_at`

const sqlCreateMerchantEndpoint = `INSERT INTO callback_endpoints (merchant_id) VALUES ($1)`

// CreateMerchant creates a merchant with one client and one callback secret.
func (s *Store) CreateMerchant(ctx context.Context, m NewMerchant) (CreatedMerchant, error) {
	var out CreatedMerchant
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := tx.GetContext(ctx, &out.Merchant, sqlInsertMerchant,
			NewID("mer_", 20), m.Name, NewID("ck_", 24), m.CallbackURL, m.ReturnURL); err != nil {
			return fmt.Errorf("insert merchant: %w", err)
		}
		// Its endpoint row from the start, so the sweep's WakeDueLanes
		// (which walks callback_endpoints) sees every merchant with due work.
		if _, err := tx.ExecContext(ctx, sqlCreateMerchantEndpoint, out.MerchantID); err != nil {
			return fmt.Errorf("insert callback endpoint: %w", err)
		}
		var err error
		out.ClientSecretID, out.ClientSecret, err = s.addSecretTx(ctx, tx, out.MerchantID, "client")
		if err != nil {
			return err
		}
		out.CallbackSecretID, out.CallbackSecret, err = s.addSecretTx(ctx, tx, out.MerchantID, "callback")
		if err != nil {
			return err
		}
		return s.auditTx(ctx, tx, "merchant.created", out.MerchantID, nil, out.Merchant.withRateLimit())
	})
	return out, err
}

const sqlSelectMerchant = `
SELECT merchant_id, name, client_id, status, callback_url, return_url, callback_enabled, rate_limit_per_second, rate_limit_burst, created_at, updated_at
FROM merchants WHERE merchant_id = $1`

// Merchant returns a merchant; MERCHANT_NOT_FOUND when absent.
func (s *Store) Merchant(ctx context.Context, merchantID string) (Merchant, error) {
	var m Merchant
	err := s.db.GetContext(ctx, &m, sqlSelectMerchant, merchantID)
	if errors.Is(err, sql.ErrNoRows) {
		return m, payment.Errorf(payment.CodeMerchantNotFound, "merchant not found")
	}
	return m.withRateLimit(), err
}

// RateLimit is a merchant's requests per second and burst at the ingress
// (confirms draw from a bucket twice this size).
type RateLimit struct {
	PerSecond int `json:"perSecond"`
	Burst     int `json:"burst"`
}

// withRateLimit fills m.RateLimit from its columns.
func (m Merchant) withRateLimit() Merchant {
	if m.RatePerSecond != nil && m.RateBurst != nil {
		m.RateLimit = &RateLimit{PerSecond: *m.RatePerSecond, Burst: *m.RateBurst}
	}
	return m
}

// MerchantPatch holds the fields a PATCH may change; nil leaves one alone.
// SetRateLimit with a nil RateLimit returns the merchant to the default.
type MerchantPatch struct {
	Status          *string
	CallbackURL     *string
	ReturnURL       *string
	CallbackEnabled *bool
	SetRateLimit    bool
	RateLimit       *RateLimit
}

const sqlPatchMerchant = `
UPDATE merchants SET
    status = COALESCE($2, status),
    callback_url = COALESCE($3, callback_url),
    return_url = COALESCE($4, return_url),
    callback_enabled = COALESCE($5, callback_enabled),
    rate_limit_per_second = CASE WHEN $6 THEN $7 ELSE rate_limit_per_second END,
    rate_limit_burst = CASE WHEN $6 THEN $8 ELSE rate_limit_burst END,
    updated_at = now()
WHERE merchant_id = $1
RETURNING merchant_id, name, client_id, status, callback_url, return_url, callback_enabled, rate_limit_per_second, rate_limit_burst, created_at, updated_at`

const sqlResetMerchantBreaker = `UPDATE callback_endpoints SET failures = 0, failing_since = NULL, open_until = NULL, cooldown_ms = 0 WHERE merchant_id = $1`

// UpdateMerchant applies p; MERCHANT_NOT_FOUND when absent.
func (s *Store) UpdateMerchant(ctx context.Context, merchantID string, p MerchantPatch) (Merchant, error) {
	var m Merchant
	var per, burst *int
	if p.RateLimit != nil {
		per, burst = &p.RateLimit.PerSecond, &p.RateLimit.Burst
	}
	err := s.inOutboxTx(ctx, func(tx *sqlx.Tx, ob *outbox) error {
		var before Merchant
		if s.audit != nil {
			if err := tx.GetContext(ctx, &before, sqlMerchantForUpdate, merchantID); errors.Is(err, sql.ErrNoRows) {
				return payment.Errorf(payment.CodeMerchantNotFound, "merchant not found")
			} else if err != nil {
				return fmt.Errorf("merchant before update: %w", err)
			}
		}
		err := tx.GetContext(ctx, &m, sqlPatchMerchant, merchantID, p.Status, p.CallbackURL, p.ReturnURL, p.CallbackEnabled, p.SetRateLimit, per, burst)
		if errors.Is(err, sql.ErrNoRows) {
			return payment.Errorf(payment.CodeMerchantNotFound, "merchant not found")
		}
		if err == nil {
			err = s.auditTx(ctx, tx, "merchant.updated", merchantID, before.withRateLimit(), m.withRateLimit())
		}
		if err != nil || (p.CallbackURL == nil && (p.CallbackEnabled == nil || !*p.CallbackEnabled)) {
			return err
		}
		// A new or re-enabled endpoint starts with a closed breaker, and
		// its waiting callbacks go out now.
		if err := lockLaneShared(ctx, tx, merchantID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, sqlResetMerchantBreaker, merchantID); err != nil {
			return fmt.Errorf("reset breaker: %w", err)
		}
		return wakeLaneTx(ctx, tx, ob, merchantID, s.now())
	})
	return m.withRateLimit(), err
}

const sqlMerchantForUpdate = `SELECT merchant_id, name, client_id, status, callback_url, return_url, callback_enabled, rate_limit_per_second, rate_limit_burst, created_at, updated_at
FROM merchants WHERE merchant_id = $1 FOR UPDATE`

const sqlMerchantRateLimit = `SELECT rate_limit_per_second, rate_limit_burst FROM merchants WHERE merchant_id = $1`

// MerchantRateLimit returns a merchant's own limit, nil for the default
// (or an unknown merchant).
func (s *Store) MerchantRateLimit(ctx context.Context, merchantID string) (*RateLimit, error) {
	var m Merchant
	err := s.db.GetContext(ctx, &m, sqlMerchantRateLimit, merchantID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("merchant rate limit: %w", err)
	}
	return m.withRateLimit().RateLimit, nil
}

const sqlAddSecretSelectMerchants = `SELECT merchant_id FROM merchants WHERE merchant_id = $1 FOR UPDATE`

const sqlAddSecretSelectMerchantSecrets = `SELECT count(*) FROM merchant_secrets WHERE merchant_id = $1 AND kind = $2 AND revoked_at IS NULL`

// AddSecret adds a client or callback secret, returned once in plaintext.
// TOO_MANY_ACTIVE_SECRETS when two are already active.
func (s *Store) AddSecret(ctx context.Context, merchantID, kind string) (secretID, secret string, err error) {
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		// Lock the merchant so two concurrent adds cannot both pass the count.
		var id string
		if err := tx.GetContext(ctx, &id, sqlAddSecretSelectMerchants, merchantID); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return payment.Errorf(payment.CodeMerchantNotFound, "merchant not found")
			}
			return err
		}
		var n int
		if err := tx.GetContext(ctx, &n, sqlAddSecretSelectMerchantSecrets, merchantID, kind); err != nil {
			return err
		}
		if n >= MaxActiveSecrets {
			return payment.Errorf(payment.CodeTooManySecrets, "a merchant holds at most %d active %s secrets; revoke one first", MaxActiveSecrets, kind)
		}
		secretID, secret, err = s.addSecretTx(ctx, tx, merchantID, kind)
		if err != nil {
			return err
		}
		return s.auditTx(ctx, tx, "secret.added", merchantID, nil, map[string]string{"secretId": secretID, "kind": kind})
	})
	return secretID, secret, err
}

const sqlInsertMerchantSecret = `INSERT INTO merchant_secrets (secret_id, merchant_id, kind, key_id, aad_version, ciphertext) VALUES ($1, $2, $3, $4, $5, $6)`

func (s *Store) addSecretTx(ctx context.Context, tx *sqlx.Tx, merchantID, kind string) (string, string, error) {
	secretID := NewID("sec_", 20)
	var secret string
	if kind == "callback" {
		secret = NewCallbackSecret()
	} else {
		secret = NewSecret("sk_")
	}
	aad, err := secretAAD(secretbox.AADVersion, merchantID, kind, secretID)
	if err != nil {
		return "", "", err
	}
	keyID, ct, err := s.keys.Encrypt([]byte(secret), aad)
	if err != nil {
		return "", "", fmt.Errorf("encrypt secret: %w", err)
	}
	if _, err := tx.ExecContext(ctx, sqlInsertMerchantSecret,
		secretID, merchantID, kind, keyID, secretbox.AADVersion, ct); err != nil {
		return "", "", fmt.Errorf("insert secret: %w", err)
	}
	return secretID, secret, nil
}

const sqlRevokeSecretLock = `SELECT kind FROM merchant_secrets WHERE secret_id = $1 AND merchant_id = $2 AND revoked_at IS NULL FOR UPDATE`

const sqlRevokeSecretCountActive = `SELECT count(*) FROM merchant_secrets WHERE merchant_id = $1 AND kind = $2 AND revoked_at IS NULL`

const sqlRevokeSecretUpdateMerchantSecrets = `UPDATE merchant_secrets SET revoked_at = now() WHERE secret_id = $1`

// RevokeSecret revokes a secret. SECRET_NOT_FOUND when it is not the
// merchant's or already revoked; LAST_ACTIVE_SECRET when it is the last
// active one of its kind (that would lock the merchant out).
func (s *Store) RevokeSecret(ctx context.Context, merchantID, secretID string) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		var kind string
		err := tx.GetContext(ctx, &kind, sqlRevokeSecretLock, secretID, merchantID)
		if errors.Is(err, sql.ErrNoRows) {
			return payment.Errorf(payment.CodeSecretNotFound, "secret not found")
		}
		if err != nil {
			return err
		}
		var n int
		if err := tx.GetContext(ctx, &n, sqlRevokeSecretCountActive, merchantID, kind); err != nil {
			return err
		}
		if n <= 1 {
			return payment.Errorf(payment.CodeLastSecret, "cannot revoke the last active %s secret; add a new one first", kind)
		}
		if _, err = tx.ExecContext(ctx, sqlRevokeSecretUpdateMerchantSecrets, secretID); err != nil {
			return err
		}
		return s.auditTx(ctx, tx, "secret.revoked", merchantID, map[string]string{"secretId": secretID, "kind": kind}, nil)
	})
}

// secretAAD is the associated data of a merchant secret sealed with AAD
// version v (the row's aad_version): version 1, written before version 2
// existed, is the secret id alone; version 2 binds the kind ("client" or
// "callback") and the merchant too, so a row moved to another merchant or
// kind no longer decrypts.
func secretAAD(v int, merchantID, kind, secretID string) ([]byte, error) {
	switch v {
	case 1:
		return []byte(secretID), nil
	case 2:
		return secretbox.AssociatedData("merchant_secrets."+kind, merchantID, secretID), nil
	}
	return nil, fmt.Errorf("secret %s: unknown aad_version %d", secretID, v)
}

// secretRow is a stored secret as the readers select it; merchant and kind
// come from the query's own conditions, so a row moved to another merchant
// or kind is opened with the associated data of where it is read, and fails.
type secretRow struct {
	SecretID   string `db:"secret_id"`
	MerchantID string `db:"merchant_id"`
	Kind       string `db:"kind"`
	KeyID      string `db:"key_id"`
	AADVersion int    `db:"aad_version"`
	Ciphertext []byte `db:"ciphertext"`
}

func (s *Store) decryptSecrets(rows []secretRow) ([]string, error) {
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		aad, err := secretAAD(r.AADVersion, r.MerchantID, r.Kind, r.SecretID)
		if err != nil {
			return nil, err
		}
		pt, err := s.keys.Decrypt(r.KeyID, r.Ciphertext, aad)
		if err != nil {
			return nil, fmt.Errorf("decrypt secret %s: %w", r.SecretID, err)
		}
		out = append(out, string(pt))
	}
	return out, nil
}

const sqlCredentials = `
SELECT m.merchant_id, m.status, s.secret_id, s.key_id, s.aad_version, s.ciphertext
FROM merchants m
LEFT JOIN merchant_secrets s ON s.merchant_id = m.merchant_id AND s.kind = 'client' AND s.revoked_at IS NULL
WHERE m.client_id = $1`

// Credentials implements auth.CredentialStore.
func (s *Store) Credentials(ctx context.Context, clientID string) (auth.Credentials, error) {
	var rows []struct {
		MerchantID string  `db:"merchant_id"`
		Status     string  `db:"status"`
		SecretID   *string `db:"secret_id"`
		KeyID      *string `db:"key_id"`
		AADVersion *int    `db:"aad_version"`
		Ciphertext []byte  `db:"ciphertext"`
	}
	if err := s.db.SelectContext(ctx, &rows, sqlCredentials, clientID); err != nil {
		return auth.Credentials{}, fmt.Errorf("credentials: %w", err)
	}
	if len(rows) == 0 {
		return auth.Credentials{}, auth.ErrUnknownClient
	}
	c := auth.Credentials{MerchantID: rows[0].MerchantID, Suspended: rows[0].Status == "SUSPENDED"}
	var secrets []secretRow
	for _, r := range rows {
		if r.SecretID != nil {
			secrets = append(secrets, secretRow{SecretID: *r.SecretID, MerchantID: c.MerchantID, Kind: "client",
				KeyID: *r.KeyID, AADVersion: *r.AADVersion, Ciphertext: r.Ciphertext})
		}
	}
	var err error
	c.Secrets, err = s.decryptSecrets(secrets)
	return c, err
}

const sqlCallbackSecrets = `SELECT secret_id, key_id, aad_version, ciphertext FROM merchant_secrets WHERE merchant_id = $1 AND kind = 'callback' AND revoked_at IS NULL ORDER BY created_at DESC`

// CallbackSecrets returns the merchant's active callback secrets, newest first.
func (s *Store) CallbackSecrets(ctx context.Context, merchantID string) ([]string, error) {
	var rows []secretRow
	if err := s.db.SelectContext(ctx, &rows, sqlCallbackSecrets, merchantID); err != nil {
		return nil, fmt.Errorf("callback secrets: %w", err)
	}
	for i := range rows {
		rows[i].MerchantID, rows[i].Kind = merchantID, "callback"
	}
	return s.decryptSecrets(rows)
}
