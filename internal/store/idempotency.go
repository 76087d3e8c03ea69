package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/secretbox"
)

// IdemScope identifies an Idempotency-Key: merchant + method + path + key.
type IdemScope struct {
	MerchantID, Method, Path, Key string
}

// IdemClaim is this request's ownership of an in-flight key.
type IdemClaim struct {
	IdemScope
	Owner string
}

// StoredResponse is a replayable answer.
type StoredResponse struct {
	Status int
	Body   []byte
}

// IdemFinish, passed to an effect method, records the response in the
// effect's own transaction, so the key, the effect and the stored response
// commit together.
type IdemFinish[T any] struct {
	Claim *IdemClaim
	// Render turns the effect's result into the response to store.
	Render func(result T) (status int, body []byte, err error)
}

// Idempotency timings.
var (
	IdemLease     = 30 * time.Second
	IdemRetention = 24 * time.Hour
	// IdemWait is how long a duplicate waits for the first request to finish
	// before answering IDEMPOTENCY_KEY_IN_USE.
	IdemWait = 5 * time.Second
)

// aad is the associated data of the stored response under AAD version v
// (the row's response_aad_version): version 1 joins the scope with NULs,
// version 2 is secretbox.AssociatedData of the same scope under its own kind.
func (s *IdemScope) aad(v int) ([]byte, error) {
	switch v {
	case 1:
		return []byte(s.MerchantID + "\x00" + s.Method + "\x00" + s.Path + "\x00" + s.Key), nil
	case 2:
		return secretbox.AssociatedData(idemResponseKind, s.MerchantID, s.Method, s.Path, s.Key), nil
	}
	return nil, fmt.Errorf("stored response: unknown aad version %d", v)
}

// idemResponseKind names stored responses in their associated data.
const idemResponseKind = "idempotency_keys.response"

const sqlClaimIdempotencyInsertIdempotencyKeys = `INSERT INTO idempotency_keys (merchant_id, method, path, idem_key, request_hash, state, owner_token, lease_until, expires_at)
VALUES ($1, $2, $3, $4, $5, 'IN_FLIGHT', $6, $7, $8) ON CONFLICT DO NOTHING`

const sqlClaimIdempotencySelectIdempotencyKeys = `SELECT request_hash, state, owner_token, lease_until, expires_at, response_status, response_key_id, response_aad_version, response_body
FROM idempotency_keys WHERE merchant_id = $1 AND method = $2 AND path = $3 AND idem_key = $4`

const sqlClaimIdempotencyDeleteIdempotencyKeys = `DELETE FROM idempotency_keys WHERE merchant_id = $1 AND method = $2 AND path = $3 AND idem_key = $4 AND owner_token = $5`

const sqlClaimIdempotencyUpdateIdempotencyKeys = `UPDATE idempotency_keys SET owner_token = $6, lease_until = $7
WHERE merchant_id = $1 AND method = $2 AND path = $3 AND idem_key = $4 AND owner_token = $5 AND state = 'IN_FLIGHT'`

// ClaimIdempotency takes the key for this request. It returns a claim to go
// ahead with, or a stored response to replay. IDEMPOTENCY_KEY_REUSED when the
// key was used with another body; IDEMPOTENCY_KEY_IN_USE when another request
// with it is still in flight after IdemWait. An in-flight key whose lease ran
// out (its holder crashed) is taken over.
func (s *Store) ClaimIdempotency(ctx context.Context, scope IdemScope, requestHash []byte) (*IdemClaim, *StoredResponse, error) {
	deadline := time.Now().Add(IdemWait)
	for {
		owner := NewID("", 20)
		now := s.now()
		res, err := s.db.ExecContext(ctx, sqlClaimIdempotencyInsertIdempotencyKeys,
			scope.MerchantID, scope.Method, scope.Path, scope.Key, requestHash, owner, now.Add(IdemLease), now.Add(IdemRetention))
		if err != nil {
			return nil, nil, fmt.Errorf("claim idempotency key: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return &IdemClaim{IdemScope: scope, Owner: owner}, nil, nil
		}
		var row struct {
			RequestHash []byte    `db:"request_hash"`
			State       string    `db:"state"`
			Owner       string    `db:"owner_token"`
			LeaseUntil  time.Time `db:"lease_until"`
			ExpiresAt   time.Time `db:"expires_at"`
			Status      *int      `db:"response_status"`
			KeyID       *string   `db:"response_key_id"`
			AADVersion  int       `db:"response_aad_version"`
			Body        []byte    `db:"response_body"`
		}
		err = s.db.GetContext(ctx, &row, sqlClaimIdempotencySelectIdempotencyKeys, scope.MerchantID, scope.Method, scope.Path, scope.Key)
		if errors.Is(err, sql.ErrNoRows) {
			continue // released between our insert and select: try again
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read idempotency key: %w", err)
		}
		if !row.ExpiresAt.After(now) {
			// Past retention: the key is free again.
			if _, err := s.db.ExecContext(ctx, sqlClaimIdempotencyDeleteIdempotencyKeys,
				scope.MerchantID, scope.Method, scope.Path, scope.Key, row.Owner); err != nil {
				return nil, nil, fmt.Errorf("expire idempotency key: %w", err)
			}
			continue
		}
		if !bytes.Equal(row.RequestHash, requestHash) {
			return nil, nil, payment.Errorf(payment.CodeIdempotencyKeyReused, "Idempotency-Key was already used with another request body")
		}
		if row.State == "DONE" {
			aad, err := scope.aad(row.AADVersion)
			if err != nil {
				return nil, nil, err
			}
			body, err := s.keys.Decrypt(*row.KeyID, row.Body, aad)
			if err != nil {
				return nil, nil, fmt.Errorf("decrypt stored response: %w", err)
			}
			return nil, &StoredResponse{Status: *row.Status, Body: body}, nil
		}
		if !row.LeaseUntil.After(now) {
			res, err := s.db.ExecContext(ctx, sqlClaimIdempotencyUpdateIdempotencyKeys,
				scope.MerchantID, scope.Method, scope.Path, scope.Key, row.Owner, owner, now.Add(IdemLease))
			if err != nil {
				return nil, nil, fmt.Errorf("take over idempotency key: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				return &IdemClaim{IdemScope: scope, Owner: owner}, nil, nil
			}
			continue
		}
		if time.Now().After(deadline) {
			return nil, nil, payment.Errorf(payment.CodeIdempotencyKeyInUse, "a request with this Idempotency-Key is still in flight")
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

const sqlReleaseIdempotency = `DELETE FROM idempotency_keys WHERE merchant_id = $1 AND method = $2 AND path = $3 AND idem_key = $4 AND owner_token = $5 AND state = 'IN_FLIGHT'`

// ReleaseIdempotency frees a claim whose request had no effect (an error), so
// the merchant may retry with the same key.
func (s *Store) ReleaseIdempotency(ctx context.Context, c *IdemClaim) error {
	_, err := s.db.ExecContext(ctx, sqlReleaseIdempotency,
		c.MerchantID, c.Method, c.Path, c.Key, c.Owner)
	return err
}

const sqlFinishIdempotency = `UPDATE idempotency_keys SET state = 'DONE', response_status = $6, response_key_id = $7, response_body = $8, response_aad_version = $9
WHERE merchant_id = $1 AND method = $2 AND path = $3 AND idem_key = $4 AND owner_token = $5 AND state = 'IN_FLIGHT'`

func (f *IdemFinish[T]) finish(ctx context.Context, tx *sqlx.Tx, s *Store, result T) error {
	if f == nil || f.Claim == nil {
		return nil
	}
	status, body, err := f.Render(result)
	if err != nil {
		return fmt.Errorf("render idempotent response: %w", err)
	}
	aad, err := f.Claim.aad(secretbox.AADVersion)
	if err != nil {
		return err
	}
	keyID, ct, err := s.keys.Encrypt(body, aad)
	if err != nil {
		return fmt.Errorf("encrypt stored response: %w", err)
	}
	c := f.Claim
	res, err := tx.ExecContext(ctx, sqlFinishIdempotency,
		c.MerchantID, c.Method, c.Path, c.Key, c.Owner, status, keyID, ct, secretbox.AADVersion)
	if err != nil {
		return fmt.Errorf("store idempotent response: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		// Our lease ran out and another request took the key: undo our effect.
		return payment.Errorf(payment.CodeIdempotencyKeyInUse, "a request with this Idempotency-Key is still in flight")
	}
	return nil
}
