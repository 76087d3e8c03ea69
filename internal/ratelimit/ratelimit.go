// Package ratelimit is payrail's one rate limiter: GCRA buckets kept in
// Redis (github.com/go-redis/redis_rate), so every api replica draws from
// the same bucket, and the IETF RateLimit headers that tell a caller where
// it stands (draft-ietf-httpapi-ratelimit-headers).
//
// It never decides what a key means or what to do when Redis is down: the
// caller names the bucket ("pgwebhook:<ip>", "merchant:<id>", …) and chooses
// to fail open or closed on ErrUnavailable.
//
// A busy bucket is drawn from ahead (Limiter.Lease): one script call takes
// as many tokens as the bucket's key saw requests in the last lease, and
// this process spends them for at most one lease. Tokens are charged in
// Redis before they are spent, so the replicas together never admit more
// than the bucket allows; a token left when its lease ends is dropped, not
// returned (the caller is refused a little early, never late). A bucket
// that has fewer tokens than asked, and every bucket too small to lease
// from, is drawn from one request at a time, exactly as without a lease.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Limit is a steady rate per second (or per Per) with a burst.
type Limit struct {
	PerSecond int
	Burst     int
	// Per, when set, is the period PerSecond counts over instead of a
	// second (login attempts are counted per minute).
	Per time.Duration
}

// Decision is the answer for one request.
type Decision struct {
	Limit     Limit
	Allowed   bool
	Remaining int
	// RetryAfter is how long until one request would be allowed (0 when
	// allowed); ResetAfter how long until the bucket is full again.
	RetryAfter, ResetAfter time.Duration
}

// ErrUnavailable wraps a failure to reach Redis: the caller decides.
var ErrUnavailable = errors.New("rate limiter unavailable")

// Limiter draws from buckets in one Redis.
type Limiter struct {
	l *redis_rate.Limiter
	// Lease, when above 0, is how long tokens drawn ahead of requests are
	// spent here before they are dropped (PAYRAIL_RATE_LEASE). A draw takes
	// at most the tokens the bucket refills in a lease, an eighth of its
	// burst and 64, so a small bucket is never drawn from ahead, and what
	// a replica holds or drops is a sliver of the limit.
	Lease time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu        sync.Mutex
	held      map[string]*held
	lastPrune time.Time
}

// held is this process's part of one bucket.
type held struct {
	lim       Limit
	tokens    int           // drawn from Redis, not yet spent
	until     time.Time     // when unspent tokens are dropped
	remaining int           // the bucket's remaining after that draw
	reset     time.Time     // when the bucket is full again, as of that draw
	win       time.Time     // the current counting window's start
	n, prev   int           // requests in the current and the previous window
	scarce    time.Time     // until then one token per draw: the bucket had fewer than asked
	drawing   chan struct{} // closed when the draw in flight ends
}

// maxHeld bounds the buckets a Limiter keeps state for (a bucket per
// source address comes from the network). Past it, a bucket is drawn from
// one request at a time.
const maxHeld = 4096

// New returns a Limiter on rdb that draws one token per request.
func New(rdb redis.UniversalClient) *Limiter { return &Limiter{l: redis_rate.NewLimiter(rdb)} }

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func redisLimit(lim Limit) redis_rate.Limit {
	period := time.Second
	if lim.Per > 0 {
		period = lim.Per
	}
	return redis_rate.Limit{Rate: lim.PerSecond, Burst: lim.Burst, Period: period}
}

// maxDraw is the most tokens one draw from lim's bucket takes ahead.
func maxDraw(lim Limit, lease time.Duration) int {
	rl := redisLimit(lim)
	refill := int(float64(lim.PerSecond) * lease.Seconds() / rl.Period.Seconds())
	return max(1, min(refill, lim.Burst/8, 64))
}

// Allow takes one request from key's bucket; ErrUnavailable when Redis did
// not answer.
func (l *Limiter) Allow(ctx context.Context, key string, lim Limit) (Decision, error) {
	if l.Lease <= 0 {
		return l.draw(ctx, key, lim)
	}
	l.mu.Lock()
	h := l.entry(key, lim, l.now())
	for h != nil {
		now := l.now()
		if h.tokens > 0 && now.Before(h.until) {
			h.tokens--
			d := Decision{Limit: lim, Allowed: true, Remaining: h.remaining + h.tokens, ResetAfter: max(h.reset.Sub(now), 0)}
			l.mu.Unlock()
			return d, nil
		}
		h.tokens = 0
		if h.drawing != nil {
			// One draw per key at a time: the requests arriving meanwhile
			// spend what it brings, instead of each drawing a lease that
			// outlives them.
			ch := h.drawing
			l.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return l.draw(ctx, key, lim)
			}
			l.mu.Lock()
			continue
		}
		if !now.Before(h.scarce) {
			if want := min(h.prev, maxDraw(lim, l.Lease)); want > 1 {
				ch := make(chan struct{})
				h.drawing = ch
				l.mu.Unlock()
				d, err := l.drawAhead(ctx, key, lim, h, want, now)
				l.mu.Lock()
				h.drawing = nil
				close(ch)
				l.mu.Unlock()
				return d, err
			}
		}
		break
	}
	l.mu.Unlock()
	return l.draw(ctx, key, lim)
}

// drawAhead takes want tokens from key's bucket, spends one and keeps the
// rest in h for a lease; it draws one exactly when fewer than want are left.
func (l *Limiter) drawAhead(ctx context.Context, key string, lim Limit, h *held, want int, now time.Time) (Decision, error) {
	// All or nothing (AllowN): taking what is left (AllowAtMost) would
	// charge the fraction of a token it cannot return.
	res, err := l.l.AllowN(ctx, key, redisLimit(lim), want)
	if err != nil {
		// Redis is slow or gone: the requests waiting on this draw must not
		// each draw in turn, one timeout after another; for the rest of the
		// lease they ask Redis side by side, as without a lease.
		l.mu.Lock()
		h.scarce = now.Add(l.Lease)
		l.mu.Unlock()
		return Decision{Limit: lim, Allowed: true}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if res.Allowed == 0 {
		// Fewer than want left: near its limit a bucket is drawn from
		// exactly, one token at a time, for the rest of the lease.
		l.mu.Lock()
		h.scarce = now.Add(l.Lease)
		l.mu.Unlock()
		return l.draw(ctx, key, lim)
	}
	l.mu.Lock()
	if l.held[key] == h { // else evicted meanwhile: the tokens are dropped
		h.tokens += want - 1
		h.until = now.Add(l.Lease)
		h.remaining = res.Remaining
		h.reset = now.Add(max(res.ResetAfter, 0))
	}
	l.mu.Unlock()
	return Decision{Limit: lim, Allowed: true, Remaining: res.Remaining + want - 1, ResetAfter: max(res.ResetAfter, 0)}, nil
}

// entry counts a request for key and returns its state, nil when maxHeld
// buckets are held already (l.mu held).
func (l *Limiter) entry(key string, lim Limit, now time.Time) *held {
	h := l.held[key]
	if h == nil {
		if len(l.held) >= maxHeld && now.Sub(l.lastPrune) >= l.Lease {
			l.lastPrune = now
			for k, o := range l.held {
				if now.Sub(o.win) >= 2*l.Lease && !now.Before(o.until) && o.drawing == nil {
					delete(l.held, k)
				}
			}
		}
		if len(l.held) >= maxHeld {
			return nil
		}
		if l.held == nil {
			l.held = map[string]*held{}
		}
		h = &held{lim: lim, win: now}
		l.held[key] = h
	}
	if h.lim != lim {
		*h = held{lim: lim, win: now, drawing: h.drawing} // the draw in flight still ends here
	}
	if d := now.Sub(h.win); d >= l.Lease {
		h.prev = 0
		if d < 2*l.Lease {
			h.prev = h.n
		}
		h.n, h.win = 0, now
	}
	h.n++
	return h
}

// draw takes one token from key's bucket in Redis.
func (l *Limiter) draw(ctx context.Context, key string, lim Limit) (Decision, error) {
	res, err := l.l.Allow(ctx, key, redisLimit(lim))
	if err != nil {
		return Decision{Limit: lim, Allowed: true}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	d := Decision{Limit: lim, Allowed: res.Allowed > 0, Remaining: res.Remaining, ResetAfter: max(res.ResetAfter, 0)}
	if !d.Allowed {
		d.RetryAfter = max(res.RetryAfter, 0)
	}
	return d, nil
}

// SetHeaders writes RateLimit-Policy and RateLimit (and, when refused,
// Retry-After in whole seconds, at least 1).
func (d Decision) SetHeaders(h http.Header, policy string) {
	h.Set("RateLimit-Policy", fmt.Sprintf(`"%s";q=%d;w=1;burst=%d`, policy, d.Limit.PerSecond, d.Limit.Burst))
	h.Set("RateLimit", fmt.Sprintf(`"%s";r=%d;t=%d`, policy, d.Remaining, ceilSeconds(d.ResetAfter)))
	if !d.Allowed {
		h.Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(d.RetryAfter))))
	}
}

func ceilSeconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }
