// Package testredis gives a test its own Redis database index on the
// server `make test` found or started, flushed before and after. It is
// the Redis half of testenv, kept apart so that packages testenv itself
// imports (auth, through store) can use it in their own tests without an
// import cycle.
package testredis

import (
	"context"
	"net/url"
	"strconv"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/envfile"
)

var getenv = sync.OnceValue(func() func(string) string { return envfile.Getenv(".run/test.env", ".run/env") })

// DB is one test's Redis database.
type DB struct {
	Options *redis.Options
	Client  *redis.Client
	// URL is redis://host:port/N for processes started by the test.
	URL string
}

// New allocates a database index no other running test holds (a counter
// in DB 0 hands them out round-robin over the server's databases) and
// flushes it now and when tb ends.
func New(tb testing.TB) DB {
	tb.Helper()
	raw := getenv()("PAYRAIL_TEST_REDIS_URL")
	if raw == "" {
		tb.Fatal("PAYRAIL_TEST_REDIS_URL is not set: run the tests with `make test`")
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		tb.Fatalf("PAYRAIL_TEST_REDIS_URL: %v", err)
	}
	ctx := context.Background()
	ctl := redis.NewClient(opt)
	defer ctl.Close()
	dbs := 16
	if v, err := ctl.ConfigGet(ctx, "databases").Result(); err == nil {
		if n, err := strconv.Atoi(v["databases"]); err == nil && n > 1 {
			dbs = n
		}
	}
	seq, err := ctl.Incr(ctx, "payrail:test:dbseq").Result()
	if err != nil {
		tb.Fatalf("redis: %v", err)
	}
	idx := 1 + int(seq%int64(dbs-1))
	o := *opt
	o.DB = idx
	c := redis.NewClient(&o)
	if err := c.FlushDB(ctx).Err(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c.FlushDB(context.Background())
		c.Close()
	})
	u, _ := url.Parse(raw)
	u.Path = "/" + strconv.Itoa(idx)
	return DB{Options: &o, Client: c, URL: u.String()}
}
