package auth

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

type countingStore struct {
	calls atomic.Int32
	creds Credentials
}

func (s *countingStore) Credentials(ctx context.Context, clientID string) (Credentials, error) {
	s.calls.Add(1)
	if clientID == "unknown" {
		return Credentials{}, ErrUnknownClient
	}
	return s.creds, nil
}

func TestCachedCredentials(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	inner := &countingStore{creds: Credentials{MerchantID: "m1", Secrets: []string{"s1"}}}
	c := &CachedCredentials{Store: inner, TTL: time.Second, Now: func() time.Time { return now }}
	ctx := context.Background()
	for range 3 {
		got, err := c.Credentials(ctx, "ck_1")
		if err != nil || got.MerchantID != "m1" {
			t.Fatalf("got %+v, %v", got, err)
		}
	}
	if n := inner.calls.Load(); n != 1 {
		t.Fatalf("store read %d times within the TTL, want 1", n)
	}
	now = now.Add(time.Second)
	c.Credentials(ctx, "ck_1")
	if n := inner.calls.Load(); n != 2 {
		t.Fatalf("store read %d times after the TTL, want 2", n)
	}
	c.Invalidate()
	inner.creds.Suspended = true
	got, _ := c.Credentials(ctx, "ck_1")
	if !got.Suspended {
		t.Fatal("a lookup after Invalidate must see the change")
	}
	for range 2 {
		if _, err := c.Credentials(ctx, "unknown"); err != ErrUnknownClient {
			t.Fatalf("err = %v", err)
		}
	}
	if n := inner.calls.Load(); n != 5 {
		t.Fatalf("failed lookups must not be cached: %d reads, want 5", n)
	}
}
