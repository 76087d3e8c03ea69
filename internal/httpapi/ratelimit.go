package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/ratelimit"
	"github.com/payrail/payrail/internal/store"
)

// MerchantLimits decides each merchant's ingress rate limit: its own, set
// through PATCH /admin/merchants/{id} {rateLimit}, or Default. Overrides are
// read from PostgreSQL at most once per TTL per merchant and process, so a
// busy merchant costs no database read per request; an admin change in
// this process is seen at once (Forget), in others within TTL.
//
// It also bounds how many of one merchant's requests this process serves at
// once (MaxInFlight, scaled up for merchants with a higher limit): under
// saturation a flooding merchant's requests would otherwise pile up by the
// hundred in front of the shared database pool and CPU, and another
// merchant's request would wait behind all of them. Over the bound the
// request gets the same 429 RATE_LIMITED as over the rate, before anything
// is written.
type MerchantLimits struct {
	Store interface {
		MerchantRateLimit(ctx context.Context, merchantID string) (*store.RateLimit, error)
	}
	Default ratelimit.Limit
	TTL     time.Duration
	// MaxInFlight is PAYRAIL_MERCHANT_MAX_IN_FLIGHT: requests of one
	// merchant served at once by this process, at least; a merchant whose
	// burst is larger may have its burst in flight (what its bucket admits
	// at once). 0 means no bound.
	MaxInFlight int

	mu       sync.Mutex
	cache    map[string]cachedLimit
	inFlight map[string]int
}

// inFlightCap is merchant lim's bound on requests served at once.
func (m *MerchantLimits) inFlightCap(lim ratelimit.Limit) int {
	if m.MaxInFlight <= 0 {
		return 0
	}
	return max(m.MaxInFlight, lim.Burst)
}

// enter counts one request of merchantID in flight; false (and nothing
// counted) when the merchant already has limit. release must be called once.
func (m *MerchantLimits) enter(merchantID string, limit int) (release func(), ok bool) {
	if limit <= 0 {
		return func() {}, true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inFlight == nil {
		m.inFlight = map[string]int{}
	}
	if m.inFlight[merchantID] >= limit {
		return nil, false
	}
	m.inFlight[merchantID]++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			// Deleted at zero: the map holds merchants with requests open, not every merchant seen.
			if m.inFlight[merchantID]--; m.inFlight[merchantID] <= 0 {
				delete(m.inFlight, merchantID)
			}
		})
	}, true
}

type cachedLimit struct {
	lim   ratelimit.Limit
	until time.Time
}

// For returns merchantID's limit; on a database error, the default.
func (m *MerchantLimits) For(ctx context.Context, merchantID string) ratelimit.Limit {
	now := time.Now()
	m.mu.Lock()
	c, ok := m.cache[merchantID]
	m.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.lim
	}
	lim := m.Default
	if own, err := m.Store.MerchantRateLimit(ctx, merchantID); err != nil {
		logger(ctx).Warn("merchant rate limit unreadable; using the default", "err", err)
		return lim
	} else if own != nil {
		lim = ratelimit.Limit{PerSecond: own.PerSecond, Burst: own.Burst}
	}
	ttl := m.TTL
	if ttl <= 0 {
		ttl = time.Second
	}
	m.mu.Lock()
	if m.cache == nil || len(m.cache) > 100_000 {
		m.cache = map[string]cachedLimit{} // bounded: merchants, not requests
	}
	m.cache[merchantID] = cachedLimit{lim: lim, until: now.Add(ttl)}
	m.mu.Unlock()
	return lim
}

// Forget drops every cached override (an admin changed one).
func (m *MerchantLimits) Forget() {
	m.mu.Lock()
	m.cache = nil
	m.mu.Unlock()
}

// isConfirm reports whether r is a confirm: those draw from their own,
// doubled bucket, so a merchant over its limit for new orders can still
// finish the payments its buyers already made at the PG.
func isConfirm(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/orders/") && strings.HasSuffix(r.URL.Path, "/confirm")
}

// minFairInFlight is the least in-flight bound a merchant has however many
// others are active.
const minFairInFlight = 4

// isCreate reports whether r creates an order: the request admission
// control lowers for a merchant sending more than its share.
func isCreate(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/v1/orders"
}

// admitMerchant takes one request from the merchant's bucket (shared by
// every api replica through Redis). Over the limit it answers 429
// RATE_LIMITED with Retry-After and the RateLimit headers, before the
// handler runs, so nothing is written. A Redis error lets the request in
// (authentication, which needs Redis too, already succeeded).
//
// It then counts the request in the merchant's in-flight bound; release
// (never nil when admitted) ends it, and may be called early by a handler
// that goes on only to watch state (Prefer: wait).
func (s *Server) admitMerchant(w http.ResponseWriter, r *http.Request, merchantID string) (release func(), ok bool) {
	if s.Limiter == nil || s.MerchantLimits == nil {
		return func() {}, true
	}
	ctx := r.Context()
	lim := s.MerchantLimits.For(ctx, merchantID)
	if lim.PerSecond <= 0 {
		return func() {}, true
	}
	create := isCreate(r) && s.Admission != nil
	if create && s.refuseIfLowered(w, r, merchantID, lim.PerSecond) {
		return nil, false
	}
	if !s.admitRate(w, r, merchantID, lim) {
		return nil, false
	}
	limit, slot := s.MerchantLimits.inFlightCap(lim), merchantID
	if isConfirm(r) {
		// Confirms have their own, doubled bound, as they have their own
		// bucket: a flood of new orders must not block finishing paid ones.
		limit, slot = 2*limit, merchantID+":confirm"
	} else if n := s.Admission.Active(); n >= 2 && s.FairInFlight > 0 && limit > 0 {
		// Merchants share the database pool: while several create orders,
		// none may have much more than its part of it in flight, so one's
		// burst waits in its own line instead of in front of everyone's.
		// Confirms keep their bound: a buyer who paid is never refused for
		// fairness.
		limit = min(limit, max(minFairInFlight, s.FairInFlight/n))
	}
	release, ok = s.MerchantLimits.enter(slot, limit)
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeError(ctx, w, payment.Errorf(payment.CodeRateLimited,
			"%d requests of this merchant are already being served; retry after 1 s", limit))
		return nil, false
	}
	if create {
		s.Admission.Created(merchantID)
	}
	return release, true
}

// admitRate draws from the merchant's GCRA bucket.
func (s *Server) admitRate(w http.ResponseWriter, r *http.Request, merchantID string, lim ratelimit.Limit) bool {
	ctx := r.Context()
	key, policy := "merchant:"+merchantID, "merchant"
	if isConfirm(r) {
		lim = ratelimit.Limit{PerSecond: 2 * lim.PerSecond, Burst: 2 * lim.Burst}
		key, policy = key+":confirm", "merchant-confirm"
	}
	// The limit is part of the key: GCRA state kept under another limit
	// (a bucket's "theoretical arrival time") would misjudge the new one
	// for as long as the old burst, so a changed limit starts afresh. The
	// old key expires on its own.
	key = fmt.Sprintf("%s:%d:%d", key, lim.PerSecond, lim.Burst)
	d, err := s.Limiter.Allow(ctx, key, lim)
	if err != nil {
		logger(ctx).Warn("merchant rate limiter unavailable; admitting", "err", err)
		return true
	}
	d.SetHeaders(w.Header(), policy)
	if !d.Allowed {
		writeError(ctx, w, payment.Errorf(payment.CodeRateLimited, "over this merchant's limit of %d requests/s (burst %d); retry after %s s",
			lim.PerSecond, lim.Burst, w.Header().Get("Retry-After")))
		return false
	}
	return true
}
