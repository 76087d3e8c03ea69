package queue

import (
	"context"
	"errors"
	"fmt"
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

// round plays one asynq dequeue round over queues (stopping at the first
// that yields a task, as asynq does) against the gate's decisions; found
// names the queues holding a task. It returns what each dequeue was.
func round(t *testing.T, g *IdleGate, queues []string, found map[string]bool) []gate {
	t.Helper()
	var got []gate
	for _, q := range queues {
		d := g.decide(q)
		got = append(got, d)
		if d == hold {
			return got
		}
		g.answered(q, d == pass, d == pass && found[q], nil)
		if d == pass && found[q] {
			return got
		}
	}
	return got
}

// The gate's decisions on a fake clock: a probe round asks every queue,
// then the next round waits; a wake for a queue asks that queue and answers
// the others "empty" without Redis, once per task enqueued; an empty answer
// clears a queue's credits; a wake naming no queue asks every queue; only
// asynq's dequeue and forward scripts are recognised.
func TestIdleGateDecisions(t *testing.T) {
	now := time.Unix(1700000000, 0)
	g := &IdleGate{Hold: 200 * time.Millisecond, Probe: 250 * time.Millisecond, Queues: 3, Now: func() time.Time { return now }}
	abc := []string{"a", "b", "c"}
	eq := func(what string, got []gate, want ...gate) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: %v, want %v (pass=%d skip=%d hold=%d)", what, got, want, pass, skip, hold)
		}
	}
	eq("first round (a probe)", round(t, g, abc, nil), pass, pass, pass)
	eq("idle", round(t, g, abc, nil), hold)
	g.WakeQueue("b")
	eq("a task in b", round(t, g, abc, map[string]bool{"b": true}), skip, pass)
	eq("b's one task taken", round(t, g, abc, nil), hold)
	g.WakeQueue("c")
	g.WakeQueue("c")
	for i := range 2 {
		eq(fmt.Sprint("task ", i+1, " of 2 in c"), round(t, g, abc, map[string]bool{"c": true}), skip, skip, pass)
	}
	eq("c drained", round(t, g, abc, nil), hold)
	g.WakeQueue("a")
	g.WakeQueue("a")
	eq("a's tasks taken by another worker", round(t, g, abc, nil), pass, skip, skip)
	eq("a's credits cleared", round(t, g, abc, nil), hold)
	now = now.Add(250 * time.Millisecond)
	eq("a probe", round(t, g, abc, nil), pass, pass, pass)
	now = now.Add(250 * time.Millisecond)
	eq("a probe finds a task no wake announced", round(t, g, abc, map[string]bool{"b": true}), pass, pass)
	eq("so the next round asks every queue", round(t, g, abc, nil), pass, pass, pass)
	eq("until one finds nothing", round(t, g, abc, nil), hold)
	g.Wake()
	eq("a wake naming no queue", round(t, g, abc, nil), pass, pass, pass)
	eq("after it", round(t, g, abc, nil), hold)
	// An error asks every queue next round.
	g.WakeQueue("a")
	if g.decide("a") != pass {
		t.Fatal("credited queue not asked")
	}
	g.answered("a", true, false, errors.New("LOADING"))
	eq("after an error", round(t, g, abc, nil), pass, pass, pass)

	if q, ok := dequeueQueue(dequeueCmd("payments")); !ok || q != "payments" {
		t.Fatalf("asynq's dequeue not recognised: %q %v", q, ok)
	}
	if q, ok := forwardQueue(redis.NewCmd(context.Background(), "evalsha", "ab", 2, "asynq:{gated}:retry", "asynq:{gated}:pending", 1, "p", 2, "g")); !ok || q != "gated" {
		t.Fatalf("asynq's forwarder not recognised: %q %v", q, ok)
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
// without (its wake lost), through a probe. With Redis set (as the worker
// runs it), the same, and idle it sends none of asynq's scripts at all:
// each probe and forwarder round is one pipelined look.
func TestIdleGateWithAsynq(t *testing.T) {
	t.Parallel()
	// One after the other: wakes go to every subscriber (PUBLISH ignores
	// the database), so one's enqueues would credit the other's gate.
	t.Run("scripts", func(t *testing.T) { idleGateWithAsynq(t, false) })
	t.Run("look", func(t *testing.T) { idleGateWithAsynq(t, true) })
}

// scriptCount counts the asynq scripts that reach Redis.
type scriptCount struct{ dequeues, forwards atomic.Int64 }

func (s *scriptCount) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *scriptCount) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isDequeue(cmd) {
			s.dequeues.Add(1)
		} else if isForward(cmd) {
			s.forwards.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (s *scriptCount) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func idleGateWithAsynq(t *testing.T, look bool) {
	rdb := testredis.New(t).Client
	gate := NewIdleGate("gated", "other")
	srvClient := redis.NewClient(rdb.Options())
	defer srvClient.Close()
	srvClient.AddHook(gate.Hook())
	var sent scriptCount
	srvClient.AddHook(&sent) // inside the gate's: what reaches Redis
	if look {
		gate.Redis = srvClient
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gate.Listen(ctx, srvClient, nil)
	var ran atomic.Int64
	srv := asynq.NewServerFromRedisClient(srvClient, asynq.Config{Concurrency: 2, Queues: map[string]int{"gated": 1, "other": 1}, DelayedTaskCheckInterval: 250 * time.Millisecond,
		TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.ErrorLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("gated:task", func(context.Context, *asynq.Task) error { ran.Add(1); return nil })
	must(t, srv.Start(mux))
	defer srv.Shutdown()

	c := NewClient(asynq.NewClientFromRedisClient(rdb))
	c.Wake = func(ctx context.Context, q string) { _ = rdb.Publish(ctx, WakeChannel, q).Err() }
	// Idle: the dequeue waits in the gate; Redis sees one round (a script
	// per queue) per Probe instead of one per TaskCheckInterval (50/s).
	start := time.Now()
	for gate.Waited.Load() < 4 && time.Since(start) < 10*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("idle %s: %d waits, %d polls", time.Since(start), gate.Waited.Load(), gate.Passed.Load())
	// Ungated, polling 2 queues every 20 ms sends 100/s; gated, 2 per
	// second's probe. 10/s leaves room for a loaded machine.
	if w, p, d := gate.Waited.Load(), gate.Passed.Load(), time.Since(start); w < 4 || float64(p) > 10*d.Seconds()+4 {
		t.Fatalf("idle %s: %d waits, %d polls sent to Redis, %d skipped", d, w, p, gate.Skipped.Load())
	}
	if look {
		// Wait for a forwarder round too (asynq's first is 5 s after start
		// at its default interval), then nothing was sent but looks.
		for sent.forwards.Load() == 0 && gate.LookedDue.Load() < 2 && time.Since(start) < 20*time.Second {
			time.Sleep(10 * time.Millisecond)
		}
		if dq, fw, l := sent.dequeues.Load(), sent.forwards.Load(), gate.Looked.Load(); dq != 0 || fw != 0 || l < 3 || gate.LookedDue.Load() < 1 {
			t.Fatalf("idle with looks: %d dequeue and %d forward scripts sent, %d probe looks, %d forwarder looks; want 0, 0, ≥ 3, ≥ 1", dq, fw, l, gate.LookedDue.Load())
		}
	} else if sent.dequeues.Load() == 0 {
		t.Fatal("idle without looks: no probe sent a dequeue script")
	}
	must(t, c.enqueue(ctx, "gated:task", "gated:1", "gated", map[string]string{}))
	waitRan(t, &ran, 1)
	c.Wake = nil // a lost wake
	must(t, c.enqueue(ctx, "gated:task", "gated:2", "gated", map[string]string{}))
	waitRan(t, &ran, 2)
	// A backlog no wake announced (enqueued while the worker was away, or
	// before a failover) drains at full speed once a probe finds it, not one
	// task per probe.
	const backlog = 60
	for i := range backlog {
		must(t, c.enqueue(ctx, "gated:task", fmt.Sprint("gated:b", i), "gated", map[string]string{}))
	}
	drainStart := time.Now()
	waitRan(t, &ran, 2+backlog)
	if d := time.Since(drainStart); d > time.Duration(backlog/4)*gate.Probe {
		t.Fatalf("a backlog of %d unannounced tasks took %s: drained by probes alone", backlog, d)
	}
	c.Wake = func(ctx context.Context, q string) { _ = rdb.Publish(ctx, WakeChannel, q).Err() }
	// A task due later (a retry's shape) is forwarded by asynq through the
	// gate's once-a-second forwarder round, and runs.
	must(t, c.enqueue(ctx, "gated:task", "gated:3", "gated", map[string]string{}, asynq.ProcessIn(1500*time.Millisecond)))
	waitRan(t, &ran, 3+backlog)
	// Busy with one queue, the other is answered "empty" by the gate, and
	// a task in it still runs at its wake.
	if gate.Skipped.Load() == 0 {
		t.Fatal("no dequeue of the queue without work was answered by the gate")
	}
	must(t, c.enqueue(ctx, "gated:task", "other:1", "other", map[string]string{}))
	waitRan(t, &ran, 4+backlog)
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

// A wake for a queue this worker does not serve (another deployment on the
// same Redis: PUBLISH ignores the database) gives no credit, so the gate
// still waits instead of answering "empty" forever.
func TestIdleGateIgnoresQueuesItDoesNotServe(t *testing.T) {
	now := time.Unix(1700000000, 0)
	g := NewIdleGate("a", "b")
	g.Now = func() time.Time { return now }
	round(t, g, []string{"a", "b"}, nil) // the first probe
	g.WakeQueue("payments")
	if got := round(t, g, []string{"a", "b"}, nil); len(got) != 1 || got[0] != hold {
		t.Fatalf("after a wake for a queue not served: %v, want to wait", got)
	}
}

// The forwarder's round is two scripts per queue, once a second while
// shut, and at its own interval for Hold after a wake.
func TestIdleGateForwarderRounds(t *testing.T) {
	now := time.Unix(1700000000, 0)
	g := &IdleGate{Hold: 200 * time.Millisecond, Probe: 250 * time.Millisecond, Queues: 3, Now: func() time.Time { return now }}
	for i := range 6 {
		if !g.allowForward(context.Background(), "asynq:{a}:retry") {
			t.Fatalf("forward %d of the round refused", i+1)
		}
	}
	if g.allowForward(context.Background(), "asynq:{a}:retry") {
		t.Fatal("a seventh forward passed")
	}
	now = now.Add(time.Second)
	if !g.allowForward(context.Background(), "asynq:{a}:retry") {
		t.Fatal("no forwarder round a second later")
	}
	now = now.Add(300 * time.Millisecond)
	g.WakeQueue("a")
	for i := range 10 {
		if !g.allowForward(context.Background(), "asynq:{a}:retry") {
			t.Fatalf("forward %d refused within Hold of a wake", i+1)
		}
	}
}

// A forwarder ticking every second (PAYRAIL_DELAYED_CHECK_INTERVAL=1s)
// gets every round through a shut gate even when its ticks come a little
// early; twice a second still does not.
func TestIdleGateForwarderTicksEverySecond(t *testing.T) {
	now := time.Unix(1700000000, 0)
	g := &IdleGate{Hold: 200 * time.Millisecond, Probe: time.Second, Queues: 3, Now: func() time.Time { return now }}
	for tick := range 5 {
		for i := range 6 { // two scripts per queue
			if !g.allowForward(context.Background(), "asynq:{a}:retry") {
				t.Fatalf("tick %d: forward %d of the round refused", tick, i+1)
			}
		}
		now = now.Add(time.Second - 5*time.Millisecond)
	}
	now = now.Add(-time.Second + 5*time.Millisecond + 500*time.Millisecond) // half a second after the last round
	if g.allowForward(context.Background(), "asynq:{a}:retry") {
		t.Fatal("a second round within half a second passed")
	}
}

// A forwarder tick between rounds waits in the gate for the next round,
// taken with the waiting dequeue's probe when that comes within a second
// of it, and a wake lets it through at once.
func TestIdleGateForwarderWaitsForItsRound(t *testing.T) {
	now := time.Unix(1700000000, 0)
	g := &IdleGate{Hold: 200 * time.Millisecond, Probe: time.Second, Queues: 1, Now: func() time.Time { return now }}
	ctx := context.Background()
	for i := range 2 { // a round: two scripts for the one queue
		if !g.allowForward(ctx, "asynq:{a}:retry") {
			t.Fatalf("forward %d of the first round refused", i+1)
		}
	}
	if at, want := g.forwardAt(), now.Add(time.Second-forwardSlack); !at.Equal(want) {
		t.Fatalf("next round at %s, want %s", at, want)
	}
	g.nextProbe = now.Add(time.Second)
	if at, want := g.forwardAt(), now.Add(time.Second); !at.Equal(want) {
		t.Fatalf("with a probe due 100 ms after the round: at %s, want the probe's %s", at, want)
	}
	g.nextProbe = now.Add(5 * time.Second)
	if at, want := g.forwardAt(), now.Add(time.Second-forwardSlack); !at.Equal(want) {
		t.Fatalf("with a probe 4 s after the round: at %s, want the round's %s", at, want)
	}
	// The clock stands still, so a script released by its timer would
	// find no round and be refused; one released by a wake passes (Hold).
	// The round is put far off so the timer cannot win on a slow machine.
	g.nextForward = now.Add(time.Minute)
	got := make(chan bool, 1)
	go func() { got <- g.allowForward(ctx, "asynq:{a}:retry") }()
	waitForwardWaits(t, g, 1)
	g.WakeQueue("a")
	if !<-got {
		t.Fatal("a wake did not let the waiting forwarder script through")
	}
}

func waitForwardWaits(t *testing.T, g *IdleGate, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.ForwardWaits.Load() < n {
		if time.Now().After(deadline) {
			t.Fatal("the forwarder script between rounds did not wait")
		}
		time.Sleep(time.Millisecond)
	}
}

// A forwarder script the gate held goes to Redis with the time it was
// released at, not the time asynq built it at (its script moves what is
// due by that time), and Close releases what waits in the gate so a
// shutting-down asynq is not held for a round.
func TestIdleGateHeldForwardIsSentFreshAndCloseReleases(t *testing.T) {
	var clock atomic.Int64
	t0 := time.Unix(1700000000, 0)
	clock.Store(t0.UnixNano())
	g := &IdleGate{Hold: 200 * time.Millisecond, Probe: time.Second, Queues: 1, Now: func() time.Time { return time.Unix(0, clock.Load()) }}
	ctx := context.Background()
	for range 2 {
		if !g.allowForward(ctx, "asynq:{a}:retry") {
			t.Fatal("the first round refused")
		}
	}
	g.mu.Lock()
	g.nextForward = t0.Add(time.Minute) // only a wake or Close ends the wait
	g.mu.Unlock()
	var sent []any
	hook := g.Hook().ProcessHook(func(_ context.Context, cmd redis.Cmder) error {
		sent = cmd.Args()
		cmd.(*redis.Cmd).SetVal(int64(0))
		return nil
	})
	forward := redis.NewCmd(ctx, "evalsha", "sha", 2, "asynq:{a}:retry", "asynq:{a}:pending", t0.Unix(), "asynq:{a}:t:", t0.UnixNano(), "asynq:{a}:g:")
	done := make(chan error, 1)
	go func() { done <- hook(ctx, forward) }()
	waitForwardWaits(t, g, 1)
	released := t0.Add(3 * time.Second)
	clock.Store(released.UnixNano())
	g.WakeQueue("a")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sent == nil {
		t.Fatal("the held forward script was not sent after the wake")
	}
	if sent[5] != released.Unix() || sent[7] != released.UnixNano() {
		t.Fatalf("held forward sent with now = %v / %v, want the release time %d / %d", sent[5], sent[7], released.Unix(), released.UnixNano())
	}

	// Close: a forwarder script and a dequeue waiting in the gate return.
	clock.Store(released.Add(time.Second).UnixNano()) // past Hold: shut again
	g.mu.Lock()
	g.nextForward, g.nextProbe = released.Add(time.Minute), released.Add(time.Minute)
	g.mu.Unlock()
	fwd := make(chan bool, 1)
	go func() { fwd <- g.allowForward(ctx, "asynq:{a}:retry") }()
	waitForwardWaits(t, g, 2)
	deq := make(chan struct{})
	go func() { g.wait(ctx); close(deq) }()
	g.Close()
	select { // they wait a minute otherwise
	case passed := <-fwd:
		if passed {
			t.Fatal("a forwarder script released by Close passed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release the waiting forwarder script")
	}
	select {
	case <-deq:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release the waiting dequeue")
	}
	g.Close() // twice is fine
}

// Found by a second read: a wake that arrives while Redis is answering
// "empty" for its queue keeps its credit (its task may have been pushed
// after the script looked), and the gate's count of a round heals when it
// went astray (a queue asked twice starts a new round; NOSCRIPT, whose
// script go-redis sends again at once, does not count).
func TestIdleGateLateWakesAndRounds(t *testing.T) {
	now := time.Unix(1700000000, 0)
	g := NewIdleGate("a", "b", "c")
	g.Now = func() time.Time { return now }
	abc := []string{"a", "b", "c"}
	round(t, g, abc, nil) // the first probe
	g.WakeQueue("a")
	if g.decide("a") != pass {
		t.Fatal("credited queue not asked")
	}
	g.WakeQueue("a") // pushed after the script looked
	g.answered("a", true, false, nil)
	if got := g.decide("b"); got != skip {
		t.Fatalf("the late wake's credit was lost: b got %v, want skip (a still has work)", got)
	}
	g.answered("b", false, false, nil)
	g.answered("c", false, false, nil)
	if got := round(t, g, abc, map[string]bool{"a": true}); len(got) != 1 || got[0] != pass {
		t.Fatalf("next round %v, want a asked at once", got)
	}

	g.WakeQueue("b")
	if g.decide("b") != pass {
		t.Fatal("credited queue not asked")
	}
	g.answered("b", true, false, errors.New("NOSCRIPT No matching script"))
	if g.decide("b") != pass { // the EVAL go-redis sends next
		t.Fatal("the script's retry after NOSCRIPT not asked")
	}
	g.answered("b", true, true, nil)
	// Off by one on purpose: a round that saw only c, then c again.
	if g.decide("c") != hold {
		t.Fatal("idle gate did not wait")
	}
	g.WakeQueue("c")
	if g.decide("c") != pass {
		t.Fatal("credited c not asked")
	}
	g.answered("c", true, false, nil)
	g.WakeQueue("a")
	if got := g.decide("c"); got != hold && got != skip {
		t.Fatalf("c asked again in what must be a new round: %v", got)
	}
	if g.round != 0 {
		t.Fatalf("a queue asked twice did not start a new round (round %d)", g.round)
	}
}

// A look that cannot reach Redis hides nothing: the probe's round asks
// every queue with asynq's scripts, and every forwarder script passes.
func TestIdleGateFailedLookAsksEverything(t *testing.T) {
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	now := time.Unix(1700000000, 0)
	g := NewIdleGate("a", "b")
	g.Now = func() time.Time { return now }
	g.Redis = dead
	ctx := context.Background()
	g.look(ctx)
	if got := round(t, g, []string{"a", "b"}, nil); len(got) != 2 || got[0] != pass || got[1] != pass {
		t.Fatalf("after a failed look: %v, want both queues asked", got)
	}
	if g.Looked.Load() != 0 {
		t.Fatal("a failed look counted as made")
	}
	var pipes pipelines
	dead.AddHook(&pipes)
	for _, set := range []string{"asynq:{a}:retry", "asynq:{a}:scheduled", "asynq:{b}:retry", "asynq:{b}:scheduled"} {
		if !g.allowForward(ctx, set) {
			t.Fatalf("forwarder script on %s held back after a failed look", set)
		}
	}
	// One failed look answers the round: its other scripts do not each
	// wait for another (against a hung Redis, a timeout each).
	if n := pipes.n.Load(); n != 1 {
		t.Fatalf("%d looks for one forwarder round against a dead Redis, want 1", n)
	}
}

// pipelines counts the pipelines a client sends.
type pipelines struct{ n atomic.Int64 }

func (p *pipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (p *pipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (p *pipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		p.n.Add(1)
		return next(ctx, cmds)
	}
}
