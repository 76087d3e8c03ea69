package callback

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func cbAt(attempt int) store.CallbackDelivery {
	return store.CallbackDelivery{CallbackID: "msg_x", MerchantID: "mer_x", Status: "PENDING", Attempt: attempt}
}

func TestOutcome(t *testing.T) {
	sched := []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute}
	d := &Deliverer{Schedule: sched, Now: func() time.Time { return t0 }, Rand: func() float64 { return 0.5 }} // no jitter
	cases := []struct {
		name    string
		attempt int
		a       Attempt
		status  payment.CallbackStatus
		next    time.Duration
		disable bool
	}{
		{"2xx delivers", 0, Attempt{StatusCode: 204}, "DELIVERED", 0, false},
		{"500 first retry", 0, Attempt{StatusCode: 500}, "PENDING", 5 * time.Second, false},
		{"timeout third retry", 2, Attempt{Err: errors.New("timeout after 10s")}, "PENDING", 2 * time.Minute, false},
		{"after the last delay, dead", 3, Attempt{StatusCode: 500}, "DEAD", 0, false},
		{"redelivered generation restarts", store.CallbackGeneration, Attempt{StatusCode: 500}, "PENDING", 5 * time.Second, false},
		{"redelivered generation dies", store.CallbackGeneration + 3, Attempt{StatusCode: 500}, "DEAD", 0, false},
		{"410 disables, stays due", 1, Attempt{StatusCode: 410}, "PENDING", 0, true},
		{"429 Retry-After seconds", 0, Attempt{StatusCode: 429, RetryAfter: "42"}, "PENDING", 42 * time.Second, false},
		{"503 Retry-After date", 0, Attempt{StatusCode: 503, RetryAfter: t0.Add(90 * time.Second).Format(http.TimeFormat)}, "PENDING", 90 * time.Second, false},
		{"Retry-After capped at the schedule's max", 0, Attempt{StatusCode: 503, RetryAfter: "86400"}, "PENDING", 2 * time.Minute, false},
		{"Retry-After ignored on 500", 0, Attempt{StatusCode: 500, RetryAfter: "60"}, "PENDING", 5 * time.Second, false},
		{"bad Retry-After falls back", 0, Attempt{StatusCode: 429, RetryAfter: "soon"}, "PENDING", 5 * time.Second, false},
		{"3xx fails", 0, Attempt{StatusCode: 301}, "PENDING", 5 * time.Second, false},
	}
	for _, c := range cases {
		o := d.outcome(cbAt(c.attempt), c.a)
		if o.Status != c.status || o.DisableEndpoint != c.disable || (c.status == "PENDING" && o.NextAttempt.Sub(t0) != c.next) {
			t.Errorf("%s: got %s disable=%v next=+%s, want %s disable=%v next=+%s", c.name, o.Status, o.DisableEndpoint, o.NextAttempt.Sub(t0), c.status, c.disable, c.next)
		}
	}
}

func TestJitterWithin20Percent(t *testing.T) {
	for _, r := range []float64{0, 0.25, 0.999999} {
		d := &Deliverer{Rand: func() float64 { return r }}
		got := d.jitter(10 * time.Second)
		if got < 8*time.Second || got > 12*time.Second {
			t.Errorf("jitter(10s) with r=%v = %s", r, got)
		}
	}
}

func TestRecordable(t *testing.T) {
	big := strings.Repeat("é", MaxRecorded) // 2 bytes each
	if got := recordable([]byte(big)); len(got) > MaxRecorded || !strings.HasPrefix(big, got) {
		t.Errorf("recordable(big) has %d bytes", len(got))
	}
	if got := recordable([]byte("ok\x00\xff")); got != "ok\uFFFD" {
		t.Errorf("recordable = %q", got)
	}
}

// A worker's callback capacity: a turn takes at most a quarter of its sends
// (so a few hung endpoints never hold them all), the sends left, and never
// more turns than MaxTurns.
func TestWorkerCallbackCapacity(t *testing.T) {
	d := &Deliverer{MaxInFlight: 24, MaxTurns: 5}
	for i, want := range []int{6, 6, 6, 6, 0} { // 8 asked, a quarter (6) given, until the 24 are out
		if got := d.acquire(8); got != want {
			t.Fatalf("lane %d got %d sends, want %d", i+1, got, want)
		}
	}
	d.release(6)
	if got := d.acquire(8); got != 6 {
		t.Fatalf("freed sends not reusable: %d", got)
	}
	// A turn whose batch is one callback keeps one send: the five it gives
	// back serve the next turn at once.
	d.giveBack(5)
	if got := d.acquire(8); got != 5 {
		t.Fatalf("after a turn gave back 5 of its 6 sends, the next got %d, want the 5", got)
	}
	d = &Deliverer{MaxInFlight: 100, MaxTurns: 2}
	if a, b, c := d.acquire(1), d.acquire(1), d.acquire(1); a != 1 || b != 1 || c != 0 {
		t.Fatalf("turns past MaxTurns: %d %d %d, want 1 1 0", a, b, c)
	}
	d.release(1)
	if got := d.acquire(1); got != 1 {
		t.Fatalf("a freed turn not reusable: %d", got)
	}
	if got := (&Deliverer{}).acquire(4); got != 4 {
		t.Fatalf("unbounded worker gave %d", got)
	}
}

func TestBreakerPolicy(t *testing.T) {
	p := DefaultBreakerPolicy
	refused := store.CallbackOutcome{Status: "PENDING", Error: "connection refused"}
	five := store.CallbackOutcome{Status: "PENDING", StatusCode: 503}
	four := store.CallbackOutcome{Status: "PENDING", StatusCode: 400}
	ok := store.CallbackOutcome{Status: "DELIVERED", StatusCode: 200}
	var b store.Breaker
	b = p.After(b, []store.CallbackOutcome{refused, five, refused, four}, t0)
	if b.Open() || b.Failures != 3 || b.FailingSince == nil || !b.FailingSince.Equal(t0) {
		t.Fatalf("after 3 failures and a 4xx: %+v", b)
	}
	b = p.After(b, []store.CallbackOutcome{refused, refused}, t0.Add(time.Second))
	if !b.Open() || b.Cooldown != 5*time.Second || !b.OpenUntil.Equal(t0.Add(6*time.Second)) || !b.FailingSince.Equal(t0) {
		t.Fatalf("5 failures must open for 5 s: %+v", b)
	}
	// Failed probes double the cool-down up to 10 min.
	want := 5 * time.Second
	for i := 0; i < 12; i++ {
		b = p.After(b, []store.CallbackOutcome{refused}, t0)
		want = min(2*want, 10*time.Minute)
		if b.Cooldown != want || !b.OpenUntil.Equal(t0.Add(want)) {
			t.Fatalf("probe %d: cooldown %s, want %s", i, b.Cooldown, want)
		}
	}
	// A 4xx probe keeps it open, another cool-down away.
	b = p.After(b, []store.CallbackOutcome{four}, t0.Add(time.Hour))
	if !b.Open() || !b.OpenUntil.Equal(t0.Add(time.Hour+10*time.Minute)) {
		t.Fatalf("4xx probe: %+v", b)
	}
	if b = p.After(b, []store.CallbackOutcome{ok}, t0); b.Open() || b.Failures != 0 || b.FailingSince != nil {
		t.Fatalf("a 2xx must close it: %+v", b)
	}
	gone := store.CallbackOutcome{Status: "PENDING", StatusCode: 410, DisableEndpoint: true}
	if b = p.After(store.Breaker{}, []store.CallbackOutcome{gone, four, four, four, four, four}, t0); b.Failures != 0 || b.Open() {
		t.Fatalf("4xx and 410 are not breaker failures: %+v", b)
	}
}
