package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jmoiron/sqlx"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/secretbox"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// keysBundle is a database seeded the way a deployment looks before a key
// rotation: secrets and stored responses sealed under the old key, most of
// them with version-1 associated data (the secret id alone), as written
// before AAD version 2 existed.
type keysBundle struct {
	db *sqlx.DB
	// oldKeys is the keyring before the rotation; rotated has a new primary
	// and still the old key; newOnly has dropped the old key.
	oldKeys, rotated, newOnly *secretbox.Keyring
	merchants                 []seededMerchant
	responses                 []seededResponse
	// rotating is a merchant whose client secret a test replaces while
	// others read: readAll checks only that its secrets decrypt.
	rotating string
}

type seededMerchant struct {
	id, clientID, clientSecret, callbackSecret string
}

type seededResponse struct {
	scope store.IdemScope
	hash  []byte
	body  string
}

// rows is how many ciphertexts the bundle holds.
func (b *keysBundle) rows() int { return 2*len(b.merchants) + len(b.responses) }

func keyring(tb testing.TB, entries ...string) *secretbox.Keyring {
	tb.Helper()
	k, err := secretbox.ParseKeys(strings.Join(entries, ","))
	testenv.Must(tb, err)
	return k
}

func newKey(tb testing.TB, id string) string {
	tb.Helper()
	s, err := secretbox.GenerateKeyString(id)
	testenv.Must(tb, err)
	return s
}

// setupKeys seeds merchants merchants (two secrets each) and responses
// stored responses under the old key. Every third secret and every other
// response keeps AAD version 2; the rest are rewritten as version-1 rows.
func setupKeys(tb testing.TB, merchants, responses int) *keysBundle {
	tb.Helper()
	db := testenv.NewDatabase(tb)
	oldEntry, newEntry := newKey(tb, "old"), newKey(tb, "new")
	b := &keysBundle{
		db:      db.DB,
		oldKeys: keyring(tb, oldEntry),
		rotated: keyring(tb, newEntry, oldEntry),
		newOnly: keyring(tb, newEntry),
	}
	ctx := context.Background()
	st := store.New(db.DB, b.oldKeys, store.Options{})
	for i := range merchants {
		m, err := st.CreateMerchant(ctx, store.NewMerchant{Name: fmt.Sprintf("m%d", i), CallbackURL: "https://example.com/cb"})
		testenv.Must(tb, err)
		b.merchants = append(b.merchants, seededMerchant{m.MerchantID, m.ClientID, m.ClientSecret, m.CallbackSecret})
		for j, sec := range []struct{ id, plain string }{{m.ClientSecretID, m.ClientSecret}, {m.CallbackSecretID, m.CallbackSecret}} {
			if (2*i+j)%3 != 0 {
				sealV1Secret(tb, db.DB, b.oldKeys, sec.id, sec.plain)
			}
		}
	}
	for i := range responses {
		m := b.merchants[i%len(b.merchants)]
		r := seededResponse{
			scope: store.IdemScope{MerchantID: m.id, Method: "POST", Path: "/v1/orders", Key: fmt.Sprintf("idem|%d", i)},
			hash:  store.HashToken(fmt.Sprint("body", i)),
			body:  fmt.Sprintf(`{"n":%d}`, i),
		}
		claim, replay, err := st.ClaimIdempotency(ctx, r.scope, r.hash)
		testenv.Must(tb, err)
		if replay != nil {
			tb.Fatal("fresh key replayed")
		}
		_, err = st.CreateOrder(ctx, store.NewOrder{MerchantID: m.id, Amount: 1000, Currency: "KRW", OrderName: "k", TokenHash: store.HashToken("t"), TTL: time.Hour},
			&store.IdemFinish[payment.Order]{Claim: claim, Render: func(payment.Order) (int, []byte, error) { return 201, []byte(r.body), nil }})
		testenv.Must(tb, err)
		if i%2 == 1 {
			sealV1Response(tb, db.DB, b.oldKeys, r.scope, r.body)
		}
		b.responses = append(b.responses, r)
	}
	return b
}

// sealV1Secret rewrites a secret as a row written before AAD version 2.
func sealV1Secret(tb testing.TB, db *sqlx.DB, keys *secretbox.Keyring, secretID, plain string) {
	tb.Helper()
	keyID, ct, err := keys.Encrypt([]byte(plain), []byte(secretID))
	testenv.Must(tb, err)
	_, err = db.Exec(`UPDATE merchant_secrets SET key_id = $1, ciphertext = $2, aad_version = 1 WHERE secret_id = $3`, keyID, ct, secretID)
	testenv.Must(tb, err)
}

func sealV1Response(tb testing.TB, db *sqlx.DB, keys *secretbox.Keyring, sc store.IdemScope, body string) {
	tb.Helper()
	keyID, ct, err := keys.Encrypt([]byte(body), []byte(sc.MerchantID+"\x00"+sc.Method+"\x00"+sc.Path+"\x00"+sc.Key))
	testenv.Must(tb, err)
	_, err = db.Exec(`UPDATE idempotency_keys SET response_key_id = $1, response_body = $2, response_aad_version = 1
WHERE merchant_id = $3 AND method = $4 AND path = $5 AND idem_key = $6`, keyID, ct, sc.MerchantID, sc.Method, sc.Path, sc.Key)
	testenv.Must(tb, err)
}

// readAll reads every seeded secret and stored response through st and
// returns the first failure.
func (b *keysBundle) readAll(ctx context.Context, st *store.Store) error {
	for _, m := range b.merchants {
		c, err := st.Credentials(ctx, m.clientID)
		if err != nil {
			return fmt.Errorf("credentials of %s: %w", m.id, err)
		}
		if len(c.Secrets) == 0 || (m.id != b.rotating && !slices.Contains(c.Secrets, m.clientSecret)) {
			return fmt.Errorf("credentials of %s lack the client secret", m.id)
		}
		cb, err := st.CallbackSecrets(ctx, m.id)
		if err != nil {
			return fmt.Errorf("callback secrets of %s: %w", m.id, err)
		}
		if !slices.Contains(cb, m.callbackSecret) {
			return fmt.Errorf("callback secrets of %s lack the callback secret", m.id)
		}
	}
	for _, r := range b.responses {
		claim, replay, err := st.ClaimIdempotency(ctx, r.scope, r.hash)
		if err != nil {
			return fmt.Errorf("replay %q: %w", r.scope.Key, err)
		}
		if claim != nil || replay == nil || string(replay.Body) != r.body {
			return fmt.Errorf("replay %q: claim %v, response %+v", r.scope.Key, claim, replay)
		}
	}
	return nil
}

func (b *keysBundle) usage(tb testing.TB) map[string]int {
	tb.Helper()
	st := store.New(b.db, b.rotated, store.Options{})
	us, err := st.KeyUsage(context.Background())
	testenv.Must(tb, err)
	out := map[string]int{}
	for _, u := range us {
		out[fmt.Sprintf("%s v%d", u.KeyID, u.AADVersion)] += u.Rows
	}
	return out
}

// verifySigned runs a signed request for m through an auth.Verifier backed
// by st, as the api does.
func verifySigned(tb testing.TB, st *store.Store, m seededMerchant) {
	tb.Helper()
	v := &auth.Verifier{Store: st, Nonces: &memNonces{}}
	r := httptest.NewRequest("GET", "/v1/orders", nil)
	testenv.Must(tb, auth.SignRequest(r, m.clientID, m.clientSecret, time.Now()))
	got, err := v.Verify(context.Background(), r, nil)
	if err != nil || got != m.id {
		tb.Fatalf("Verify = %q, %v; want %q", got, err, m.id)
	}
}

type memNonces struct {
	mu   sync.Mutex
	used map[string]bool
}

func (n *memNonces) Use(_ context.Context, clientID, nonce string, _ time.Duration) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.used == nil {
		n.used = map[string]bool{}
	}
	k := clientID + ":" + nonce
	fresh := !n.used[k]
	n.used[k] = true
	return fresh, nil
}

// (a) and (c): rows under the old key, with old and new associated data,
// are rewritten under the new primary, still decrypt and verify requests,
// decrypt with a keyring that no longer has the old key, and a second run
// rewrites nothing.
func TestReencryptMovesEveryRowToThePrimaryKey(t *testing.T) {
	t.Parallel()
	b := setupKeys(t, 6, 6)
	ctx := context.Background()
	rotated := store.New(b.db, b.rotated, store.Options{})
	if diff := cmp.Diff(map[string]int{"old v1": 11, "old v2": 7}, b.usage(t)); diff != "" {
		t.Fatalf("seeded usage (-want +got):\n%s", diff)
	}
	// Both formats read and verify before the run.
	testenv.Must(t, b.readAll(ctx, rotated))
	for _, m := range b.merchants {
		verifySigned(t, rotated, m)
	}

	var reports []store.ReencryptProgress
	n, err := rotated.ReencryptSecrets(ctx, 4, func(p store.ReencryptProgress) { reports = append(reports, p) })
	testenv.Must(t, err)
	if n != b.rows() {
		t.Fatalf("re-encrypted %d rows, want %d", n, b.rows())
	}
	if last := reports[len(reports)-1]; last.Done != n || last.Left != 0 || len(reports) < 5 {
		t.Fatalf("progress reports: %+v", reports)
	}
	if diff := cmp.Diff(map[string]int{"new v2": b.rows()}, b.usage(t)); diff != "" {
		t.Fatalf("usage after the run (-want +got):\n%s", diff)
	}

	newOnly := store.New(b.db, b.newOnly, store.Options{})
	testenv.Must(t, b.readAll(ctx, newOnly))
	for _, m := range b.merchants {
		verifySigned(t, newOnly, m)
	}
	// The old keyring alone can read nothing any more.
	if err := b.readAll(ctx, store.New(b.db, b.oldKeys, store.Options{})); !errors.Is(err, secretbox.ErrUnknownKey) {
		t.Fatalf("old keyring after the run: %v, want ErrUnknownKey", err)
	}

	n, err = rotated.ReencryptSecrets(ctx, 4, nil)
	if err != nil || n != 0 {
		t.Fatalf("second run: %d rows, %v; want 0, nil", n, err)
	}
	n, err = newOnly.ReencryptSecrets(ctx, 4, nil)
	if err != nil || n != 0 {
		t.Fatalf("run with the old key dropped: %d rows, %v; want 0, nil", n, err)
	}
}

// (b): two runs at once, with readers and a merchant rotating its secrets
// meanwhile: every row stays readable throughout, no row is rewritten
// twice, no concurrent write is lost, and everything ends on the primary.
func TestReencryptConcurrentRunsAndReaders(t *testing.T) {
	t.Parallel()
	b := setupKeys(t, 30, 20)
	ctx := context.Background()
	runners := []*store.Store{store.New(b.db, b.rotated, store.Options{}), store.New(b.db, b.rotated, store.Options{})}
	reader := store.New(b.db, b.rotated, store.Options{})

	// A merchant rotates its client secret during the run: a new one, then
	// the seeded one revoked.
	rotating := b.merchants[len(b.merchants)/2]
	b.rotating = rotating.id

	var stop atomic.Bool
	var readers sync.WaitGroup
	readErrs := make(chan error, 4)
	for range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for !stop.Load() {
				if err := b.readAll(ctx, reader); err != nil {
					readErrs <- err
					return
				}
			}
		}()
	}
	var rotatedSecret string
	readers.Add(1)
	go func() {
		defer readers.Done()
		secID, secret, err := reader.AddSecret(ctx, rotating.id, "client")
		if err != nil {
			readErrs <- err
			return
		}
		var oldID string
		if err := b.db.Get(&oldID, `SELECT secret_id FROM merchant_secrets WHERE merchant_id = $1 AND kind = 'client' AND secret_id <> $2`, rotating.id, secID); err != nil {
			readErrs <- err
			return
		}
		if err := reader.RevokeSecret(ctx, rotating.id, oldID); err != nil {
			readErrs <- err
			return
		}
		rotatedSecret = secret
	}()

	var runs sync.WaitGroup
	counts := make([]int, len(runners))
	runErrs := make([]error, len(runners))
	for i, st := range runners {
		runs.Add(1)
		go func() {
			defer runs.Done()
			counts[i], runErrs[i] = st.ReencryptSecrets(ctx, 3, nil)
		}()
	}
	runs.Wait()
	stop.Store(true)
	readers.Wait()
	close(readErrs)
	for err := range readErrs {
		t.Fatalf("during the runs: %v", err)
	}
	for i, err := range runErrs {
		testenv.Must(t, err)
		t.Logf("run %d re-encrypted %d rows", i, counts[i])
	}
	// The added secret was written under the primary already; the revoked
	// one is re-encrypted like any other row.
	if total := counts[0] + counts[1]; total != b.rows() {
		t.Fatalf("runs re-encrypted %d + %d rows, want %d in all", counts[0], counts[1], b.rows())
	}
	if diff := cmp.Diff(map[string]int{"new v2": b.rows() + 1}, b.usage(t)); diff != "" {
		t.Fatalf("usage after the runs (-want +got):\n%s", diff)
	}
	newOnly := store.New(b.db, b.newOnly, store.Options{})
	for i := range b.merchants {
		if b.merchants[i].id == rotating.id {
			b.merchants[i].clientSecret = rotatedSecret
		}
	}
	testenv.Must(t, b.readAll(ctx, newOnly))
	c, err := newOnly.Credentials(ctx, rotating.clientID)
	testenv.Must(t, err)
	if diff := cmp.Diff([]string{rotatedSecret}, c.Secrets); diff != "" {
		t.Fatalf("rotated merchant's secrets (-want +got):\n%s", diff)
	}
}

// (d): a run cut short after its first batch leaves every row readable,
// and the next run finishes the rest.
func TestReencryptResumesAfterAnInterruptedRun(t *testing.T) {
	t.Parallel()
	b := setupKeys(t, 8, 4)
	rotated := store.New(b.db, b.rotated, store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	n, err := rotated.ReencryptSecrets(ctx, 5, func(store.ReencryptProgress) { cancel() })
	if !errors.Is(err, context.Canceled) || n != 5 {
		t.Fatalf("interrupted run: %d rows, %v; want 5, context.Canceled", n, err)
	}
	if got := b.usage(t)["new v2"]; got != 5 {
		t.Fatalf("%d rows on the new key after the first batch, want 5", got)
	}
	testenv.Must(t, b.readAll(context.Background(), rotated))

	n, err = rotated.ReencryptSecrets(context.Background(), 5, nil)
	testenv.Must(t, err)
	if n != b.rows()-5 {
		t.Fatalf("second run re-encrypted %d rows, want %d", n, b.rows()-5)
	}
	testenv.Must(t, b.readAll(context.Background(), store.New(b.db, b.newOnly, store.Options{})))
}

// A row whose key is not in the keyring is reported, and does not stop the
// others.
func TestReencryptReportsRowsItCannotDecrypt(t *testing.T) {
	t.Parallel()
	b := setupKeys(t, 3, 0)
	lost := keyring(t, newKey(t, "lost"))
	sealV1Secret(t, b.db, lost, secretIDOf(t, b.db, b.merchants[1].id, "callback"), b.merchants[1].callbackSecret)
	rotated := store.New(b.db, b.rotated, store.Options{})
	n, err := rotated.ReencryptSecrets(context.Background(), 2, nil)
	if !errors.Is(err, store.ErrReencryptFailed) || n != b.rows()-1 {
		t.Fatalf("run: %d rows, %v; want %d, ErrReencryptFailed", n, err, b.rows()-1)
	}
	if !strings.Contains(err.Error(), `key "lost"`) || strings.Contains(err.Error(), b.merchants[1].callbackSecret) {
		t.Fatalf("error does not name the key, or shows the secret: %v", err)
	}
	if diff := cmp.Diff(map[string]int{"new v2": b.rows() - 1, "lost v1": 1}, b.usage(t)); diff != "" {
		t.Fatalf("usage (-want +got):\n%s", diff)
	}
}

func secretIDOf(tb testing.TB, db *sqlx.DB, merchantID, kind string) string {
	tb.Helper()
	var id string
	testenv.Must(tb, db.Get(&id, `SELECT secret_id FROM merchant_secrets WHERE merchant_id = $1 AND kind = $2`, merchantID, kind))
	return id
}

// A ciphertext bound to one merchant and kind does not decrypt anywhere
// else: not when its row is moved to another merchant or kind, not when it
// is copied into another row, not when its row claims the old AAD version.
func TestSecretsAreBoundToTheirMerchantAndKind(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	ctx := context.Background()
	a, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "a", CallbackURL: "https://example.com/a"})
	testenv.Must(t, err)
	bm, err := st.CreateMerchant(ctx, store.NewMerchant{Name: "b", CallbackURL: "https://example.com/b"})
	testenv.Must(t, err)
	var versions []int
	testenv.Must(t, db.DB.Select(&versions, `SELECT aad_version FROM merchant_secrets`))
	if diff := cmp.Diff([]int{2, 2, 2, 2}, versions); diff != "" {
		t.Fatalf("new secrets' aad_version (-want +got):\n%s", diff)
	}

	// snapshot returns a function that puts every secret row back as it is now.
	snapshot := func(t *testing.T) func() {
		t.Helper()
		var rows []struct {
			SecretID   string `db:"secret_id"`
			MerchantID string `db:"merchant_id"`
			Kind       string `db:"kind"`
			Version    int    `db:"aad_version"`
			Ciphertext []byte `db:"ciphertext"`
		}
		testenv.Must(t, db.DB.Select(&rows, `SELECT secret_id, merchant_id, kind, aad_version, ciphertext FROM merchant_secrets`))
		return func() {
			for _, r := range rows {
				_, err := db.DB.Exec(`UPDATE merchant_secrets SET merchant_id = $2, kind = $3, aad_version = $4, ciphertext = $5 WHERE secret_id = $1`,
					r.SecretID, r.MerchantID, r.Kind, r.Version, r.Ciphertext)
				testenv.Must(t, err)
			}
		}
	}
	// tamper runs q and undoes it when t ends.
	tamper := func(t *testing.T, q string) {
		t.Helper()
		t.Cleanup(snapshot(t))
		_, err := db.DB.Exec(q)
		testenv.Must(t, err)
	}
	wantDecryptError := func(t *testing.T, what string, err error) {
		t.Helper()
		if !errors.Is(err, secretbox.ErrDecrypt) {
			t.Fatalf("%s: err = %v, want ErrDecrypt", what, err)
		}
	}

	// Subtests run one after another: each tampers with the same rows and undoes it.
	t.Run("row moved to another merchant", func(t *testing.T) {
		tamper(t, fmt.Sprintf(`UPDATE merchant_secrets SET merchant_id = '%s' WHERE secret_id = '%s'`, bm.MerchantID, a.ClientSecretID))
		_, err := st.Credentials(ctx, bm.ClientID)
		wantDecryptError(t, "b's credentials", err)
	})
	t.Run("callback row moved to the client kind", func(t *testing.T) {
		tamper(t, fmt.Sprintf(`UPDATE merchant_secrets SET kind = 'client' WHERE secret_id = '%s'`, a.CallbackSecretID))
		_, err := st.Credentials(ctx, a.ClientID)
		wantDecryptError(t, "a's credentials", err)
	})
	t.Run("client row moved to the callback kind", func(t *testing.T) {
		tamper(t, fmt.Sprintf(`UPDATE merchant_secrets SET kind = 'callback' WHERE secret_id = '%s'`, a.ClientSecretID))
		_, err := st.CallbackSecrets(ctx, a.MerchantID)
		wantDecryptError(t, "a's callback secrets", err)
	})
	t.Run("ciphertext copied into another merchant's row", func(t *testing.T) {
		tamper(t, fmt.Sprintf(`UPDATE merchant_secrets SET ciphertext = (SELECT ciphertext FROM merchant_secrets WHERE secret_id = '%s') WHERE secret_id = '%s'`, a.CallbackSecretID, bm.CallbackSecretID))
		_, err := st.CallbackSecrets(ctx, bm.MerchantID)
		wantDecryptError(t, "b's callback secrets", err)
	})
	t.Run("row downgraded to the old AAD version", func(t *testing.T) {
		tamper(t, fmt.Sprintf(`UPDATE merchant_secrets SET aad_version = 1 WHERE secret_id = '%s'`, a.ClientSecretID))
		_, err := st.Credentials(ctx, a.ClientID)
		wantDecryptError(t, "a's credentials", err)
	})
	t.Run("stored response moved to another merchant", func(t *testing.T) {
		sc := store.IdemScope{MerchantID: a.MerchantID, Method: "POST", Path: "/v1/orders", Key: "k-1"}
		hash := store.HashToken("body")
		claim, _, err := st.ClaimIdempotency(ctx, sc, hash)
		testenv.Must(t, err)
		_, err = st.CreateOrder(ctx, store.NewOrder{MerchantID: a.MerchantID, Amount: 1000, Currency: "KRW", OrderName: "k", TokenHash: hash, TTL: time.Hour},
			&store.IdemFinish[payment.Order]{Claim: claim, Render: func(payment.Order) (int, []byte, error) { return 201, []byte(`{}`), nil }})
		testenv.Must(t, err)
		_, err = db.DB.Exec(`UPDATE idempotency_keys SET merchant_id = $1 WHERE merchant_id = $2 AND idem_key = 'k-1'`, bm.MerchantID, a.MerchantID)
		testenv.Must(t, err)
		sc.MerchantID = bm.MerchantID
		_, _, err = st.ClaimIdempotency(ctx, sc, hash)
		wantDecryptError(t, "replay for b", err)
	})
	// Untampered, everything reads.
	for _, m := range []store.CreatedMerchant{a, bm} {
		c, err := st.Credentials(ctx, m.ClientID)
		testenv.Must(t, err)
		if diff := cmp.Diff([]string{m.ClientSecret}, c.Secrets); diff != "" {
			t.Fatalf("credentials (-want +got):\n%s", diff)
		}
	}
}
