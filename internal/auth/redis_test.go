package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/testredis"
)

// redisNonces returns a RedisNonces on a Redis database of its own (the
// shared allocator: a hard-coded index could be another test's, and be
// flushed under it), with a random key prefix deleted when the test ends.
func redisNonces(tb testing.TB) (RedisNonces, *redis.Client) {
	tb.Helper()
	client := testredis.New(tb).Client

	var b [8]byte
	rand.Read(b[:])
	prefix := "payrail:test:" + hex.EncodeToString(b[:]) + ":nonce:"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			tb.Logf("cleanup of %s*: %v", prefix, err)
		}
	})
	return RedisNonces{Client: client, Prefix: prefix}, client
}

func TestRedisNonces(t *testing.T) {
	t.Parallel()
	store, client := redisNonces(t)
	ctx := context.Background()

	fresh, err := store.Use(ctx, "cli_1", "nonce-0123456789abcdef", 10*time.Minute)
	if err != nil || !fresh {
		t.Fatalf("first Use = %v, %v; want true", fresh, err)
	}
	fresh, err = store.Use(ctx, "cli_1", "nonce-0123456789abcdef", 10*time.Minute)
	if err != nil || fresh {
		t.Fatalf("second Use = %v, %v; want false", fresh, err)
	}
	fresh, err = store.Use(ctx, "cli_2", "nonce-0123456789abcdef", 10*time.Minute)
	if err != nil || !fresh {
		t.Fatalf("other client Use = %v, %v; want true", fresh, err)
	}

	ttl, err := client.TTL(ctx, store.Prefix+"cli_1:nonce-0123456789abcdef").Result()
	if err != nil || ttl <= 9*time.Minute || ttl > 10*time.Minute {
		t.Fatalf("TTL = %v, %v; want about 10m", ttl, err)
	}

	// Expiry: a short TTL frees the nonce again.
	if fresh, err := store.Use(ctx, "cli_1", "short-lived-nonce-01", time.Second); err != nil || !fresh {
		t.Fatalf("Use = %v, %v", fresh, err)
	}
	time.Sleep(1100 * time.Millisecond)
	if fresh, err := store.Use(ctx, "cli_1", "short-lived-nonce-01", time.Second); err != nil || !fresh {
		t.Fatalf("Use after expiry = %v, %v; want true", fresh, err)
	}
}

func TestRedisNoncesConcurrentUseOneWinner(t *testing.T) {
	t.Parallel()
	store, _ := redisNonces(t)
	const n = 20
	results := make(chan bool, n)
	for range n {
		go func() {
			fresh, err := store.Use(context.Background(), "cli_1", "raced-nonce-0123456789", time.Minute)
			if err != nil {
				t.Error(err)
			}
			results <- fresh
		}()
	}
	wins := 0
	for range n {
		if <-results {
			wins++
		}
	}
	if wins != 1 {
		t.Fatalf("%d concurrent uses succeeded, want exactly 1", wins)
	}
}

func TestRedisNoncesUnreachable(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback refuses connections; no real Redis is needed.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	v, b := setup(t)
	v.Nonces = RedisNonces{Client: client}
	r, body := b.req(nil).request()
	_, err := v.Verify(context.Background(), r, body)
	wantCode(t, err, CodeAuthUnavailable)
}
