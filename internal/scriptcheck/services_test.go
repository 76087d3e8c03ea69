package scriptcheck

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq" // postgres driver
	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/testenv"
)

// The PostgreSQL and Redis that scripts/services.sh starts are not open to
// every local user (security review item 5): no trust auth, no password-less
// or default-password login, the application role is no superuser, Redis
// wants its password, and the secrets and data under .run/ are private.
// Servers the scripts merely found (configured URLs) are the operator's
// business and are not judged here.
func TestPrivateServicesRequirePasswords(t *testing.T) {
	root := repoRoot(t)
	started, err := os.ReadFile(filepath.Join(root, ".run", "started"))
	if err != nil || !strings.Contains(string(started), "pg") || !strings.Contains(string(started), "redis") {
		t.Skip("PostgreSQL/Redis were not started by scripts/services.sh in this checkout (found at configured URLs)")
	}
	admin, err := url.Parse(testenv.Env("PAYRAIL_TEST_DATABASE_URL"))
	if err != nil || admin.Host == "" {
		t.Fatalf("PAYRAIL_TEST_DATABASE_URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	login := func(user, password string) error {
		u := *admin
		u.User = url.UserPassword(user, password)
		if password == "" {
			u.User = url.User(user)
		}
		u.Path = "/postgres"
		db, err := sql.Open("postgres", u.String())
		if err != nil {
			return err
		}
		defer db.Close()
		return db.PingContext(ctx)
	}
	for _, c := range []struct{ user, password string }{
		{"postgres", ""}, {"payrail", ""}, {"payrail", "payrail"}, {"postgres", "postgres"},
	} {
		if err := login(c.user, c.password); err == nil {
			t.Errorf("PostgreSQL let %s in with password %q over TCP", c.user, c.password)
		}
	}
	db, err := sql.Open("postgres", admin.String())
	testenv.Must(t, err)
	defer db.Close()
	var super, createdb bool
	testenv.Must(t, db.QueryRowContext(ctx, `SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = 'payrail'`).Scan(&super, &createdb))
	if super {
		t.Error("the application role payrail is a superuser")
	}
	var hba string
	testenv.Must(t, db.QueryRowContext(ctx, `SELECT string_agg(auth_method, ',') FROM pg_hba_file_rules WHERE auth_method IS NOT NULL`).Scan(&hba))
	if strings.Contains(hba, "trust") {
		t.Errorf("pg_hba.conf still trusts someone: %s", hba)
	}

	ru, err := url.Parse(testenv.Env("PAYRAIL_TEST_REDIS_URL"))
	testenv.Must(t, err)
	rdb := redis.NewClient(&redis.Options{Addr: ru.Host})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("Redis without a password answered %v, want NOAUTH", err)
	}

	for _, p := range []string{".run/secrets", ".run/env", ".run/test.env"} {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			continue // .run/env exists only after make up
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v: readable by others", p, fi.Mode().Perm())
		}
	}
	_ = filepath.WalkDir(filepath.Join(root, ".run", "logs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil && fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s is %v: readable by others", p, fi.Mode().Perm())
			}
		}
		return nil
	})
}
