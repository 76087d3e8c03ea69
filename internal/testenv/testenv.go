// Package testenv gives each test its own PostgreSQL database (cloned from a
// migrated template) and its own Redis database index, on the servers that
// `make test` found or started, so tests run in parallel and leave nothing
// behind.
package testenv

import (
	"context"
	"database/sql"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // postgres driver
	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/envfile"
	"github.com/payrail/payrail/internal/secretbox"
	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testredis"
	"github.com/payrail/payrail/migrations"
)

// Env reads a variable, falling back to the .run/test.env and .run/env files
// that `make test` and `make up` write.
func Env(key string) string { return getenv()(key) }

var getenv = sync.OnceValue(func() func(string) string { return envfile.Getenv(".run/test.env", ".run/env") })

func databaseURL(tb testing.TB) string {
	u := Env("PAYRAIL_TEST_DATABASE_URL")
	if u == "" {
		tb.Fatal("PAYRAIL_TEST_DATABASE_URL is not set: run the tests with `make test`, which finds or starts PostgreSQL and Redis")
	}
	return u
}

func withDBName(raw, name string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + name
	return u.String()
}

var templateOnce sync.Map // admin url → *sync.Once-guarded result

type tmplResult struct {
	once sync.Once
	name string
	err  error
}

// template creates (once per server, guarded by an advisory lock across test
// processes) a database with every migration applied.
func template(tb testing.TB, admin string) string {
	v, _ := templateOnce.LoadOrStore(admin, &tmplResult{})
	r := v.(*tmplResult)
	r.once.Do(func() {
		r.name, r.err = buildTemplate(admin)
	})
	if r.err != nil {
		tb.Fatalf("test template database: %v", r.err)
	}
	return r.name
}

func migrationsDigest() string {
	entries, _ := migrations.FS.ReadDir(".")
	h := uint64(14695981039346656037)
	for _, e := range entries {
		b, _ := migrations.FS.ReadFile(e.Name())
		for _, c := range append([]byte(e.Name()), b...) {
			h ^= uint64(c)
			h *= 1099511628211
		}
	}
	return strconv.FormatUint(h, 36)
}

func buildTemplate(admin string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := "payrail_tmpl_" + migrationsDigest()
	db, err := sql.Open("postgres", admin)
	if err != nil {
		return "", err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(7316001)`); err != nil {
		return "", err
	}
	defer conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock(7316001)`) //nolint:errcheck
	var exists bool
	if err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_build"
	conn.ExecContext(ctx, `DROP DATABASE IF EXISTS `+building+` WITH (FORCE)`) //nolint:errcheck
	if _, err := conn.ExecContext(ctx, `CREATE DATABASE `+building); err != nil {
		return "", err
	}
	tdb, err := sql.Open("postgres", withDBName(admin, building))
	if err != nil {
		return "", err
	}
	err = store.Migrate(ctx, tdb, nil)
	tdb.Close()
	if err != nil {
		return "", err
	}
	if _, err := conn.ExecContext(ctx, `ALTER DATABASE `+building+` RENAME TO `+name); err != nil {
		return "", err
	}
	return name, nil
}

// Database is a fresh, migrated database for one test.
type Database struct {
	URL string
	DB  *sqlx.DB
}

// NewDatabase creates a database for tb from the migrated template and drops
// it when tb ends.
func NewDatabase(tb testing.TB) Database {
	tb.Helper()
	admin := databaseURL(tb)
	tmpl := template(tb, admin)
	name := "payrail_t_" + strings.ToLower(store.NewID("", 12))
	adminDB, err := sql.Open("postgres", admin)
	if err != nil {
		tb.Fatal(err)
	}
	defer adminDB.Close()
	ctx := context.Background()
	// CREATE DATABASE … TEMPLATE fails while another session is copying the
	// same template; retry briefly.
	for i := 0; ; i++ {
		_, err = adminDB.ExecContext(ctx, `CREATE DATABASE `+name+` TEMPLATE `+tmpl)
		if err == nil || i > 50 || !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	u := withDBName(admin, name)
	// With the statement cache, as make up runs payrail (a direct connection).
	db, err := store.Open(ctx, u, store.Pool{MaxConns: 20, StatementCache: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		db.Close()
		a, err := sql.Open("postgres", admin)
		if err != nil {
			return
		}
		defer a.Close()
		if _, err := a.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			tb.Logf("drop test database %s: %v", name, err)
		}
	})
	return Database{URL: u, DB: db}
}

// Redis is one Redis database index reserved for a test.
type Redis struct {
	Options *redis.Options
	Client  *redis.Client
	// URL is redis://host:port/N for processes started by the test.
	URL string
}

// NewRedis reserves a Redis database index for tb, flushes it, and flushes it
// again when tb ends.
func NewRedis(tb testing.TB) Redis {
	tb.Helper()
	r := testredis.New(tb)
	return Redis{Options: r.Options, Client: r.Client, URL: r.URL}
}

// Keyring returns a fixed test encryption keyring.
func Keyring(tb testing.TB) *secretbox.Keyring {
	tb.Helper()
	k, err := secretbox.ParseKeys(KeysString)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// KeysString is the test value of PAYRAIL_ENCRYPTION_KEYS.
const KeysString = "t1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// Poll calls cond until it returns true or the deadline passes.
func Poll(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(wait)
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}

// Must fails tb on err.
func Must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
