package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/secretbox"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// A rotation as an operator runs it: status shows the rows under the old
// key, reencrypt moves them in batches with progress, status then says the
// old key can go, and a second run changes nothing.
func TestKeysReencryptAndStatus(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	oldEntry, err := secretbox.GenerateKeyString("k2025")
	testenv.Must(t, err)
	newEntry, err := secretbox.GenerateKeyString("k2026")
	testenv.Must(t, err)
	oldKeys, err := secretbox.ParseKeys(oldEntry)
	testenv.Must(t, err)
	ctx := context.Background()
	before := store.New(db.DB, oldKeys, store.Options{})
	for range 3 {
		_, err := before.CreateMerchant(ctx, store.NewMerchant{Name: "m", CallbackURL: "https://example.com/cb"})
		testenv.Must(t, err)
	}

	env := map[string]string{"PAYRAIL_DATABASE_URL": db.URL, "PAYRAIL_ENCRYPTION_KEYS": newEntry + "," + oldEntry}
	getenv := func(k string) string { return env[k] }
	ctl := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, args, getenv, &out); err != nil {
			t.Fatalf("payrailctl %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		if s := out.String(); strings.Contains(s, strings.SplitN(oldEntry, ":", 2)[1]) || strings.Contains(s, strings.SplitN(newEntry, ":", 2)[1]) {
			t.Fatalf("payrailctl %s prints key material:\n%s", strings.Join(args, " "), s)
		}
		return out.String()
	}
	wantLines := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}

	wantLines(ctl("keys", "status"),
		"merchant_secrets.client    k2025  v2   3",
		"merchant_secrets.callback  k2025  v2   3",
		"key k2026 (primary): 0 rows",
		"key k2025: 6 rows: still needed",
		"6 rows to re-encrypt")
	wantLines(ctl("keys", "reencrypt", "--batch", "4"),
		`re-encrypting under key "k2026" with AAD v2, 4 rows per transaction`,
		"4 done, 2 left",
		"6 done, 0 left",
		"re-encrypted 6 rows",
		"key k2025: 0 rows: no longer needed, remove it from PAYRAIL_ENCRYPTION_KEYS",
		`every row is under key "k2026" with AAD v2`)
	wantLines(ctl("keys", "reencrypt"), "re-encrypted 0 rows")

	// With the old key gone, status still reads and says all is on the primary.
	env["PAYRAIL_ENCRYPTION_KEYS"] = newEntry
	wantLines(ctl("keys", "status"), "key k2026 (primary): 6 rows", `every row is under key "k2026" with AAD v2`)
	if strings.Contains(ctl("keys", "status"), "k2025") {
		t.Error("status still names the removed key")
	}

	var out bytes.Buffer
	for _, args := range [][]string{{"keys"}, {"keys", "rotate"}, {"keys", "reencrypt", "--batch", "0"}, {"keys", "status", "x"}} {
		if err := run(ctx, args, getenv, &out); err == nil || !strings.Contains(err.Error(), "usage: payrailctl keys") {
			t.Errorf("payrailctl %s: err = %v, want the usage", strings.Join(args, " "), err)
		}
	}
}
