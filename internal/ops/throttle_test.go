package ops_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/ops"
	"github.com/payrail/payrail/internal/process"
	"github.com/payrail/payrail/internal/ratelimit"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
	"github.com/payrail/payrail/internal/testredis"
)

func throttled(err error) *ops.Throttled {
	var th *ops.Throttled
	if errors.As(err, &th) {
		return th
	}
	return nil
}

// Five failures lock a name for 30 s, each further failure doubles it up
// to 15 min, the lock lifts when the (injected) clock passes it, a success
// clears it, and two api replicas on one Redis see the same lock.
func TestLoginThrottleLocksAndLifts(t *testing.T) {
	t.Parallel()
	rdb := testredis.New(t).Client
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	a := &ops.LoginThrottle{Redis: rdb, Now: now}
	b := &ops.LoginThrottle{Redis: rdb, Now: now} // another replica
	ctx := context.Background()
	attempt := func(th *ops.LoginThrottle) error {
		release, err := th.Admit(ctx, "alice", "192.0.2.1")
		if err == nil {
			release()
		}
		return err
	}
	for i := range 4 {
		if err := attempt(a); err != nil {
			t.Fatalf("attempt %d refused: %v", i+1, err)
		}
		if lock, err := a.Failed(ctx, "alice"); err != nil || lock != 0 {
			t.Fatalf("failure %d locked for %s (%v)", i+1, lock, err)
		}
	}
	if lock, _ := a.Failed(ctx, "alice"); lock != 30*time.Second {
		t.Fatalf("5th failure locks for %s, want 30s", lock)
	}
	th := throttled(attempt(b))
	if th == nil || th.Status != http.StatusTooManyRequests || th.RetryAfter != 30*time.Second {
		t.Fatalf("the other replica during the lock: %+v, want 429 for 30s", th)
	}
	if err := attempt(a); throttled(err) == nil {
		t.Fatal("a different name is not affected, but the same name must be")
	}
	if _, err := b.Admit(ctx, "bob", "192.0.2.1"); err != nil {
		t.Fatalf("another name during alice's lock: %v", err)
	}
	clock.Add(int64(31 * time.Second))
	if err := attempt(b); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute}
	for i, w := range want {
		if lock, _ := b.Failed(ctx, "alice"); lock != w {
			t.Fatalf("failure %d locks for %s, want %s", 6+i, lock, w)
		}
	}
	if err := a.Succeeded(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := attempt(a); err != nil {
		t.Fatalf("after a success: %v", err)
	}
	if lock, _ := a.Failed(ctx, "alice"); lock != 0 {
		t.Fatalf("first failure after a success locks for %s", lock)
	}
}

// 50 parallel attempts never hold more bcrypt slots than the bound: the
// rest are refused at once with 503, not queued.
func TestLoginThrottleBoundsConcurrentHashes(t *testing.T) {
	t.Parallel()
	th := &ops.LoginThrottle{Redis: testredis.New(t).Client, MaxHashes: 3}
	var wg sync.WaitGroup
	var admitted, busy atomic.Int64
	hold := make(chan struct{})
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := th.Admit(context.Background(), "n"+string(rune('a'+i%26)), "198.51.100.1")
			if e := throttled(err); e != nil && e.Status == http.StatusServiceUnavailable {
				busy.Add(1)
				return
			}
			if err != nil {
				t.Errorf("attempt %d: %v", i, err)
				return
			}
			admitted.Add(1)
			<-hold
			release()
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for admitted.Load()+busy.Load() < 50 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling for the goroutines to answer
	}
	close(hold)
	wg.Wait()
	if admitted.Load() != 3 || busy.Load() != 47 {
		t.Fatalf("admitted %d, busy %d; want 3 and 47", admitted.Load(), busy.Load())
	}
}

// Through the console on a real api: the sixth attempt for a name is a 429
// with Retry-After and a message on the login page, even with the right
// password; another operator still signs in; an address making too many
// attempts is refused too.
func TestLoginIsThrottledOverHTTP(t *testing.T) {
	t.Parallel()
	sys := setup(t, systest.Options{})
	status, b := sys.Admin("POST", "/admin/operators", map[string]string{"name": "bob.ops", "password": opPassword})
	if status != http.StatusCreated {
		t.Fatalf("second operator: %d %s", status, b)
	}
	// A second api process with its own console, as another replica: the
	// failures made on both count against one lock.
	deps, err := process.Connect(context.Background(), sys.Config)
	testenv.Must(t, err)
	api2 := process.NewAPI(sys.Config, deps, sys.Log)
	ctx, cancel := context.WithCancel(context.Background())
	testenv.Must(t, process.MountOps(ctx, sys.Config, api2, sys.Log))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = api2.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done; deps.Close() })
	other := newBrowser(t, "http://"+ln.Addr().String())

	br := newBrowser(t, sys.URL)
	first := time.Now()
	for i := range 5 {
		b := br
		if i%2 == 1 {
			b = other
		}
		if p := b.login(opName, "wrong password "+string(rune('a'+i))); p.Status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i+1, p.Status)
		}
	}
	if p := other.login(opName, opPassword); p.Status != http.StatusTooManyRequests {
		t.Fatalf("the other replica after 5 failures across both: %d, want 429", p.Status)
	}
	lockedBy := time.Now() // the 5th failure was before this
	p := br.login(opName, opPassword)
	// Retry-After is the lock's 30 s less what has passed since the 5th
	// failure, rounded up: 30, or less on a slow machine.
	ra, _ := strconv.Atoi(p.Header.Get("Retry-After"))
	if p.Status != http.StatusTooManyRequests || ra > 30 || ra < 30-int(time.Since(lockedBy)/time.Second)-1 || !strings.Contains(p.Body, "Sign-in paused") {
		t.Fatalf("6th attempt: %d Retry-After %q; want 429, 30 (less the seconds since the 5th failure) and the message", p.Status, p.Header.Get("Retry-After"))
	}
	if p := newBrowser(t, sys.URL).login("bob.ops", opPassword); p.Status != http.StatusSeeOther {
		t.Fatalf("another operator during the lock: %d", p.Status)
	}
	// 8 attempts so far from this address; the bucket holds 10 a minute.
	refused := 0
	for i := range 6 {
		p := br.post("/ops/login", url.Values{"name": {"nobody" + string(rune('a'+i))}, "password": {"x"}, "next": {"/ops/"}})
		if p.Status == http.StatusTooManyRequests {
			refused++
		}
	}
	// 14 attempts against 10 a minute: 4 refused, one fewer for each 6 s
	// the bucket refilled meanwhile (a slow machine's bcrypt).
	if want := 4 - int(time.Since(first)/(6*time.Second)); refused < want {
		t.Fatalf("an address over 10 attempts a minute was refused %d of 6 times (want ≥ %d after %s)", refused, want, time.Since(first).Round(time.Second))
	}
	// The lock is audited once when it starts; refused attempts write
	// nothing (a stranger could otherwise grow the table for free).
	if n := sys.Count(`SELECT count(*) FROM audit_log WHERE action = 'login.throttled'`); n != 1 {
		t.Fatalf("login.throttled rows = %d, want 1 (the lock's start)", n)
	}
	if n := sys.Count(`SELECT count(*) FROM audit_log WHERE action LIKE 'login.%'`); n != 5+1+1+(6-refused) {
		t.Fatalf("sign-in audit rows = %d, want %d: 5 failures, the lock, bob's success and the unrefused attempts", n, 5+1+1+(6-refused))
	}
}

// Redis down: attempts are admitted (an outage must not lock every
// operator out), the error says so, and the bcrypt slots are returned —
// a caller that released only on a nil error would leak them and, after
// MaxHashes attempts, answer 503 to everyone for good.
func TestLoginThrottleAdmitsWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { dead.Close() })
	th := &ops.LoginThrottle{Redis: dead, Limiter: ratelimit.New(dead), MaxHashes: 2}
	for i := range 6 {
		release, err := th.Admit(context.Background(), "alice", "192.0.2.1")
		if throttled(err) != nil || release == nil {
			t.Fatalf("attempt %d with Redis down: %v, want admitted", i+1, err)
		}
		if err == nil {
			t.Fatalf("attempt %d: no error reported for the Redis outage", i+1)
		}
		release()
	}
}
