package ops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/ratelimit"
)

// LoginThrottle slows password guessing at the console's login, with its
// state in Redis so every api replica shares it:
//
//   - per source address, every attempt draws from a bucket (AddrLimit,
//     default 10 a minute, burst 10) through the isolation rate limiter;
//   - per operator name, NameFailures consecutive failures (default 5) lock
//     the name for FirstLock (30 s), doubling with each further failure up
//     to MaxLock (15 min); a success clears the name's count;
//   - at most MaxHashes bcrypt comparisons run at once in this process
//     (default 4): beyond that a login is refused at once with 503, not
//     queued, so parallel guesses cannot turn bcrypt into a CPU lever.
//
// A throttled attempt is refused before any bcrypt work, with 429 and
// Retry-After. The lock's end is stored as a time from Now (not a Redis
// TTL), so tests move the clock instead of sleeping; the keys also carry a
// TTL so they never outlive MaxLock plus the failure window.
type LoginThrottle struct {
	Redis   redis.UniversalClient
	Limiter *ratelimit.Limiter
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	AddrLimit          ratelimit.Limit
	NameFailures       int
	FirstLock, MaxLock time.Duration
	// FailureWindow is how long a name's failures are remembered after
	// the last one (default 15 min).
	FailureWindow time.Duration
	MaxHashes     int

	once sync.Once
	sem  chan struct{}
}

// Throttled is the answer to a refused attempt: the status, how long until
// it may try again, and why (shown on the login page).
type Throttled struct {
	Status     int
	RetryAfter time.Duration
	Reason     string
}

func (e *Throttled) Error() string {
	return fmt.Sprintf("login throttled (%s), retry in %s", e.Reason, e.RetryAfter)
}

func (t *LoginThrottle) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// defaults fills the zero settings once: Admit runs concurrently.
func (t *LoginThrottle) defaults() { t.once.Do(t.init) }

func (t *LoginThrottle) init() {
	if t.AddrLimit.PerSecond == 0 {
		t.AddrLimit = ratelimit.Limit{PerSecond: 10, Burst: 10, Per: time.Minute}
	}
	if t.NameFailures == 0 {
		t.NameFailures = 5
	}
	if t.FirstLock == 0 {
		t.FirstLock = 30 * time.Second
	}
	if t.MaxLock == 0 {
		t.MaxLock = 15 * time.Minute
	}
	if t.FailureWindow == 0 {
		t.FailureWindow = 15 * time.Minute
	}
	if t.MaxHashes == 0 {
		t.MaxHashes = 4
	}
	t.sem = make(chan struct{}, t.MaxHashes)
}

// nameKey is bounded whatever a client types as the name.
func nameKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "payrail:login:name:" + hex.EncodeToString(sum[:12])
}

// Admit decides whether an attempt for name from addr may run. Unless the
// error is a *Throttled, release is set and must be called once the
// password or code is checked — also when err reports a Redis failure
// (the attempt is admitted then), or the bcrypt slot leaks. A Redis
// outage admits the attempt (logged by the caller): the bcrypt bound still
// holds, and locking every operator out during an outage would be worse.
func (t *LoginThrottle) Admit(ctx context.Context, name, addr string) (release func(), err error) {
	t.defaults()
	if t.Limiter != nil {
		d, lerr := t.Limiter.Allow(ctx, "login:addr:"+addr, t.AddrLimit)
		if lerr == nil && !d.Allowed {
			return nil, &Throttled{Status: 429, RetryAfter: d.RetryAfter, Reason: "too many sign-in attempts from this address"}
		}
		if lerr != nil {
			err = lerr
		}
	}
	if t.Redis != nil {
		until, rerr := t.Redis.HGet(ctx, nameKey(name), "until").Int64()
		if rerr == nil {
			if wait := time.Unix(0, until).Sub(t.now()); wait > 0 {
				return nil, &Throttled{Status: 429, RetryAfter: wait, Reason: "too many failed sign-ins for this name"}
			}
		} else if !errors.Is(rerr, redis.Nil) {
			err = rerr
		}
	}
	select {
	case t.sem <- struct{}{}:
		return func() { <-t.sem }, err
	default:
		return nil, &Throttled{Status: 503, RetryAfter: time.Second, Reason: "the console is checking other sign-ins; try again in a moment"}
	}
}

// Failed counts a failed attempt for name; from the NameFailures-th on it
// locks the name, for longer each time. It returns the lock (0: none).
func (t *LoginThrottle) Failed(ctx context.Context, name string) (time.Duration, error) {
	t.defaults()
	if t.Redis == nil {
		return 0, nil
	}
	key := nameKey(name)
	n, err := t.Redis.HIncrBy(ctx, key, "failures", 1).Result()
	if err != nil {
		return 0, err
	}
	var lock time.Duration
	if over := n - int64(t.NameFailures); over >= 0 {
		lock = t.FirstLock << min(over, 20)
		if lock > t.MaxLock || lock <= 0 {
			lock = t.MaxLock
		}
		if err := t.Redis.HSet(ctx, key, "until", strconv.FormatInt(t.now().Add(lock).UnixNano(), 10)).Err(); err != nil {
			return 0, err
		}
	}
	return lock, t.Redis.Expire(ctx, key, t.MaxLock+t.FailureWindow).Err()
}

// Succeeded clears name's failures and lock.
func (t *LoginThrottle) Succeeded(ctx context.Context, name string) error {
	if t.Redis == nil {
		return nil
	}
	return t.Redis.Del(ctx, nameKey(name)).Err()
}
