package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/payrail/payrail/internal/secretbox"
	"github.com/payrail/payrail/internal/store"
)

const keysUsage = `usage: payrailctl keys status               rows per encryption key id and AAD version
       payrailctl keys reencrypt [--batch N]  re-encrypt every row not under the primary key (docs/ops.md)`

// keys runs `payrailctl keys status` and `payrailctl keys reencrypt`. Both
// talk to PostgreSQL directly (PAYRAIL_DATABASE_URL) with the keyring of
// PAYRAIL_ENCRYPTION_KEYS, which must be the one the api and workers run
// with: reencrypt seals under its first key.
func (c *cli) keys(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New(keysUsage)
	}
	switch args[0] {
	case "status":
		if len(args) != 1 {
			return errors.New(keysUsage)
		}
		st, keys, done, err := c.keyStore(ctx)
		if err != nil {
			return err
		}
		defer done()
		_, err = c.keysStatus(ctx, st, keys)
		return err
	case "reencrypt":
		fs := flag.NewFlagSet("keys reencrypt", flag.ContinueOnError)
		fs.SetOutput(c.out)
		batch := fs.Int("batch", 500, "rows per transaction")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 0 || *batch < 1 {
			return errors.New(keysUsage)
		}
		st, keys, done, err := c.keyStore(ctx)
		if err != nil {
			return err
		}
		defer done()
		return c.keysReencrypt(ctx, st, keys, *batch)
	}
	return errors.New(keysUsage)
}

func (c *cli) keyStore(ctx context.Context) (*store.Store, *secretbox.Keyring, func(), error) {
	url, err := c.need("PAYRAIL_DATABASE_URL")
	if err != nil {
		return nil, nil, nil, err
	}
	raw, err := c.need("PAYRAIL_ENCRYPTION_KEYS")
	if err != nil {
		return nil, nil, nil, err
	}
	keys, err := secretbox.ParseKeys(raw)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("PAYRAIL_ENCRYPTION_KEYS: %w", err)
	}
	db, err := store.Open(ctx, url, store.Pool{MaxConns: 2})
	if err != nil {
		return nil, nil, nil, err
	}
	return store.New(db, keys, store.Options{}), keys, func() { db.Close() }, nil
}

func (c *cli) keysReencrypt(ctx context.Context, st *store.Store, keys *secretbox.Keyring, batch int) error {
	fmt.Fprintf(c.out, "re-encrypting under key %q with AAD v%d, %d rows per transaction\n", keys.PrimaryID(), secretbox.AADVersion, batch)
	n, err := st.ReencryptSecrets(ctx, batch, func(p store.ReencryptProgress) {
		fmt.Fprintf(c.out, "%d done, %d left\n", p.Done, p.Left)
	})
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(c.out, "interrupted after %d rows; every row is still readable, run again to continue\n", n)
		return err
	case err != nil && !errors.Is(err, store.ErrReencryptFailed):
		fmt.Fprintf(c.out, "stopped after %d rows; every row is still readable, run again to continue\n", n)
		return err
	}
	fmt.Fprintf(c.out, "re-encrypted %d rows\n", n)
	left, serr := c.keysStatus(context.WithoutCancel(ctx), st, keys)
	if err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	if left > 0 {
		// Written meanwhile by a replica that still encrypts with another key.
		return fmt.Errorf("%d rows are still not under key %q with AAD v%d: is every api and worker running with it first in PAYRAIL_ENCRYPTION_KEYS? Then run again", left, keys.PrimaryID(), secretbox.AADVersion)
	}
	return nil
}

// keysStatus prints the rows per kind, key id and AAD version, then per key
// id whether it is still needed, and returns how many rows are still to
// re-encrypt.
func (c *cli) keysStatus(ctx context.Context, st *store.Store, keys *secretbox.Keyring) (left int, err error) {
	usage, err := st.KeyUsage(ctx)
	if err != nil {
		return 0, err
	}
	primary := keys.PrimaryID()
	fmt.Fprintf(c.out, "PAYRAIL_ENCRYPTION_KEYS: %v (primary %q); current AAD version v%d\n\n", keys.IDs(), primary, secretbox.AADVersion)
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tKEY\tAAD\tROWS")
	perKey := map[string]int{}
	for _, u := range usage {
		fmt.Fprintf(tw, "%s\t%s\tv%d\t%d\n", u.Kind, u.KeyID, u.AADVersion, u.Rows)
		perKey[u.KeyID] += u.Rows
		if u.KeyID != primary || u.AADVersion != secretbox.AADVersion {
			left += u.Rows
		}
	}
	if len(usage) == 0 {
		fmt.Fprintln(tw, "(no encrypted rows)\t\t\t")
	}
	if err := tw.Flush(); err != nil {
		return 0, err
	}
	fmt.Fprintln(c.out)
	ids := keys.IDs()
	for id := range perKey {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		n := perKey[id]
		switch {
		case id == primary:
			fmt.Fprintf(c.out, "key %s (primary): %d rows\n", id, n)
		case !slices.Contains(keys.IDs(), id):
			fmt.Fprintf(c.out, "key %s: %d rows, NOT in PAYRAIL_ENCRYPTION_KEYS: they cannot be decrypted; put the key back\n", id, n)
		case n == 0:
			fmt.Fprintf(c.out, "key %s: 0 rows: no longer needed, remove it from PAYRAIL_ENCRYPTION_KEYS\n", id)
		default:
			fmt.Fprintf(c.out, "key %s: %d rows: still needed; run 'payrailctl keys reencrypt'\n", id, n)
		}
	}
	if left == 0 {
		fmt.Fprintf(c.out, "every row is under key %q with AAD v%d\n", primary, secretbox.AADVersion)
	} else {
		fmt.Fprintf(c.out, "%d rows to re-encrypt\n", left)
	}
	return left, nil
}
