package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/ratelimit"
	"github.com/payrail/payrail/internal/testenv"
	"github.com/payrail/payrail/internal/testredis"
)

// scripts counts the rate-limit script calls a client sends.
type scripts struct{ n atomic.Int64 }

func (s *scripts) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *scripts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := strings.ToLower(cmd.Name()); name == "evalsha" || name == "eval" {
			s.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (s *scripts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// clock is a test clock for the lease; Redis keeps its own time for the
// bucket, which the tests' hour-long period makes refill 1 token a second.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

// setup gives a test its Redis, counting its script calls, and a lease clock.
func setup(t *testing.T) (testredis.DB, *scripts, *clock) {
	db := testredis.New(t)
	count := &scripts{}
	db.Client.AddHook(count)
	return db, count, newClock()
}

func replica(rdb *redis.Client, c *clock) *ratelimit.Limiter {
	l := ratelimit.New(rdb)
	l.Lease, l.Now = time.Minute, c.now
	return l
}

// 3,600 an hour with burst 400: a lease of a minute may draw
// min(60 refilled, 400/8, 64) = 50 tokens at once.
var slow = ratelimit.Limit{PerSecond: 3600, Burst: 400, Per: time.Hour}

// A key that saw n requests in the last lease draws n tokens with one
// script call and spends them here; a quiet key (or the first lease) draws
// one per request, as without a lease; unspent tokens are dropped when
// the lease ends, never spent later.
func TestLeaseDrawsAheadForABusyKey(t *testing.T) {
	t.Parallel()
	db, count, c := setup(t)
	l := replica(db.Client, c)
	ctx := context.Background()
	allow := func(key string) ratelimit.Decision {
		t.Helper()
		d, err := l.Allow(ctx, key, slow)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for range 20 {
		if !allow("busy").Allowed {
			t.Fatal("refused within the burst")
		}
	}
	if n := count.n.Load(); n != 20 {
		t.Fatalf("first lease: %d script calls for 20 requests, want 20 (nothing known of the key yet)", n)
	}
	c.add(time.Minute) // the next lease: the key saw 20
	count.n.Store(0)
	var last ratelimit.Decision
	for i := range 20 {
		last = allow("busy")
		if !last.Allowed {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	if n := count.n.Load(); n != 1 {
		t.Fatalf("second lease: %d script calls for 20 requests, want 1 (20 drawn at once)", n)
	}
	if last.Remaining < 355 || last.Remaining > 362 {
		t.Fatalf("Remaining %d after 40 of 400 (1 a second refills)", last.Remaining)
	}
	// Another key is drawn from on its own.
	if d := allow("quiet"); !d.Allowed || d.Remaining < 399-2 {
		t.Fatalf("another key: %+v", d)
	}
	// 5 of the next lease's 20 spent, then the lease ends: 15 are
	// dropped, and the lease after draws anew (charged in Redis).
	c.add(time.Minute)
	for range 5 {
		allow("busy")
	}
	c.add(time.Minute + time.Second)
	count.n.Store(0)
	d := allow("busy")
	if n := count.n.Load(); n != 1 {
		t.Fatalf("after the lease ended: %d script calls, want 1", n)
	}
	// Charged: 40, then 20 drawn (5 spent, 15 dropped), then 5 drawn (1
	// spent): 335 left in Redis and 4 here, plus a token a second.
	if d.Remaining < 339 || d.Remaining > 341 {
		t.Fatalf("Remaining %d, want 339 (+refill): the dropped tokens stay charged", d.Remaining)
	}
	// Spent to the end, the bucket gives exactly what it had: near empty
	// it is drawn from one token at a time, so no fraction is lost.
	drained := 1
	for refused := 0; refused < 3; {
		if allow("busy").Allowed {
			drained++
		} else {
			refused++
		}
	}
	if drained < 339+1 || drained > 341+1 {
		t.Fatalf("%d admitted draining a bucket that had 339 (+refill) and this request", drained)
	}
}

// Two replicas hammering one bucket with many concurrent requests draw
// ahead once the key is known busy (one draw per key at a time, so a
// handful of script calls for hundreds of requests) and admit exactly
// what the bucket holds: never more (tokens are charged before they are
// spent), and no fewer once both have spent their leases (near empty a
// bucket is drawn from one token at a time, so no fraction is lost).
func TestReplicasTogetherAdmitExactlyTheBucket(t *testing.T) {
	t.Parallel()
	db, count, c := setup(t)
	a, b := replica(db.Client, c), replica(db.Client, c)
	ctx := context.Background()
	start := time.Now()
	var admitted atomic.Int64
	burst := func(each int) {
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := a
				if g%2 == 1 {
					l = b
				}
				for range each {
					d, err := l.Allow(ctx, "shared", slow)
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						admitted.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	burst(3) // 96 requests, one draw each: nothing known of the key yet
	if n := count.n.Load(); n != 96 {
		t.Fatalf("first lease: %d script calls for 96 requests", n)
	}
	c.add(time.Minute) // each replica saw 48: it draws 48 at a time
	count.n.Store(0)
	burst(8) // 256 requests
	if n := count.n.Load(); n > 256/4 {
		t.Fatalf("%d script calls for 256 requests to a busy key: too little drawn ahead", n)
	}
	t.Logf("256 concurrent requests to a busy key took %d script calls", count.n.Load())
	if n := admitted.Load(); n != 96+256 {
		t.Fatalf("%d of 352 admitted within a bucket of 400", n)
	}
	burst(8) // past the bucket: draws ahead are refused, then one by one
	// Drain what the leases still hold: then every token drawn is spent.
	for _, l := range []*ratelimit.Limiter{a, b} {
		for refused := 0; refused < 3; {
			if d, _ := l.Allow(ctx, "shared", slow); d.Allowed {
				admitted.Add(1)
			} else {
				refused++
			}
		}
	}
	refill := int64(time.Since(start).Seconds()) + 1
	if n := admitted.Load(); n > 400+refill || n < 400 {
		t.Fatalf("%d admitted across two replicas; the bucket holds 400 (+%d refilled)", n, refill)
	}
}

// A bucket too small to lease from (and the login bucket, with no Lease)
// is drawn from once per request; a limiter holding state for as many
// buckets as it may (source addresses come from the network) draws a new
// one exactly and still refuses at its limit.
func TestSmallOrUntrackedBucketsAreExact(t *testing.T) {
	t.Parallel()
	db, count, c := setup(t)
	l := replica(db.Client, c)
	ctx := context.Background()
	small := ratelimit.Limit{PerSecond: 2, Burst: 5}
	for range 3 { // two leases of traffic: the second would draw ahead
		for range 2 {
			l.Allow(ctx, "small", small)
		}
		c.add(time.Minute)
	}
	if n := count.n.Load(); n != 6 {
		t.Fatalf("%d script calls for 6 requests to a 2/s bucket, want 6", n)
	}
	for i := range 4100 {
		l.Allow(ctx, fmt.Sprintf("addr:%d", i), slow)
	}
	tiny := ratelimit.Limit{PerSecond: 3600, Burst: 3, Per: time.Hour}
	ok := 0
	for range 10 {
		if d, _ := l.Allow(ctx, "addr:new", tiny); d.Allowed {
			ok++
		}
	}
	if ok != 3 {
		t.Fatalf("a bucket past the held bound admitted %d of 10, want its burst of 3", ok)
	}
}

// Redis down: ErrUnavailable with the request admitted (the caller
// decides), from a lease draw as from a single one.
func TestRedisDownIsUnavailable(t *testing.T) {
	t.Parallel()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { dead.Close() })
	c := newClock()
	l := replica(dead, c)
	for i := range 3 {
		d, err := l.Allow(context.Background(), "k", slow)
		if !errors.Is(err, ratelimit.ErrUnavailable) || !d.Allowed {
			t.Fatalf("request %d: %+v %v, want admitted with ErrUnavailable", i, d, err)
		}
		c.add(time.Minute)
	}
}

// One key flooded far past its bucket (its draws ahead refused, then one
// by one) costs another key on the same limiter nothing: the quiet key is
// admitted exactly as often as alone, against a baseline in this test.
func TestAFloodedKeyDoesNotTouchAnother(t *testing.T) {
	t.Parallel()
	db := testredis.New(t)
	c := newClock()
	l := replica(db.Client, c)
	ctx := context.Background()
	small := ratelimit.Limit{PerSecond: 3600, Burst: 40, Per: time.Hour} // draws 5 ahead
	quiet := func(key string) int {
		ok := 0
		for range 30 {
			if d, err := l.Allow(ctx, key, small); err == nil && d.Allowed {
				ok++
			}
		}
		return ok
	}
	start := time.Now()
	alone := quiet("quiet:alone")
	stop := make(chan struct{})
	var flood sync.WaitGroup
	var floodOK, floodN atomic.Int64
	for range 16 {
		flood.Add(1)
		go func() {
			defer flood.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				floodN.Add(1)
				if d, _ := l.Allow(ctx, "noisy", small); d.Allowed {
					floodOK.Add(1)
				}
			}
		}()
	}
	testenv.Poll(t, 20*time.Second, "the flood", func() bool { return floodN.Load() > 200 })
	c.add(time.Minute) // both keys now known busy: they draw ahead
	beside := quiet("quiet:beside")
	close(stop)
	flood.Wait()
	if alone != 30 || beside != alone {
		t.Fatalf("quiet key admitted %d of 30 alone, %d beside the flood", alone, beside)
	}
	if n := floodOK.Load(); n > 40+int64(time.Since(start).Seconds())+1 {
		t.Fatalf("the flooded key admitted %d of %d, over its bucket of 40", n, floodN.Load())
	}
}

// A Redis that accepts connections and never answers (a hung server, a
// dropped link): a busy key's requests must reach it side by side, each
// with its own timeout, as without a lease, not queue behind one failed
// draw after another. The server counts requests waiting on it at once.
func TestHungRedisDoesNotSerializeABusyKey(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var waiting, most atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 4096)
				if _, err := conn.Read(buf); err != nil {
					return
				}
				n := waiting.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				// Waiting until the client gives up and closes the connection.
				_, _ = conn.Read(buf)
				waiting.Add(-1)
			}()
		}
	}()
	hung := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, ReadTimeout: 2 * time.Second,
		Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { ln.Close(); hung.Close() })
	c := newClock()
	l := replica(hung, c)
	ctx := context.Background()
	key := "busy"
	// Make the key busy in the lease before (counted locally; each of these
	// fails at once against a closed context).
	dead, cancel := context.WithCancel(ctx)
	cancel()
	for range 20 {
		l.Allow(dead, key, slow)
	}
	c.add(time.Minute)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d, err := l.Allow(ctx, key, slow); !errors.Is(err, ratelimit.ErrUnavailable) || !d.Allowed {
				t.Errorf("against a hung Redis: %+v %v, want admitted with ErrUnavailable", d, err)
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m < 4 {
		t.Fatalf("at most %d of 8 requests were at Redis at once: the busy key's requests queued behind each other's draws", m)
	}
}
