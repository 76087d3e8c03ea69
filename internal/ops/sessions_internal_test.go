package ops

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/testredis"
)

// A session ends after Idle without a request and after TTL from login
// whatever its use; a request within Idle keeps it (the clock is moved,
// nothing sleeps).
func TestSessionIdleAndLifetime(t *testing.T) {
	t.Parallel()
	s := &Sessions{Redis: testredis.New(t).Client, TTL: 2 * time.Hour, Idle: 30 * time.Minute}
	ctx := context.Background()
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	id, _, err := s.Create(ctx, "opr_1", "alice", "192.0.2.7", t0)
	if err != nil {
		t.Fatal(err)
	}
	// Used every 29 minutes: alive for as long as the lifetime allows.
	at := t0
	for range 4 {
		at = at.Add(29 * time.Minute)
		sess, err := s.Get(ctx, id, at)
		if err != nil {
			t.Fatalf("used at +%s: %v", at.Sub(t0), err)
		}
		if sess.Addr != "192.0.2.7" || !sess.CreatedAt.Equal(t0) {
			t.Fatalf("session = %+v", sess)
		}
	}
	if _, err := s.Get(ctx, id, t0.Add(2*time.Hour)); !errors.Is(err, errNoSession) {
		t.Fatalf("at its lifetime: err = %v, want no session", err)
	}
	// Idle for 30 minutes: ended, and gone for good.
	id2, _, _ := s.Create(ctx, "opr_1", "alice", "192.0.2.7", t0)
	if _, err := s.Get(ctx, id2, t0.Add(30*time.Minute)); !errors.Is(err, errNoSession) {
		t.Fatalf("idle 30 min: err = %v, want no session", err)
	}
	if _, err := s.Get(ctx, id2, t0.Add(time.Minute)); !errors.Is(err, errNoSession) {
		t.Fatalf("an ended session came back: %v", err)
	}
}
