package httpapi

import (
	"sync"
	"testing"

	"github.com/payrail/payrail/internal/ratelimit"
)

func TestInFlightBoundIsPerMerchantAndReleasedOnce(t *testing.T) {
	m := &MerchantLimits{MaxInFlight: 16}
	if got := m.inFlightCap(ratelimit.Limit{PerSecond: 5, Burst: 10}); got != 16 {
		t.Errorf("cap at burst 10 = %d, want the floor 16", got)
	}
	if got := m.inFlightCap(ratelimit.Limit{PerSecond: 100, Burst: 200}); got != 200 {
		t.Errorf("cap at burst 200 = %d, want the burst", got)
	}
	if got := (&MerchantLimits{}).inFlightCap(ratelimit.Limit{PerSecond: 100}); got != 0 {
		t.Errorf("MaxInFlight 0 gives cap %d, want none", got)
	}

	// 64 concurrent requests of A against a bound of 3: exactly 3 enter.
	var mu sync.Mutex
	var releases []func()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if r, ok := m.enter("mer_a", 3); ok {
				mu.Lock()
				releases = append(releases, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(releases) != 3 {
		t.Fatalf("%d of 64 entered a bound of 3", len(releases))
	}
	// Another merchant is not charged for A's requests.
	rb, ok := m.enter("mer_b", 3)
	if !ok {
		t.Fatal("B refused while A is at its bound")
	}
	rb()
	// A release counts once, however often it is called.
	releases[0]()
	releases[0]()
	if _, ok := m.enter("mer_a", 3); !ok {
		t.Fatal("A refused after one release")
	}
	if _, ok := m.enter("mer_a", 3); ok {
		t.Fatal("a double release freed two places")
	}
	for _, r := range releases[1:] {
		r()
	}
	if n := len(m.inFlight); n != 1 {
		t.Errorf("in-flight map holds %d merchants, want 1 (A's remaining request)", n)
	}
}
