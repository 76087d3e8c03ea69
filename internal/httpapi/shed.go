package httpapi

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/ratelimit"
)

// Backlog is what shedding looks at: how long the oldest waiting confirm
// task has waited, and how many CONFIRMING orders each merchant holds.
type Backlog interface {
	// OldestConfirmWait is the age of the oldest pending payments-queue
	// task (0 when none); errors when Redis does not answer.
	OldestConfirmWait(ctx context.Context) (time.Duration, error)
	// ConfirmingByMerchant counts CONFIRMING orders per merchant.
	ConfirmingByMerchant(ctx context.Context) (map[string]int64, error)
}

// Shedder refuses new orders while confirm work is falling behind, so a
// buyer who already paid at the PG is confirmed before more orders pile
// up. It is fair: while overloaded it refuses only the merchants holding
// at least their share (total ÷ merchants with work) of the CONFIRMING
// orders, so a merchant within its share keeps creating orders while
// another floods. The backlog is read at most once per Refresh by the
// process, never per request.
type Shedder struct {
	Backlog Backlog
	// After is PAYRAIL_SHED_AFTER: the oldest confirm's wait that means
	// "falling behind".
	After   time.Duration
	Refresh time.Duration

	mu       sync.Mutex
	readAt   time.Time
	over     bool
	counts   map[string]int64
	share    float64
	inflight bool
}

// Shed reports whether merchantID's new order should be refused now.
func (s *Shedder) Shed(ctx context.Context, merchantID string) bool {
	s.refresh(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.over {
		return false
	}
	n := s.counts[merchantID]
	return n > 0 && float64(n) >= s.share
}

func (s *Shedder) refresh(ctx context.Context) {
	every := s.Refresh
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	s.mu.Lock()
	if s.inflight || time.Since(s.readAt) < every {
		s.mu.Unlock()
		return
	}
	s.inflight = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight = false
		s.mu.Unlock()
	}()
	// Not the request's context: a client that hangs up must not turn
	// shedding off for the next interval.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()

	over, counts, share := false, map[string]int64(nil), 0.0
	wait, err := s.Backlog.OldestConfirmWait(ctx)
	if err != nil {
		logger(ctx).Warn("shedding: queue latency unreadable; not shedding", "err", err)
	} else if wait > s.After {
		if c, err := s.Backlog.ConfirmingByMerchant(ctx); err != nil {
			logger(ctx).Warn("shedding: confirming counts unreadable; not shedding", "err", err)
		} else if len(c) > 0 {
			var total int64
			for _, n := range c {
				total += n
			}
			over, counts, share = true, c, float64(total)/float64(len(c))
		}
	}
	s.mu.Lock()
	s.over, s.counts, s.share, s.readAt = over, counts, share, time.Now()
	s.mu.Unlock()
}

// refuseIfOverloaded answers 503 OVERLOADED with Retry-After when this
// merchant's new order must wait.
func (s *Server) refuseIfOverloaded(w http.ResponseWriter, r *http.Request) bool {
	if s.Shedder == nil || !s.Shedder.Shed(r.Context(), merchantID(r)) {
		return false
	}
	retry := max(1, int(s.Shedder.After.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	writeError(r.Context(), w, payment.Errorf(payment.CodeOverloaded,
		"confirm work is behind and this merchant holds more than its share of it; new orders are refused for now (confirms, cancels and reads are not)"))
	return true
}

// refuseIfLowered answers 429 RATE_LIMITED with Retry-After when admission
// control has lowered this merchant's new-order rate (it sends more than
// its share while serving is slow) and the lowered rate is used up. It runs
// before the merchant's own bucket, so a refusal costs no Redis round trip,
// and before the request is timed.
func (s *Server) refuseIfLowered(w http.ResponseWriter, r *http.Request, merchantID string, own int) bool {
	ok, retry, rate := s.Admission.Admit(merchantID, own)
	if ok {
		return false
	}
	// The same headers as the merchant's own bucket, naming the lowered
	// policy now in force.
	q := max(1, int(math.Round(rate)))
	ratelimit.Decision{Limit: ratelimit.Limit{PerSecond: q, Burst: max(2, q/10)}, RetryAfter: retry, ResetAfter: retry}.
		SetHeaders(w.Header(), "merchant-lowered")
	writeError(r.Context(), w, payment.Errorf(payment.CodeRateLimited,
		"payrail is loaded and this merchant sends more than its share of new orders: its new-order rate is lowered to %.1f/s for now (confirms, cancels and reads are not)", rate))
	return true
}
