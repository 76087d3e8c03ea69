// Package ratelimit is payrail's one rate limiter: GCRA buckets kept in
// Redis (github.com/go-redis/redis_rate), so every api replica draws from
// the same bucket, and the IETF RateLimit headers that tell a caller where
// it stands (draft-ietf-httpapi-ratelimit-headers).
//
// It never decides what a key means or what to do when Redis is down: the
// caller names the bucket ("pgwebhook:<ip>", "merchant:<id>", …) and chooses
// to fail open or closed on ErrUnavailable.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
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
type Limiter struct{ l *redis_rate.Limiter }

// New returns a Limiter on rdb.
func New(rdb redis.UniversalClient) *Limiter { return &Limiter{l: redis_rate.NewLimiter(rdb)} }

// Allow takes one request from key's bucket; ErrUnavailable when Redis did
// not answer.
func (l *Limiter) Allow(ctx context.Context, key string, lim Limit) (Decision, error) {
	period := time.Second
	if lim.Per > 0 {
		period = lim.Per
	}
	res, err := l.l.Allow(ctx, key, redis_rate.Limit{Rate: lim.PerSecond, Burst: lim.Burst, Period: period})
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
