package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/secretbox"
)

// Every encrypted column, with what re-encrypting it needs. A row is done
// when it is sealed under the keyring's primary key with the current AAD
// version (secretbox.AADVersion); anything else is what `payrailctl keys
// reencrypt` rewrites and what keeps an old key from being retired.
//
// Each select walks the table in primary-key order from a cursor (so one
// pass reads the table once, however large) and locks what it returns
// FOR UPDATE SKIP LOCKED: two runs share the work instead of waiting on each
// other, and a row a writer holds (a revoke, an idempotency takeover) is
// left for the next pass. The update is fenced on the key id, AAD version
// and ciphertext it read, so it only ever replaces exactly what it decrypted.
//
// Parameters: select $1 primary key id, $2 AAD version, $3 batch size,
// $4… the cursor; update $1 key id, $2 ciphertext, $3 AAD version, $4 old
// key id, $5 old AAD version, $6 old ciphertext, $7… the row's key; todo
// $1 primary key id, $2 AAD version.
var sealedTables = []sealedTable{
	{
		name:       "merchant_secrets",
		cursorCols: 1,
		selectBatch: `
SELECT secret_id, merchant_id, kind, key_id, aad_version, ciphertext
FROM merchant_secrets
WHERE secret_id > $4 AND (key_id <> $1 OR aad_version <> $2)
ORDER BY secret_id
LIMIT $3
FOR UPDATE SKIP LOCKED`,
		update: `
UPDATE merchant_secrets SET key_id = $1, ciphertext = $2, aad_version = $3
WHERE secret_id = $7 AND key_id = $4 AND aad_version = $5 AND ciphertext = $6`,
		todo: `SELECT count(*) FROM merchant_secrets WHERE key_id <> $1 OR aad_version <> $2`,
		// cols: secret_id, merchant_id, kind
		aad: func(cols []string, v int) ([]byte, error) { return secretAAD(v, cols[1], cols[2], cols[0]) },
	},
	{
		name:       "idempotency_keys",
		cursorCols: 4,
		selectBatch: `
SELECT merchant_id, method, path, idem_key, COALESCE(response_key_id, ''), response_aad_version, response_body
FROM idempotency_keys
WHERE (merchant_id, method, path, idem_key) > ($4, $5, $6, $7)
  AND response_body IS NOT NULL
  AND (response_key_id IS DISTINCT FROM $1 OR response_aad_version <> $2)
ORDER BY merchant_id, method, path, idem_key
LIMIT $3
FOR UPDATE SKIP LOCKED`,
		update: `
UPDATE idempotency_keys SET response_key_id = $1, response_body = $2, response_aad_version = $3
WHERE merchant_id = $7 AND method = $8 AND path = $9 AND idem_key = $10
  AND response_key_id = $4 AND response_aad_version = $5 AND response_body = $6`,
		todo: `SELECT count(*) FROM idempotency_keys WHERE response_body IS NOT NULL AND (response_key_id IS DISTINCT FROM $1 OR response_aad_version <> $2)`,
		// cols: merchant_id, method, path, idem_key
		aad: func(cols []string, v int) ([]byte, error) {
			sc := IdemScope{MerchantID: cols[0], Method: cols[1], Path: cols[2], Key: cols[3]}
			return sc.aad(v)
		},
	},
	{
		name:       "orders.va_secret",
		cursorCols: 1,
		selectBatch: `
SELECT order_id, va_secret_key_id, va_secret_aad_version, va_secret
FROM orders
WHERE order_id > $4 AND va_secret IS NOT NULL AND (va_secret_key_id <> $1 OR va_secret_aad_version <> $2)
ORDER BY order_id
LIMIT $3
FOR UPDATE SKIP LOCKED`,
		update: `
UPDATE orders SET va_secret_key_id = $1, va_secret = $2, va_secret_aad_version = $3
WHERE order_id = $7 AND va_secret_key_id = $4 AND va_secret_aad_version = $5 AND va_secret = $6`,
		todo: `SELECT count(*) FROM orders WHERE va_secret IS NOT NULL AND (va_secret_key_id <> $1 OR va_secret_aad_version <> $2)`,
		aad:  func(cols []string, v int) ([]byte, error) { return vaSecretAAD(v, cols[0]) },
	},
	{
		name:       "cancels.refund_account",
		cursorCols: 1,
		selectBatch: `
SELECT cancel_id, refund_account_key_id, refund_account_aad_version, refund_account
FROM cancels
WHERE cancel_id > $4 AND refund_account IS NOT NULL AND (refund_account_key_id <> $1 OR refund_account_aad_version <> $2)
ORDER BY cancel_id
LIMIT $3
FOR UPDATE SKIP LOCKED`,
		update: `
UPDATE cancels SET refund_account_key_id = $1, refund_account = $2, refund_account_aad_version = $3
WHERE cancel_id = $7 AND refund_account_key_id = $4 AND refund_account_aad_version = $5 AND refund_account = $6`,
		todo: `SELECT count(*) FROM cancels WHERE refund_account IS NOT NULL AND (refund_account_key_id <> $1 OR refund_account_aad_version <> $2)`,
		aad:  func(cols []string, v int) ([]byte, error) { return refundAccountAAD(v, cols[0]) },
	},
}

type sealedTable struct {
	name string
	// cursorCols is how many of the selected text columns are the primary
	// key (the cursor, and the update's row key); the select returns
	// those, maybe more text columns, then key id, AAD version, ciphertext.
	cursorCols  int
	selectBatch string
	update      string
	todo        string
	aad         func(cols []string, version int) ([]byte, error)
}

// KeyUsage is how many stored ciphertexts of one kind are sealed under one
// key id with one AAD version.
type KeyUsage struct {
	// Kind is the table and kind: "merchant_secrets.client",
	// "merchant_secrets.callback" or "idempotency_keys.response".
	Kind       string `db:"kind"`
	KeyID      string `db:"key_id"`
	AADVersion int    `db:"aad_version"`
	Rows       int    `db:"n"`
}

const sqlKeyUsage = `
SELECT 'merchant_secrets.' || kind AS kind, key_id, aad_version, count(*) AS n
FROM merchant_secrets GROUP BY kind, key_id, aad_version
UNION ALL
SELECT 'idempotency_keys.response', COALESCE(response_key_id, ''), response_aad_version, count(*)
FROM idempotency_keys WHERE response_body IS NOT NULL GROUP BY response_key_id, response_aad_version
ORDER BY 1, 2, 3`

// KeyUsage counts every stored ciphertext (revoked secrets and expired
// stored responses included) by kind, key id and AAD version. A key id
// with no rows can be dropped from PAYRAIL_ENCRYPTION_KEYS.
func (s *Store) KeyUsage(ctx context.Context) ([]KeyUsage, error) {
	var out []KeyUsage
	if err := s.db.SelectContext(ctx, &out, sqlKeyUsage); err != nil {
		return nil, fmt.Errorf("key usage: %w", err)
	}
	return out, nil
}

// ReencryptProgress is reported after each committed batch.
type ReencryptProgress struct {
	// Done is how many rows this run has re-encrypted so far.
	Done int
	// Left is how many rows are still to do: counted at the start of each
	// pass, less what this run did since (another run's work shows at the
	// next pass).
	Left int
}

// ErrReencryptFailed is returned (wrapped, with the rows named) by
// ReencryptSecrets when some rows cannot be decrypted with their recorded
// key and AAD version: their key is not in the keyring, or the row was
// altered. Every other row is still re-encrypted.
var ErrReencryptFailed = errors.New("rows could not be decrypted")

// reencryptIdlePasses bounds how many passes in a row may find only rows
// that other transactions hold before ReencryptSecrets gives up.
const reencryptIdlePasses = 50

// ReencryptSecrets rewrites every stored ciphertext that is not sealed
// under the primary key with the current AAD version (secretbox.AADVersion):
// it decrypts with the row's recorded key and AAD version and seals again,
// batch rows per transaction. It returns how many rows it rewrote.
//
// It is safe to run while the api and workers run, and twice at once:
// rows are locked FOR UPDATE SKIP LOCKED and each update is fenced on what
// was read, so no write is lost and no row is done twice. Every committed
// row is readable before and after, so a run cut short (ctx cancelled, a
// crash) leaves everything readable and a new run continues; once all is
// done a run rewrites 0 rows. progress, when not nil, is called after each
// batch that rewrote rows.
//
// Errors: ctx.Err() when cancelled; ErrReencryptFailed (wrapped) when rows
// cannot be decrypted — the others are done, those stay as they are.
func (s *Store) ReencryptSecrets(ctx context.Context, batch int, progress func(ReencryptProgress)) (int, error) {
	if batch <= 0 {
		batch = 100
	}
	primary := s.keys.PrimaryID()
	done, idle := 0, 0
	for {
		left, err := s.reencryptTodo(ctx, primary)
		if err != nil {
			return done, err
		}
		if left == 0 {
			return done, nil
		}
		var failed []string
		passDone := 0
		for _, t := range sealedTables {
			cursor := make([]any, t.cursorCols)
			for i := range cursor {
				cursor[i] = ""
			}
			for {
				if err := ctx.Err(); err != nil {
					return done, err
				}
				n, f, next, err := s.reencryptBatch(ctx, t, primary, batch, cursor)
				if err != nil {
					return done, err
				}
				done += n
				passDone += n
				left = max(0, left-n)
				failed = append(failed, f...)
				if n > 0 && progress != nil {
					progress(ReencryptProgress{Done: done, Left: left})
				}
				if next == nil {
					break
				}
				cursor = next
			}
		}
		if len(failed) > 0 {
			total, more := len(failed), ""
			if total > 10 {
				failed, more = failed[:10], fmt.Sprintf("; and %d more", total-10)
			}
			return done, fmt.Errorf("re-encrypt: %d %w: %s%s", total, ErrReencryptFailed, strings.Join(failed, "; "), more)
		}
		if passDone > 0 {
			idle = 0
			continue
		}
		// What is left is held by another run or a writer: wait for it.
		if idle++; idle >= reencryptIdlePasses {
			return done, fmt.Errorf("re-encrypt: %d rows stayed locked by other transactions; run again", left)
		}
		select {
		case <-ctx.Done():
			return done, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Store) reencryptTodo(ctx context.Context, primary string) (int, error) {
	total := 0
	for _, t := range sealedTables {
		var n int
		if err := s.db.GetContext(ctx, &n, t.todo, primary, secretbox.AADVersion); err != nil {
			return 0, fmt.Errorf("count %s to re-encrypt: %w", t.name, err)
		}
		total += n
	}
	return total, nil
}

type sealedRow struct {
	cols       []string
	keyID      string
	aadVersion int
	ciphertext []byte
}

// reencryptBatch re-encrypts, in one transaction, up to batch rows of t
// after cursor. It returns the rows rewritten, the rows that failed to
// decrypt, and the cursor of the next batch (nil when t is done).
func (s *Store) reencryptBatch(ctx context.Context, t sealedTable, primary string, batch int, cursor []any) (done int, failed []string, next []any, err error) {
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		done, failed, next = 0, nil, nil
		rows, err := s.selectSealed(ctx, tx, t, primary, batch, cursor)
		if err != nil {
			return err
		}
		for _, r := range rows {
			ok, failure, err := s.reencryptRow(ctx, tx, t, r)
			if err != nil {
				return err
			}
			if ok {
				done++
			}
			if failure != "" {
				failed = append(failed, failure)
			}
		}
		if len(rows) == batch {
			last := rows[len(rows)-1].cols[:t.cursorCols]
			next = make([]any, len(last))
			for i, c := range last {
				next[i] = c
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, nil, fmt.Errorf("re-encrypt %s: %w", t.name, err)
	}
	return done, failed, next, nil
}

func (s *Store) selectSealed(ctx context.Context, tx *sqlx.Tx, t sealedTable, primary string, batch int, cursor []any) ([]sealedRow, error) {
	rs, err := tx.QueryContext(ctx, t.selectBatch, append([]any{primary, secretbox.AADVersion, batch}, cursor...)...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		return nil, err
	}
	var out []sealedRow
	for rs.Next() {
		r := sealedRow{cols: make([]string, len(cols)-3)}
		dest := make([]any, 0, len(cols))
		for i := range r.cols {
			dest = append(dest, &r.cols[i])
		}
		dest = append(dest, &r.keyID, &r.aadVersion, &r.ciphertext)
		if err := rs.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

// reencryptRow rewrites one locked row; updated is false when the fence
// found it changed. A row that does not decrypt is left alone and described
// in failure (its table, key, key id and AAD version, never its contents).
func (s *Store) reencryptRow(ctx context.Context, tx *sqlx.Tx, t sealedTable, r sealedRow) (updated bool, failure string, err error) {
	pt, err := s.openSealed(t, r)
	if err != nil {
		return false, fmt.Sprintf("%s %s (key %q, aad v%d): %v", t.name, strings.Join(r.cols[:t.cursorCols], " "), r.keyID, r.aadVersion, err), nil
	}
	aad, err := t.aad(r.cols, secretbox.AADVersion)
	if err != nil {
		return false, "", err
	}
	keyID, ct, err := s.keys.Encrypt(pt, aad)
	if err != nil {
		return false, "", err
	}
	args := []any{keyID, ct, secretbox.AADVersion, r.keyID, r.aadVersion, r.ciphertext}
	for _, c := range r.cols[:t.cursorCols] {
		args = append(args, c)
	}
	res, err := tx.ExecContext(ctx, t.update, args...)
	if err != nil {
		return false, "", err
	}
	n, err := res.RowsAffected()
	return n == 1, "", err
}

func (s *Store) openSealed(t sealedTable, r sealedRow) ([]byte, error) {
	aad, err := t.aad(r.cols, r.aadVersion)
	if err != nil {
		return nil, err
	}
	return s.keys.Decrypt(r.keyID, r.ciphertext, aad)
}
