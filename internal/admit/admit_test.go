package admit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// clock is an injected, hand-advanced time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest() (*Controller, *clock) {
	clk := &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	return New(Options{Now: clk.now}), clk
}

// window plays one 100 ms window: each merchant tries tries[m] new orders
// (the admitted ones served in took), and returns how many were admitted.
func window(c *Controller, clk *clock, took time.Duration, limit int, tries map[string]int) map[string]int {
	got := map[string]int{}
	for m, n := range tries {
		for range n {
			if ok, _, _ := c.Admit(m, limit); ok {
				c.Created(m)
				c.Observe(took)
				got[m]++
			}
		}
	}
	clk.add(100 * time.Millisecond)
	c.Observe(took) // closes the window
	return got
}

// loweredA is a controller after a 2 ms baseline and 1 s of A flooding
// beside B at 15× the baseline: A lowered.
func loweredA(t *testing.T) (*Controller, *clock) {
	t.Helper()
	c, clk := newTest()
	for range 20 {
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 10, "B": 1})
	}
	for range 10 {
		window(c, clk, 30*time.Millisecond, 100, map[string]int{"A": 100, "B": 1})
	}
	if c.Stats().Lowered != 1 {
		t.Fatalf("A was not lowered: %+v", c.Stats())
	}
	return c, clk
}

func TestFastServiceLowersNobody(t *testing.T) {
	c, clk := newTest()
	for range 50 {
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 30, "B": 1})
	}
	if s := c.Stats(); s.Overloaded || s.Lowered != 0 || s.Refused != 0 {
		t.Fatalf("steady 2 ms service: %+v, want nothing lowered", s)
	}
}

func TestOverloadLowersOnlyTheMerchantOverItsShare(t *testing.T) {
	c, clk := newTest()
	for range 20 { // the baseline: 2 ms
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 10, "B": 1})
	}
	var a, b int
	for range 30 { // A floods, serving takes 20 ms (10× the baseline)
		got := window(c, clk, 20*time.Millisecond, 100, map[string]int{"A": 100, "B": 1})
		a, b = a+got["A"], b+got["B"]
	}
	s := c.Stats()
	if !s.Overloaded || s.Lowered != 1 || s.Refused == 0 {
		t.Fatalf("after the flood: %+v, want overloaded with A lowered", s)
	}
	if b != 30 {
		t.Fatalf("B (within its share) got %d of 30 orders admitted", b)
	}
	if a > 3000/4 {
		t.Fatalf("A got %d of 3000 admitted while overloaded: its rate was not lowered", a)
	}
	ok, retry, rate := c.Admit("A", 100)
	for ok { // use up what A's lowered rate has left
		ok, retry, rate = c.Admit("A", 100)
	}
	if want := time.Duration(float64(time.Second) / rate); retry < want || retry > want+time.Millisecond || rate < 1 || rate >= 100 {
		t.Fatalf("A refused with retry %v at rate %.1f/s", retry, rate)
	}
}

func TestALoneMerchantIsNeverLowered(t *testing.T) {
	c, clk := newTest()
	for range 20 {
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 10})
	}
	admitted := 0
	for range 30 {
		admitted += window(c, clk, 80*time.Millisecond, 100, map[string]int{"A": 100})["A"]
	}
	if s := c.Stats(); !s.Overloaded || s.Lowered != 0 || admitted != 3000 {
		t.Fatalf("lone merchant under overload: %+v, %d of 3000 admitted; want overload seen and nothing lowered", s, admitted)
	}
}

func TestLoweredRateRecoversToTheMerchantsLimit(t *testing.T) {
	c, clk := loweredA(t)
	// Healthy again: each window raises A by 2 % of its limit of 100/s, so
	// from ≥ 1/s it is back within 50 windows, and dropped.
	for i := range 60 {
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 10, "B": 1})
		if c.Stats().Lowered == 0 {
			if i < 5 {
				t.Fatalf("A recovered after %d windows: recovery is not gradual", i+1)
			}
			return
		}
	}
	t.Fatalf("A still lowered after 60 healthy windows: %+v", c.Stats())
}

func TestTooFewSamplesJudgeNothing(t *testing.T) {
	c, clk := newTest()
	// Two merchants, one slow request every 400 ms: fewer than MinSamples
	// in the 2 s a window may last, so nothing is judged, nobody lowered.
	for i := range 40 {
		m := []string{"A", "B"}[i%2]
		if ok, _, _ := c.Admit(m, 100); ok {
			c.Created(m)
			c.Observe(time.Second)
		}
		clk.add(400 * time.Millisecond)
	}
	if s := c.Stats(); s.Overloaded || s.Lowered != 0 || s.Median != 0 {
		t.Fatalf("a request each 400 ms: %+v", s)
	}
}

func TestFloorAndCeiling(t *testing.T) {
	for _, tc := range []struct {
		base, now time.Duration
		over      bool
	}{
		{100 * time.Microsecond, 4 * time.Millisecond, false}, // 40× a tiny baseline, under the 5 ms floor
		{100 * time.Microsecond, 6 * time.Millisecond, true},
		{40 * time.Millisecond, 60 * time.Millisecond, true}, // 1.5× but above the 50 ms ceiling
		{10 * time.Millisecond, 19 * time.Millisecond, false},
		{10 * time.Millisecond, 21 * time.Millisecond, true},
	} {
		t.Run(fmt.Sprint(tc.base, "→", tc.now), func(t *testing.T) {
			c, clk := newTest()
			for range 5 {
				window(c, clk, tc.base, 100, map[string]int{"A": 10})
			}
			window(c, clk, tc.now, 100, map[string]int{"A": 10})
			if s := c.Stats(); s.Overloaded != tc.over || s.Baseline != tc.base {
				t.Fatalf("%+v, want overloaded %v over baseline %v", s, tc.over, tc.base)
			}
		})
	}
}

// Many goroutines admitting, counting and observing at once (run with
// -race): nothing is lost and the counters add up.
func TestConcurrentUse(t *testing.T) {
	c, clk := newTest()
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted, refused := 0, 0
	for g := range 16 {
		wg.Go(func() {
			m := fmt.Sprint("M", g%4)
			for i := range 500 {
				ok, _, _ := c.Admit(m, 100)
				mu.Lock()
				if ok {
					admitted++
				} else {
					refused++
				}
				mu.Unlock()
				if ok {
					c.Created(m)
				}
				c.Observe(time.Duration(1+i%40) * time.Millisecond)
				if i%50 == 0 {
					clk.add(50 * time.Millisecond)
				}
				_ = c.Stats()
			}
		})
	}
	wg.Wait()
	if admitted+refused != 16*500 || c.Stats().Refused != int64(refused) {
		t.Fatalf("admitted %d + refused %d ≠ %d, or Stats.Refused %d ≠ %d", admitted, refused, 16*500, c.Stats().Refused, refused)
	}
}

// An overload that lowering cannot end (say, the cost of refusing A's
// flood itself) never turns the quiet merchant into the one lowered: shares
// are of demand, and A keeps asking for far more than B.
func TestPersistentOverloadNeverLowersTheQuietMerchant(t *testing.T) {
	c, clk := newTest()
	for range 20 {
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 10, "B": 1})
	}
	b := 0
	for range 200 { // 20 s of overload whatever A is admitted at
		b += window(c, clk, 30*time.Millisecond, 100, map[string]int{"A": 100, "B": 1})["B"]
	}
	if s := c.Stats(); b != 200 || s.Lowered != 1 {
		t.Fatalf("B got %d of 200 admitted, %d merchants lowered; want all of B's and only A lowered", b, s.Lowered)
	}
}

// A lowered merchant left alone recovers even while serving stays slow:
// there is no one left to protect.
func TestLoweredMerchantLeftAloneRecovers(t *testing.T) {
	c, clk := loweredA(t)
	for range 200 { // B has gone; still overloaded
		window(c, clk, 30*time.Millisecond, 100, map[string]int{"A": 100})
	}
	if s := c.Stats(); !s.Overloaded || s.Lowered != 0 {
		t.Fatalf("A alone for 20 s: %+v, want overload seen and A no longer lowered", s)
	}
	if got := window(c, clk, 30*time.Millisecond, 100, map[string]int{"A": 10})["A"]; got != 10 {
		t.Fatalf("A alone admitted %d of 10", got)
	}
}

// Two merchants of about the same size are both within their share: a
// slowness they did not cause (another tenant's process, a loaded database)
// lowers neither.
func TestMerchantsOfAboutTheSameSizeAreNotLowered(t *testing.T) {
	c, clk := newTest()
	for range 20 {
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 5, "B": 4})
	}
	admitted := 0
	for range 100 { // 60/s and 40/s
		got := window(c, clk, 40*time.Millisecond, 100, map[string]int{"A": 6, "B": 4})
		admitted += got["A"] + got["B"]
	}
	if s := c.Stats(); !s.Overloaded || s.Lowered != 0 || admitted != 1000 {
		t.Fatalf("A at 1.5× B under overload: %+v, %d of 1000 admitted; want nothing lowered", s, admitted)
	}
}

// A small merchant (fewer than MinHeavy new orders/s) is never lowered,
// even at three times a smaller one's rate (or beside one that stopped,
// whose fading rate would otherwise make it look like the flood).
func TestSmallMerchantIsNeverLowered(t *testing.T) {
	c, clk := newTest()
	for range 20 {
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 1, "B": 1})
	}
	b := 0
	for i := range 100 { // B at 15/s, A at 5/s, overloaded
		tries := map[string]int{"B": 1 + i%2}
		if i%2 == 0 {
			tries["A"] = 1
		}
		b += window(c, clk, 40*time.Millisecond, 100, tries)["B"]
	}
	if s := c.Stats(); !s.Overloaded || s.Lowered != 0 || b != 150 {
		t.Fatalf("%+v, B admitted %d of 150; want B never lowered", s, b)
	}
}

// A steady large merchant beside a small one, under a slowness lowering
// cannot cure: it is held at its fair share (what the other is admitted
// at), never pushed to MinRate.
func TestLoweredRateNeverBelowTheOthersShare(t *testing.T) {
	c, clk := newTest()
	for range 20 {
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 5, "B": 1})
	}
	a := 0
	for i := range 200 { // 20 s: A asks 50/s, B 10/s, serving stays at 60 ms
		got := window(c, clk, 60*time.Millisecond, 100, map[string]int{"A": 5, "B": 1})
		if i >= 150 {
			a += got["A"]
		}
	}
	if s := c.Stats(); s.Lowered != 1 || a < 40 { // the last 5 s at ≥ 8/s
		t.Fatalf("%+v; A admitted %d in its last 5 s, want ≥ 40 (B's 10/s, less the moving average's lag)", s, a)
	}
}

// Recovery steps by the rate the merchant was admitted at, not by a far
// larger limit of its own: a merchant allowed 10,000/s but sending 200/s
// is not let back to all of its 200/s by the first healthy window.
func TestRecoveryStepsByWhatTheMerchantSent(t *testing.T) {
	c, clk := newTest()
	for range 20 {
		window(c, clk, 2*time.Millisecond, 10000, map[string]int{"A": 20, "B": 1})
	}
	for range 10 {
		window(c, clk, 30*time.Millisecond, 10000, map[string]int{"A": 20, "B": 1})
	}
	if c.Stats().Lowered != 1 {
		t.Fatalf("A was not lowered: %+v", c.Stats())
	}
	admitted := 0
	for range 3 {
		for range 10 { // other routes' requests: enough samples to judge each window
			c.Observe(2 * time.Millisecond)
		}
		admitted += window(c, clk, 2*time.Millisecond, 10000, map[string]int{"A": 20, "B": 1})["A"]
	}
	if admitted >= 20 {
		t.Fatalf("A got %d of 60 in the first 3 healthy windows: its 10,000/s limit made the recovery steps", admitted)
	}
	for range 100 {
		window(c, clk, 2*time.Millisecond, 10000, map[string]int{"A": 20, "B": 1})
	}
	if s := c.Stats(); s.Lowered != 0 {
		t.Fatalf("A still lowered after 10 healthy seconds: %+v", s)
	}
}

// A flood held down for longer than BaselineSpan does not raise the
// baseline to the loaded level: A stays lowered after 15 minutes, judged
// against the 2 ms measured before the flood.
func TestLongFloodDoesNotRaiseTheBaseline(t *testing.T) {
	c, clk := loweredA(t)
	for range 9000 { // 15 min of 100 ms windows, serving at 30 ms
		window(c, clk, 30*time.Millisecond, 100, map[string]int{"A": 100, "B": 1})
	}
	if s := c.Stats(); s.Baseline != 2*time.Millisecond || !s.Overloaded || s.Lowered != 1 {
		t.Fatalf("after 15 min of a held-down flood: %+v; want the 2 ms baseline, overload seen, A lowered", s)
	}
}

// A lowered merchant that stops asking is forgotten once it is no longer
// active, and with no traffic at all the figures move on at each Stats
// (a metrics scrape) instead of showing the last busy window forever.
func TestQuietControllerForgetsAndClears(t *testing.T) {
	c, clk := loweredA(t)
	clk.add(5 * time.Second)
	if s := c.Stats(); s.Overloaded || s.Lowered != 0 {
		t.Fatalf("5 s without a request: %+v; want no overload shown and A forgotten", s)
	}
	if c.Active() != 0 {
		t.Fatalf("%d merchants still active after 5 s of silence", c.Active())
	}
}

// A merchant still flooding while its lowered rate recovers is let in at
// that rate until it reaches its own limit, not dropped at what it was
// admitted at when first lowered: dropped there, its own bucket (full after
// seconds below its limit) let hundreds through at once, every few seconds.
func TestRecoveryUnderAFloodEndsAtTheOwnLimit(t *testing.T) {
	c, clk := newTest()
	for range 20 {
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 3, "B": 1})
	}
	for range 5 { // A at 50/s, five times B: lowered from about 35/s
		window(c, clk, 30*time.Millisecond, 100, map[string]int{"A": 5, "B": 1})
	}
	if c.Stats().Lowered != 1 {
		t.Fatalf("A was not lowered: %+v", c.Stats())
	}
	for i := range 400 { // healthy again, and A floods at 1,000/s
		for range 10 { // other routes' requests: enough samples to judge each window
			c.Observe(2 * time.Millisecond)
		}
		got := window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 100, "B": 1})["A"]
		if got > 12 {
			t.Fatalf("window %d: A let in %d of 100 while lowered (its own limit is 10 a window)", i, got)
		}
		if c.Stats().Lowered == 0 {
			if got < 8 {
				t.Fatalf("A's lowered rate dropped after window %d while it let in %d a window, below its own limit of 10", i, got)
			}
			return
		}
	}
	t.Fatalf("A still lowered after 40 healthy seconds: %+v", c.Stats())
}

// A flood that starts while another merchant is creating orders is ramped
// up from its fair share, not admitted a whole burst at once (the overload
// rule would act only after a window, and then need cuts to come down), and
// ramps to its own limit while serving stays fast. B is never refused.
func TestFloodStartingBesideOthersRampsUp(t *testing.T) {
	c, clk := newTest()
	for range 30 { // B alone, 2 ms
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"B": 1})
	}
	var first, b int
	var perWindow []int
	for i := range 60 { // A floods at 1,000/s; serving stays at 2 ms
		got := window(c, clk, 2*time.Millisecond, 100, map[string]int{"A": 100, "B": 1})
		if i == 0 {
			first = got["A"]
		}
		perWindow = append(perWindow, got["A"])
		b += got["B"]
	}
	if first > 10 {
		t.Fatalf("A's first window admitted %d of 100; want a slow start (a few)", first)
	}
	if b != 60 {
		t.Fatalf("B admitted %d of 60", b)
	}
	if perWindow[5] >= perWindow[35] {
		t.Fatalf("A did not ramp up while serving was fast: %v", perWindow)
	}
	s := c.Stats()
	if s.SlowStarts != 1 || s.Lowered != 0 {
		t.Fatalf("%+v; want one slow start, ended at A's own limit after ~4 s of fast service", s)
	}
	if last := perWindow[len(perWindow)-1]; last < 50 {
		t.Fatalf("A's last window admitted %d; want its own limit's worth, not held down", last)
	}
}

// A merchant that trickled orders for seconds and then floods starts slow
// too; one whose own limit is no more than the start is left to it.
func TestTrickleThatFloodsStartsSlowAndSmallLimitsAreLeftAlone(t *testing.T) {
	for _, tc := range []struct {
		limit    int
		maxFirst int
	}{{100, 10}, {20, 100}} {
		t.Run(fmt.Sprint("limit ", tc.limit), func(t *testing.T) {
			c, clk := newTest()
			for i := range 40 { // A at 5/s and B at 10/s for 4 s
				tries := map[string]int{"B": 1}
				if i%2 == 0 {
					tries["A"] = 1
				}
				window(c, clk, 2*time.Millisecond, tc.limit, tries)
			}
			got := window(c, clk, 2*time.Millisecond, tc.limit, map[string]int{"A": 100, "B": 1})
			if got["A"] > tc.maxFirst || got["B"] != 1 {
				t.Fatalf("limit %d: A admitted %d of 100 in its first flooding window (want ≤ %d), B %d",
					tc.limit, got["A"], tc.maxFirst, got["B"])
			}
		})
	}
}

// Many goroutines starting floods at once: one slow start each, no race.
func TestConcurrentSlowStarts(t *testing.T) {
	c, clk := newTest()
	for range 30 {
		window(c, clk, 2*time.Millisecond, 100, map[string]int{"B": 1})
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for range 50 {
				if ok, _, _ := c.Admit(fmt.Sprint("F", g%4), 100); ok {
					c.Created(fmt.Sprint("F", g%4))
				}
				c.Observe(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if s := c.Stats(); s.SlowStarts != 4 {
		t.Fatalf("%+v; want 4 slow starts (one per flooding merchant)", s)
	}
}
