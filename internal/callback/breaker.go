package callback

import (
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

// BreakerPolicy is when an endpoint's breaker opens and how long it cools
// down (DESIGN.md: 5 consecutive failures; 5 s doubling to 10 min).
type BreakerPolicy struct {
	Threshold   int
	Cooldown    time.Duration
	MaxCooldown time.Duration
}

// DefaultBreakerPolicy is DESIGN.md's.
var DefaultBreakerPolicy = BreakerPolicy{Threshold: 5, Cooldown: 5 * time.Second, MaxCooldown: 10 * time.Minute}

func (p BreakerPolicy) orDefault() BreakerPolicy {
	if p.Threshold <= 0 {
		return DefaultBreakerPolicy
	}
	return p
}

// breakerFailure reports whether an attempt says the endpoint is down:
// refused, timed out or a 5xx. A 4xx (or 429) is an endpoint that answers.
func breakerFailure(o store.CallbackOutcome) bool {
	return o.Status != payment.CallbackDelivered && !o.DisableEndpoint && (o.StatusCode == 0 || o.StatusCode >= 500)
}

// After is the breaker once a turn's attempts are in. Any 2xx closes it.
// Failures count up; at the threshold it opens for the cool-down. An open
// breaker sends one probe per cool-down: a failed probe doubles the
// cool-down (up to the max).
func (p BreakerPolicy) After(b store.Breaker, results []store.CallbackOutcome, now time.Time) store.Breaker {
	p = p.orDefault()
	delivered, failed := false, 0
	var lastErr string
	for _, o := range results {
		switch {
		case o.Status == payment.CallbackDelivered:
			delivered = true
		case breakerFailure(o):
			failed++
			lastErr = o.Error
		}
	}
	if delivered {
		return store.Breaker{}
	}
	if failed == 0 {
		// Answers that are neither (a 4xx): the endpoint is up but not
		// taking callbacks. Only a 2xx closes the breaker; the next probe
		// waits for the cool-down.
		if b.Open() {
			until := now.Add(b.Cooldown)
			b.OpenUntil = &until
		}
		return b
	}
	if b.FailingSince == nil {
		b.FailingSince = &now
	}
	b.Failures += failed
	b.LastError = &lastErr
	switch {
	case b.Open():
		b.Cooldown = min(max(2*b.Cooldown, p.Cooldown), p.MaxCooldown)
	case b.Failures >= p.Threshold:
		b.Cooldown = p.Cooldown
	default:
		return b
	}
	until := now.Add(b.Cooldown)
	b.OpenUntil = &until
	return b
}
