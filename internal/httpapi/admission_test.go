package httpapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

// Admission control end to end (real PostgreSQL and Redis): the ceiling is
// set so low that every judged window is overload, so the test decides
// when payrail is "loaded" instead of having to load the machine. A lone
// merchant is never lowered; beside a quiet merchant, the flooding one's
// new orders are refused 429 with Retry-After once its rate is lowered and
// nothing is written for them, while the quiet merchant's orders all go
// through, as alone, and the flooding merchant's confirms are not refused.
func TestAdmissionLowersOnlyTheFloodingMerchant(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{
		"PAYRAIL_ADMIT_CEILING": "1ns", "PAYRAIL_RATE_LIMIT": "100000", "PAYRAIL_RATE_BURST": "100000",
		"PAYRAIL_MERCHANT_MAX_IN_FLIGHT": "1000"}})
	noisy, quiet := sys.NewMerchant(""), sys.NewMerchant("")
	create := func(m *systest.Merchant) systest.Response {
		return m.Do("POST", "/v1/orders", map[string]any{"amount": 1000, "orderName": "admission"})
	}
	flood := func(n int) (codes map[int]int, lowered systest.Response, created []systest.Response) {
		codes = map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range n / 8 {
					r := create(noisy)
					mu.Lock()
					codes[r.Status]++
					if r.Status == 429 && strings.Contains(string(r.Body), "lowered") {
						lowered = r
					}
					if r.Status == 201 {
						created = append(created, r)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return codes, lowered, created
	}

	// Alone, the flooding merchant is never lowered, overload or not.
	if codes, lowered, _ := flood(400); codes[201] != 400 || lowered.Status != 0 {
		t.Fatalf("lone merchant under (forced) overload got %v; want 400×201, nothing lowered", codes)
	}
	// The quiet merchant alone: its baseline.
	for i := range 5 {
		if r := create(quiet); r.Status != 201 {
			t.Fatalf("quiet alone, order %d: %d %s", i, r.Status, r.Body)
		}
	}
	quietCodes := map[int]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			quietCodes[create(quiet).Status]++
		}
	}()
	codes, lowered, created := flood(800)
	<-done
	if codes[429] == 0 || lowered.Status != 429 {
		t.Fatalf("flooding beside a quiet merchant got %v: its new orders were never refused by a lowered rate", codes)
	}
	if quietCodes[201] != 20 {
		t.Fatalf("quiet merchant beside the flood got %v, want 20×201 as alone", quietCodes)
	}
	if lowered.Code() != "RATE_LIMITED" || lowered.Header.Get("Retry-After") == "" ||
		!strings.HasPrefix(lowered.Header.Get("RateLimit-Policy"), `"merchant-lowered";q=`) || !strings.HasPrefix(lowered.Header.Get("RateLimit"), `"merchant-lowered";r=0;t=`) {
		t.Fatalf("lowered 429: %s %v", lowered.Body, lowered.Header)
	}
	if n := sys.Count(`SELECT count(*) FROM orders WHERE merchant_id = $1`, noisy.MerchantID); n != 400+codes[201] {
		t.Fatalf("%d orders stored for %d accepted creates: a refused create wrote something", n, 400+codes[201])
	}
	// The metrics say so (read at once: a lowered rate recovers within
	// seconds of the flood's end).
	m := apiMetrics(t, sys)
	for _, want := range []string{"payrail_admission_overloaded 1", "payrail_admission_lowered_merchants 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("api metrics lack %q", want)
		}
	}
	if !strings.Contains(m, "payrail_admission_refused_total") {
		t.Errorf("api metrics lack payrail_admission_refused_total")
	}
	// Lowered for new orders, the merchant still confirms what its buyers paid.
	if len(created) == 0 {
		t.Fatal("the flood had no order created beside the quiet merchant")
	}
	for _, r := range created[:min(5, len(created))] {
		o := systest.Order{OrderID: r.JSON()["orderId"].(string), PaymentToken: r.JSON()["paymentToken"].(string), Amount: 1000}
		if c := noisy.Confirm(o, sys.Session(o)); c.Status != 202 {
			t.Fatalf("confirm of a lowered merchant: %d %s", c.Status, c.Body)
		}
	}
}

// A flood that starts while another merchant is creating orders starts
// slow, with serving fast (no overload forced): its first burst is refused
// 429 beyond its fair share instead of landing at once, nothing is written
// for a refusal, and the quiet merchant's orders all go through.
func TestAdmissionSlowStartsAFloodBesideAnotherMerchant(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Env: map[string]string{
		// A limit the flood's 192 creates stay within (burst 500), and low
		// enough that the slow start's ramp (Increase × the limit per
		// 100 ms window: +10/s) stays slow while a loaded machine spreads
		// the flood's first 50 answers over several windows. At 100,000
		// the ramp added 2,000/s a window, and a loaded run let 44 of the
		// first 50 through.
		"PAYRAIL_RATE_LIMIT": "500", "PAYRAIL_RATE_BURST": "500", "PAYRAIL_MERCHANT_MAX_IN_FLIGHT": "1000",
		// A pool share (max conns ÷ active merchants) above the flood's 32
		// clients: every 429 here is the slow start's.
		"PAYRAIL_DB_MAX_CONNS": "80"}})
	noisy, quiet := sys.NewMerchant(""), sys.NewMerchant("")
	create := func(m *systest.Merchant) systest.Response {
		return m.Do("POST", "/v1/orders", map[string]any{"amount": 1000, "orderName": "slow start"})
	}
	// The quiet merchant creates an order every 50 ms throughout (20/s:
	// under what starts a flood), first alone for half a second.
	quietCodes := map[int]int{}
	var quietCreated atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				st := create(quiet).Status
				quietCodes[st]++
				if st == 201 {
					quietCreated.Add(1)
				}
			}
		}
	}()
	// The quiet merchant is one of those creating orders once a judged
	// window has seen it: 8 served requests, or 2 s.
	testenv.Poll(t, 10*time.Second, "the quiet merchant's first orders", func() bool { return quietCreated.Load() >= 12 })
	codes := map[int]int{}
	var lowered systest.Response
	var mu sync.Mutex
	var wg sync.WaitGroup
	firstCreated, otherRefusals := 0, 0 // of the flood's first 50 answers; 429s not the slow start's
	// 32 clients: on a loaded machine fewer were too slow to ask at a
	// flood's rate at all.
	for range 32 {
		wg.Go(func() {
			for range 192 / 32 {
				r := create(noisy)
				mu.Lock()
				codes[r.Status]++
				if r.Status == 429 {
					lowered = r
					if !strings.HasPrefix(r.Header.Get("RateLimit-Policy"), `"merchant-lowered";q=`) {
						otherRefusals++
					}
				} else if codes[429]+codes[201] <= 50 {
					firstCreated++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	<-done
	if codes[429] == 0 || codes[201] >= 150 || !strings.HasPrefix(lowered.Header.Get("RateLimit-Policy"), `"merchant-lowered";q=`) {
		t.Fatalf("a flood starting beside another merchant got %v (last 429: %v): its burst was not slowed", codes, lowered.Header)
	}
	t.Logf("flood: %v, %d created of the first 50 answers", codes, firstCreated)
	if otherRefusals > 0 {
		t.Fatalf("%d of the flood's 429s were not the slow start's (the last: %v)", otherRefusals, lowered.Header)
	}
	if firstCreated > 40 { // without slow start: 50 of 50
		t.Fatalf("%d of the flood's first 50 creates went through: its burst landed at once", firstCreated)
	}
	if codes[201]+codes[429] != 192 {
		t.Fatalf("flood answers %v: only 201 and 429 expected", codes)
	}
	if n := sys.Count(`SELECT count(*) FROM orders WHERE merchant_id = $1`, noisy.MerchantID); n != codes[201] {
		t.Fatalf("%d orders stored for %d accepted creates: a refused create wrote something", n, codes[201])
	}
	if quietCodes[201] == 0 || len(quietCodes) != 1 {
		t.Fatalf("quiet merchant beside the starting flood got %v, want only 201s", quietCodes)
	}
	if !strings.Contains(apiMetrics(t, sys), "payrail_admission_slow_starts_total 1") {
		t.Errorf("api metrics lack payrail_admission_slow_starts_total 1")
	}
}

// apiMetrics is what the api's metrics listener shows now.
func apiMetrics(t *testing.T, sys *systest.System) string {
	t.Helper()
	ms := httptest.NewServer(sys.API.Metrics)
	defer ms.Close()
	resp, err := http.Get(ms.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
