// Package admit is payrail's adaptive, fair overload control at the ingress
// (DESIGN "Isolation and overload", "Fair workers").
//
// A merchant's rate limit (PAYRAIL_RATE_LIMIT, 100/s by default) says what
// one merchant may ask for; it cannot know what the machine can do right
// now. On a small deployment one merchant at its limit is the whole
// capacity, every process then competes for the same cores and database,
// and another merchant's payment waits behind the flood at every step —
// not in a queue that shedding could see, but in CPU run queues and the
// database pool. So the ingress watches how long it takes to serve an
// admitted request (admission to response, Prefer: wait's watching
// excluded) and, while that is well above what it is unloaded, lowers the
// new-order rate of the merchants sending more than their share of new
// orders, until the service time is back. Merchants within their share are
// never lowered, and a lone merchant is never lowered either (there is no
// one to protect; PAYRAIL_SHED_AFTER's backlog rule still applies).
//
// The contract:
//   - Observe records one served request's time; Admit asks whether one
//     merchant's new order may go on now, Created counts one that did.
//   - Every Interval the controller looks at the window: overloaded when
//     at least MinSamples were served and their median is above
//     max(Floor, Tolerance × baseline) or above Ceiling. The baseline is
//     the lowest window median of the last BaselineSpan among windows with
//     nobody lowered (so a long, held-down flood does not raise it).
//   - Overloaded, with two or more merchants creating orders (one in the
//     last 3 s): each merchant asking for more than twice the others' mean
//     and at least MinHeavy (a 2 s moving average of new orders asked per
//     second, refused ones included) gets
//     a rate of Decrease × what it was admitted at, or × its lowered rate
//     (at most every 300 ms), never below MinRate nor below what the other
//     merchants are admitted at on average (its fair share). Not overloaded, or one
//     merchant alone: every lowered rate rises by Increase × the rate it
//     was admitted at before (or its own limit, if lower) per Interval, and
//     is dropped at the merchant's own limit or once it asks for no more
//     (held until then, it lets a flood in smoothly, never in bursts).
//   - The lowered rates are this process's own (each api replica controls
//     what it admits, from what it sees), so no Redis round trip is added
//     and a replica that is not overloaded lowers nobody.
//
// Refusals are 429 RATE_LIMITED with Retry-After, like the merchant's own
// limit: the merchant is told to slow down, never a 5xx.
package admit

import (
	"math"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Options tune a Controller; zero fields take the defaults in New.
type Options struct {
	Interval     time.Duration // how often the window is judged (100 ms)
	Tolerance    float64       // median above Tolerance × baseline is overload (2)
	Floor        time.Duration // medians at or below this are never overload (5 ms)
	Ceiling      time.Duration // medians above this are overload whatever the baseline (50 ms)
	BaselineSpan time.Duration // how far back the baseline looks (10 min)
	MinSamples   int           // fewer served requests in a window judge nothing (8)
	Decrease     float64       // an overloading merchant's rate is multiplied by this (0.7)
	Increase     float64       // recovery per Interval, as a share of the merchant's limit (0.02)
	MinRate      float64       // a lowered rate never goes below this per second (1)
	MinHeavy     float64       // a merchant asking for fewer new orders per second is never lowered (20)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Controller is one api process's overload control; safe for concurrent use.
type Controller struct {
	o Options

	mu        sync.Mutex
	windowAt  time.Time
	samples   []time.Duration
	seen      int
	creates   map[string]int       // admitted in this window
	tries     map[string]int       // asked for in this window
	askedAt   map[string]time.Time // and when last
	firstAsk  map[string]time.Time // and when first
	rate      map[string]moving    // the merchants creating orders
	lowered   map[string]*lowered
	baseCur   time.Duration // lowest median in the current half of BaselineSpan
	basePrev  time.Duration // … and in the half before
	baseSince time.Time
	last      Stats
	refused   int64
	// slowStarts counts merchants lowered by slowStart, ever.
	slowStarts int64
}

// moving is a merchant's new orders per second, admitted and asked for,
// as moving averages, and when it last asked.
type moving struct {
	perSecond float64 // admitted
	offered   float64 // asked for, admitted or not: the merchant's demand
	seen      time.Time
	since     time.Time // when it became active
	joined    bool      // … while others were active already
}

type lowered struct {
	lim  *rate.Limiter
	rate float64
	// step is what recovery steps by: the rate the merchant was admitted
	// at when first lowered, or its own limit if that is lower (a merchant
	// limited to 10,000/s but sending 200/s recovers in steps of its 200).
	step float64
	// own is the merchant's own limit (0: none known). Recovery ends there,
	// or once the merchant asks for no more than its lowered rate — not at
	// what it was admitted at when first lowered: dropped there while still
	// flooding, it met a full bucket of its own limit and its burst of
	// hundreds came back every few seconds as a spike in everyone's latency.
	own float64
	cut time.Time // the last decrease
}

// Stats is what the controller last judged, for metrics and the console.
type Stats struct {
	Median, Baseline time.Duration
	Overloaded       bool
	// Lowered is how many merchants have a lowered rate now.
	Lowered int
	// Refused counts new orders refused by a lowered rate, ever.
	Refused int64
	// SlowStarts counts merchants that started a flood beside others and
	// were ramped up from their fair share (slowStart), ever.
	SlowStarts int64
}

const maxSamples = 1024

// New returns a Controller with o's zero fields defaulted.
func New(o Options) *Controller {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	deff := func(f *float64, v float64) {
		if *f <= 0 {
			*f = v
		}
	}
	def(&o.Interval, 100*time.Millisecond)
	def(&o.Floor, 5*time.Millisecond)
	def(&o.Ceiling, 50*time.Millisecond)
	def(&o.BaselineSpan, 10*time.Minute)
	deff(&o.Tolerance, 2)
	deff(&o.Decrease, 0.7)
	deff(&o.Increase, 0.02)
	deff(&o.MinRate, 1)
	deff(&o.MinHeavy, 20)
	if o.MinSamples <= 0 {
		o.MinSamples = 8
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Controller{o: o, samples: make([]time.Duration, 0, maxSamples),
		creates: map[string]int{}, tries: map[string]int{}, askedAt: map[string]time.Time{}, firstAsk: map[string]time.Time{}, rate: map[string]moving{}, lowered: map[string]*lowered{}}
}

// Observe records one served request's time, admission to response.
func (c *Controller) Observe(d time.Duration) {
	if c == nil {
		return
	}
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick(now)
	// A ring once full: the window's median stays a median of its latest
	// requests without growing with the request rate.
	if len(c.samples) < maxSamples {
		c.samples = append(c.samples, d)
	} else {
		c.samples[c.seen%maxSamples] = d
	}
	c.seen++
}

// Admit reports whether merchantID (whose own limit is perSecond) may
// create an order now as far as its lowered rate goes; when it may not,
// retryAfter is when to try again and lowRate the lowered rate. An order
// that then passes every other check is told with Created.
func (c *Controller) Admit(merchantID string, perSecond int) (ok bool, retryAfter time.Duration, lowRate float64) {
	if c == nil {
		return true, 0, 0
	}
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick(now)
	// Bounded by the merchants asking in one window (authenticated ones).
	if c.tries[merchantID]++; c.tries[merchantID] == 1 {
		c.firstAsk[merchantID] = now
	}
	c.askedAt[merchantID] = now
	l := c.lowered[merchantID]
	if l == nil {
		l = c.slowStart(merchantID, perSecond, now)
	}
	if l != nil {
		if perSecond > 0 {
			l.own = float64(perSecond)
			l.step = min(l.step, l.own)
		}
		if !l.lim.AllowN(now, 1) {
			c.refused++
			return false, time.Duration(math.Ceil(float64(time.Second) / l.rate)), l.rate
		}
	}
	return true, 0, 0
}

// slowStart lowers a merchant that starts asking for many new orders
// while others are creating theirs: it is admitted from its fair share (at
// least MinHeavy/s) and ramps towards its own limit while serving stays
// fast, like a new TCP flow, instead of landing its whole burst at once.
// The overload rule cannot do this: it judges only after a window, and
// needs cuts every 300 ms to come down from a burst, so a burst of a
// couple of hundred orders landed before it acted, and on a small
// deployment that is a second of the whole machine's work that every
// other merchant waited behind. A merchant is starting when it had not
// asked for 3 s (and for its first 2 s after joining others), or has asked
// for fewer than MinHeavy/s for at least 2 s;
// it is lowered once this window's asks, as a rate, reach twice MinHeavy
// and twice the others' mean demand. Merchants that start together (nobody
// else active yet) are not lowered: there is no one to protect. c.mu is
// held; nil when the merchant is not starting a flood.
func (c *Controller) slowStart(merchantID string, perSecond int, now time.Time) *lowered {
	r, known := c.rate[merchantID]
	others := len(c.rate)
	if known {
		others--
		young := now.Sub(r.since) < rateSpan
		if (young && !r.joined) || (!young && r.offered >= c.o.MinHeavy) {
			// Started with the others (no one to protect then), or
			// already heavy: the overload rule judges it.
			return nil
		}
	}
	// This window's asks as a rate since its first, over at least one
	// Interval (a quiet window stays open longer and gathers more). Checked
	// before the loop over the others: this runs on every new order of a
	// merchant not lowered, under the controller's one lock. Twice
	// MinHeavy: a window holds a handful of asks, so a merchant at
	// MinHeavy/s shows it now and then without flooding.
	asking := float64(c.tries[merchantID]) / max(now.Sub(c.firstAsk[merchantID]), c.o.Interval).Seconds()
	if others == 0 || asking < 2*c.o.MinHeavy {
		return nil
	}
	var demand, admitted float64
	for m, o := range c.rate {
		if m != merchantID {
			demand += o.offered
			admitted += o.perSecond
		}
	}
	if asking <= heavy*demand/float64(others) {
		return nil
	}
	start := max(admitted/float64(others), c.o.MinHeavy, c.o.MinRate)
	step := start
	if perSecond > 0 {
		step = max(float64(perSecond), start)
		if start >= float64(perSecond) {
			return nil // its own limit is no more than the start
		}
	}
	l := &lowered{lim: rate.NewLimiter(rate.Limit(start), burstFor(start, c.o.Interval)), rate: start, step: step, own: float64(perSecond), cut: now}
	c.lowered[merchantID] = l
	c.slowStarts++
	return l
}

// Created counts one new order of merchantID that was admitted: the
// merchants' shares are judged on these.
func (c *Controller) Created(merchantID string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Bounded by the merchants creating orders in one window.
	c.creates[merchantID]++
}

// Active is how many merchants created orders in the last activeSpan.
func (c *Controller) Active() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rate)
}

// Stats returns the last judgement. It closes a window that is due first,
// so with no traffic at all the figures (and lowered rates) still move on
// at each metrics scrape instead of showing the last busy moment forever.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick(c.o.Now())
	s := c.last
	s.Lowered, s.Refused, s.SlowStarts = len(c.lowered), c.refused, c.slowStarts
	return s
}

// tick closes the window once Interval has passed and MinSamples were
// served in it (or MaxWindow passed: then there is too little traffic to
// judge, which counts as healthy), and judges it; c.mu is held.
func (c *Controller) tick(now time.Time) {
	if c.windowAt.IsZero() {
		c.windowAt, c.baseSince = now, now
		return
	}
	elapsed := now.Sub(c.windowAt)
	enough := len(c.samples) >= c.o.MinSamples
	if elapsed < c.o.Interval || (!enough && elapsed < maxWindow) {
		return
	}
	c.rates(now, elapsed)
	defer func() {
		c.windowAt, c.samples, c.seen = now, c.samples[:0], 0
		clear(c.creates)
		clear(c.tries)
		clear(c.askedAt)
		clear(c.firstAsk)
	}()
	if now.Sub(c.baseSince) >= c.o.BaselineSpan/2 {
		// A half with no window eligible for the baseline (a flood held
		// down the whole time) keeps the one before: the baseline must
		// not drift up to the loaded level and stop seeing overload.
		if c.baseCur != 0 {
			c.basePrev, c.baseCur = c.baseCur, 0
		}
		c.baseSince = now
	}
	if !enough {
		c.last = Stats{Baseline: c.baseline()}
		c.recover(now, elapsed)
		return
	}
	median := medianOf(c.samples)
	// Only windows with nobody lowered say what serving costs unloaded: a
	// window under a held-down flood sits just under the threshold, and
	// taking it would double the threshold every BaselineSpan.
	if len(c.lowered) == 0 && (c.baseCur == 0 || median < c.baseCur) {
		c.baseCur = median
	}
	base := c.baseline()
	over := median > c.o.Ceiling || median > max(c.o.Floor, time.Duration(c.o.Tolerance*float64(base)))
	c.last = Stats{Median: median, Baseline: base, Overloaded: over}
	if !over {
		c.recover(now, elapsed)
		return
	}
	if len(c.rate) < 2 {
		// Alone there is no one to protect: overload is this merchant's
		// own (the backlog rule sheds it), and a rate lowered while others
		// were here recovers.
		c.recover(now, elapsed)
		return
	}
	// Shares are of demand: a merchant whose flood is being refused stays
	// the one over its share, so the cost of refusing it (which lowering
	// cannot remove) never turns a quiet merchant into the heaviest.
	total, admittedAll := 0.0, 0.0
	for _, r := range c.rate {
		total += r.offered
		admittedAll += r.perSecond
	}
	for m, r := range c.rate {
		admitted := r.perSecond
		// Over its share means asking for more than twice what the others
		// ask for on average: two merchants of about the same size are
		// both within their share, so a slowness they did not cause (a
		// loaded database, a neighbour process) refuses neither.
		// And at least MinHeavy/s: fewer orders than that from one api
		// process are not what overloads it (nor a flood worth refusing),
		// and a merchant that just stopped leaves a fading rate beside
		// which a small, steady one would otherwise look heavy.
		if others := (total - r.offered) / float64(len(c.rate)-1); r.offered <= heavy*others || r.offered < c.o.MinHeavy {
			continue
		}
		l := c.lowered[m]
		if l != nil && now.Sub(l.cut) < cutEvery {
			continue // the last cut has not had time to show in the median
		}
		low := c.o.Decrease * admitted
		if l != nil {
			low = min(low, c.o.Decrease*l.rate)
		}
		// Never below what the others are admitted at on average (max-min
		// fairness): a slowness lowering cannot cure, or one the merchant
		// did not cause, holds it at its fair share, not at MinRate.
		fair := (admittedAll - admitted) / float64(len(c.rate)-1)
		low = max(low, fair, c.o.MinRate)
		if l != nil {
			l.rate, l.cut = low, now
			l.lim.SetLimitAt(now, rate.Limit(low))
			l.lim.SetBurstAt(now, burstFor(low, c.o.Interval))
			continue
		}
		// Recovery steps by the rate it was admitted at (or its own limit,
		// learned at its next Admit, if lower).
		c.lowered[m] = &lowered{lim: rate.NewLimiter(rate.Limit(low), burstFor(low, c.o.Interval)), rate: low, step: admitted, cut: now}
	}
}

// cutEvery is the least time between two decreases of one merchant's rate:
// a cut shows in the median only once the requests it refused would have
// been served, a few windows later; cutting every window meanwhile would
// overshoot to the floor.
const cutEvery = 300 * time.Millisecond

// maxWindow is the longest a window gathers samples before it is judged.
const maxWindow = 2 * time.Second

// rateSpan is how far back a merchant's admitted new-order rate looks: long
// enough that one window's few orders do not make a quiet merchant look
// like the heaviest, short enough to follow a flood within a second.
const rateSpan = 2 * time.Second

// rates folds the window's admitted new orders into each merchant's
// moving rate; a merchant with none for activeSpan is no longer active
// (it stopped: it needs no protection and has no share). c.mu is held.
func (c *Controller) rates(now time.Time, elapsed time.Duration) {
	a := 1 - math.Exp(-elapsed.Seconds()/rateSpan.Seconds())
	for m, r := range c.rate {
		if at, ok := c.askedAt[m]; ok {
			r.seen = at // when it last asked, not when this window closed
		}
		if now.Sub(r.seen) > activeSpan {
			// Gone: it has no share, and a lowered rate kept for it would
			// freeze the baseline; if it comes back heavy it is lowered again.
			delete(c.rate, m)
			delete(c.lowered, m)
			continue
		}
		r.perSecond *= 1 - a
		r.offered *= 1 - a
		c.rate[m] = r
	}
	others := len(c.rate) > 0
	for m, n := range c.tries {
		if now.Sub(c.askedAt[m]) > activeSpan {
			continue // its last ask was long ago: a window that stayed open
		}
		r, known := c.rate[m]
		if !known {
			r.since, r.joined = c.windowAt, others
		}
		r.offered += a * float64(n) / elapsed.Seconds()
		r.perSecond += a * float64(c.creates[m]) / elapsed.Seconds()
		r.seen = c.askedAt[m]
		c.rate[m] = r
	}
}

// heavy is how many times the others' mean demand a merchant must ask for
// to be over its share.
const heavy = 2

// activeSpan is how long after its last new order a merchant still counts
// as one of those creating orders.
const activeSpan = 3 * time.Second

// recover raises every lowered rate by one step per Interval elapsed (a
// quiet window lasts longer) and drops those at the merchant's own limit or
// above what it asks for; c.mu is held.
func (c *Controller) recover(now time.Time, elapsed time.Duration) {
	steps := elapsed.Seconds() / c.o.Interval.Seconds()
	for m, l := range c.lowered {
		l.rate += steps * c.o.Increase * max(l.step, c.o.MinRate)
		// What it asks for is known once its moving rate has had rateSpan
		// to follow it: a slow start's first windows say too little.
		r := c.rate[m]
		asksLess := now.Sub(r.since) >= rateSpan && l.rate >= r.offered
		if (l.own > 0 && l.rate >= l.own) || asksLess {
			delete(c.lowered, m)
			continue
		}
		l.lim.SetLimitAt(now, rate.Limit(l.rate))
		l.lim.SetBurstAt(now, burstFor(l.rate, c.o.Interval))
	}
}

func (c *Controller) baseline() time.Duration {
	switch {
	case c.basePrev == 0:
		return c.baseCur
	case c.baseCur == 0:
		return c.basePrev
	}
	return min(c.baseCur, c.basePrev)
}

// burstFor lets one Interval's worth through at once, at least two: with
// a burst of one, requests arriving together at a rate just under one per
// Interval would each find a fraction of a token and get half the rate.
func burstFor(r float64, interval time.Duration) int {
	return max(2, int(r*interval.Seconds()))
}

func medianOf(s []time.Duration) time.Duration {
	c := slices.Clone(s)
	slices.Sort(c)
	return c[len(c)/2]
}
