// Package lock gives workers a per-order mutual exclusion on Redis (redsync),
// so two workers do not call the PG for one order at once. It is an
// optimisation of work, not the guard of correctness: the version fence in the
// store is that.
package lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
)

// ErrTaken means another worker holds the lock: retry soon, it is not a failure.
var ErrTaken = errors.New("lock: taken")

// Locker hands out per-key locks.
type Locker struct {
	rs  *redsync.Redsync
	ttl time.Duration
	log *slog.Logger
	// NoExtend stops the extension while fn runs; tests use it to make a
	// lock lapse mid-call, as a long GC pause would.
	NoExtend bool
}

// New returns a Locker whose locks live ttl unless extended.
func New(client redis.UniversalClient, ttl time.Duration, log *slog.Logger) *Locker {
	return &Locker{rs: redsync.New(goredis.NewPool(client)), ttl: ttl, log: log}
}

// TTL is the lock's time to live.
func (l *Locker) TTL() time.Duration { return l.ttl }

// Do runs fn holding the lock named key, extending it every ttl/3 while fn
// runs. It returns ErrTaken when another holder has it. If an extension fails
// fn goes on: a worker whose lock lapsed is stopped by the version fence.
func (l *Locker) Do(ctx context.Context, key string, fn func(ctx context.Context) error) error {
	m := l.rs.NewMutex("payrail:lock:"+key, redsync.WithExpiry(l.ttl), redsync.WithTries(1))
	if err := m.TryLockContext(ctx); err != nil {
		var taken *redsync.ErrTaken
		if errors.As(err, &taken) || errors.Is(err, redsync.ErrFailed) {
			return ErrTaken
		}
		return fmt.Errorf("lock %s: %w", key, err)
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if l.NoExtend {
			<-done
			return
		}
		t := time.NewTicker(l.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if ok, err := m.ExtendContext(context.WithoutCancel(ctx)); !ok || err != nil {
					l.log.Warn("lock extension failed; the version fence still guards", "lock", key, "err", err)
					return
				}
			}
		}
	}()
	err := fn(ctx)
	close(done)
	<-stopped
	if _, uerr := m.UnlockContext(context.WithoutCancel(ctx)); uerr != nil && !errors.Is(uerr, redsync.ErrLockAlreadyExpired) {
		l.log.Debug("unlock", "lock", key, "err", uerr)
	}
	return err
}
