package queue

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/testredis"
)

func dequeueCmd(q string) *redis.Cmd {
	p := "asynq:{" + q + "}:"
	return redis.NewCmd(context.Background(), "evalsha", "0123abcd", 4, p+"pending", p+"paused", p+"active", p+"lease", 1700000000, p+"t:")
}

// The gate's decisions on a fake clock: shut but for a probe each Probe,
// open for Hold after a wake; only asynq's dequeue script is recognised.
func TestIdleGateDecisions(t *testing.T) {
	now := time.Unix(1700000000, 0)
	g := &IdleGate{Hold: 200 * time.Millisecond, Probe: 250 * time.Millisecond, Now: func() time.Time { return now }}
	if !g.allow() {
		t.Fatal("the first poll is a probe")
	}
	now = now.Add(60 * time.Millisecond)
	if g.allow() {
		t.Fatal("60 ms after a probe (its round's window is 50 ms) with no wake the gate is shut")
	}
	now = now.Add(210 * time.Millisecond)
	if !g.allow() {
		t.Fatal("a probe every 250 ms")
	}
	now = now.Add(30 * time.Millisecond)
	g.Wake()
	for _, after := range []time.Duration{0, 90 * time.Millisecond, 180 * time.Millisecond} {
		if !g.allow() {
			t.Fatalf("shut %s after a wake", after)
		}
		now = now.Add(90 * time.Millisecond)
	}
	// 270 ms after the wake: past Hold, but a probe is due (the last was
	// 300 ms ago); 60 ms later the gate is shut again.
	if !g.allow() {
		t.Fatal("no probe 300 ms after the last")
	}
	now = now.Add(60 * time.Millisecond)
	if g.allow() {
		t.Fatal("open 330 ms after a wake (Hold 200 ms) and 60 ms after a probe")
	}
	if !isDequeue(dequeueCmd("payments")) {
		t.Fatal("asynq's dequeue not recognised")
	}
	for _, c := range []*redis.Cmd{
		redis.NewCmd(context.Background(), "evalsha", "0123abcd", 1, "payrail:fair:mer_1", 1, 2, 3),
		redis.NewCmd(context.Background(), "get", "asynq:{payments}:pending"),
		redis.NewCmd(context.Background(), "evalsha", "0123abcd", 4, "a:pending", "a:paused", "a:active", "a:lease", 1, "x"),
	} {
		if isDequeue(c) {
			t.Fatalf("%v taken for a dequeue", c.Args())
		}
	}
}

// A real asynq server behind the gate: idle, it asks Redis only for the
// probes; a task enqueued with a wake runs, and so does one enqueued
// without (its wake lost), through a probe.
func TestIdleGateWithAsynq(t *testing.T) {
	t.Parallel()
	rdb := testredis.New(t).Client
	gate := NewIdleGate(1)
	srvClient := redis.NewClient(rdb.Options())
	defer srvClient.Close()
	srvClient.AddHook(gate.Hook())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gate.Listen(ctx, srvClient, nil)
	var ran atomic.Int64
	srv := asynq.NewServerFromRedisClient(srvClient, asynq.Config{Concurrency: 2, Queues: map[string]int{"gated": 1},
		TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.ErrorLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("gated:task", func(context.Context, *asynq.Task) error { ran.Add(1); return nil })
	must(t, srv.Start(mux))
	defer srv.Shutdown()

	c := NewClient(asynq.NewClientFromRedisClient(rdb))
	c.Wake = func(ctx context.Context) { _ = rdb.Publish(ctx, WakeChannel, "1").Err() }
	// Idle: the dequeue waits in the gate; Redis sees a round or two per
	// Probe (4/s) instead of one per TaskCheckInterval (50/s).
	start := time.Now()
	for gate.Waited.Load() < 12 && time.Since(start) < 10*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	// Ungated, 2 workers polling every 20 ms send 100/s; gated, about 2
	// per probe round (8/s). 30/s leaves room for a loaded machine, where
	// a round stays open longer (make test measured 24/s once).
	if w, p, d := gate.Waited.Load(), gate.Passed.Load(), time.Since(start); w < 12 || float64(p) > 30*d.Seconds()+5 {
		t.Fatalf("idle %s: %d waits, %d polls sent to Redis", d, w, p)
	}
	must(t, c.enqueue(ctx, "gated:task", "gated:1", "gated", map[string]string{}))
	waitRan(t, &ran, 1)
	c.Wake = nil // a lost wake
	must(t, c.enqueue(ctx, "gated:task", "gated:2", "gated", map[string]string{}))
	waitRan(t, &ran, 2)
	// A task due later (a retry's shape) is forwarded by asynq through the
	// gate's once-a-second forwarder round, and runs.
	must(t, c.enqueue(ctx, "gated:task", "gated:3", "gated", map[string]string{}, asynq.ProcessIn(1500*time.Millisecond)))
	waitRan(t, &ran, 3)
	if !isForward(redis.NewCmd(ctx, "evalsha", "ab", 2, "asynq:{gated}:retry", "asynq:{gated}:pending", 1, "p", 2, "g")) {
		t.Fatal("asynq's forwarder not recognised")
	}
}

func waitRan(t *testing.T, ran *atomic.Int64, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ran.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks ran", ran.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A probe lets exactly one round through: a dequeue per queue, within the
// round's window; the forwarder's round is two scripts per queue, once a
// second.
func TestIdleGateRounds(t *testing.T) {
	now := time.Unix(1700000000, 0)
	g := &IdleGate{Hold: 200 * time.Millisecond, Probe: 250 * time.Millisecond, Queues: 3, Now: func() time.Time { return now }}
	for i := range 3 {
		if !g.allow() {
			t.Fatalf("dequeue %d of the probe's round refused", i+1)
		}
	}
	if g.allow() {
		t.Fatal("a fourth dequeue passed a 3-queue round")
	}
	for i := range 6 {
		if !g.allowForward() {
			t.Fatalf("forward %d of the round refused", i+1)
		}
	}
	if g.allowForward() {
		t.Fatal("a seventh forward passed")
	}
	now = now.Add(time.Second)
	if !g.allowForward() {
		t.Fatal("no forwarder round a second later")
	}
}
