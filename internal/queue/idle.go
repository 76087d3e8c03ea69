package queue

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// WakeChannel is the Redis pub/sub channel every enqueue publishes on, so
// idle workers look at their queues at once (IdleGate).
const WakeChannel = "payrail:wake"

// IdleGate keeps an idle worker from polling Redis (issue 19: "idle is
// idle"). asynq has no blocking dequeue: with every queue empty its
// processor runs its dequeue script on every queue each TaskCheckInterval
// (20 ms here, for latency), which kept an idle worker at 4 % of a core
// and Redis at 1.5 %. The gate, a go-redis hook on the worker's client,
// makes that dequeue block instead, while nothing can have arrived — the
// processor's one dequeue loop waits in the hook until a wake or the next
// probe, then asks Redis:
//
//   - it opens for Hold after a wake (an enqueue anywhere, WakeChannel) and
//     after a dequeue that found a task (more may follow);
//   - closed, it still lets one round through every Probe, for tasks whose
//     wake was lost (a pub/sub reconnect) and for retries and scheduled
//     tasks asynq's forwarder has moved into the queue.
//
// asynq's forwarder (retries and scheduled tasks becoming due, every
// DelayedTaskCheckInterval on every queue) is gated the same way, but
// closed it runs once a second: its script compares whole unix seconds,
// so nothing becomes due more often than that. When it moves a task the
// gate opens.
//
// So no task waits longer than Probe for a worker that missed its wake,
// and with a wake none waits longer than before. Only asynq's dequeue
// script (its four keys …:pending, …:paused, …:active, …:lease) is
// touched; a future asynq whose script differs is simply never gated.
type IdleGate struct {
	Hold, Probe time.Duration
	// Queues is how many queues the worker serves: a probe lets one round
	// through (a dequeue per queue, a forward per queue and delayed set).
	Queues int
	Now    func() time.Time

	mu          sync.Mutex
	openUntil   time.Time
	nextProbe   time.Time
	roundLeft   int
	roundUntil  time.Time
	nextForward time.Time
	forwardLeft int
	forwardOpen time.Time
	// Passed counts dequeue scripts sent to Redis, Waited the times the
	// gate held one back until a wake or a probe.
	Passed, Waited atomic.Int64
	wake           chan struct{}
	once           sync.Once
}

// NewIdleGate returns a gate with the defaults: open 200 ms after a wake,
// a probe every 250 ms when closed.
func NewIdleGate(queues int) *IdleGate {
	return &IdleGate{Hold: 200 * time.Millisecond, Probe: 250 * time.Millisecond, Queues: queues}
}

// startRound lets the rest of one round through (g.mu held).
func (g *IdleGate) startRound(now time.Time) {
	g.roundLeft, g.roundUntil = max(1, g.Queues)-1, now.Add(roundWindow)
}

func (g *IdleGate) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

func (g *IdleGate) wakeCh() chan struct{} {
	g.once.Do(func() { g.wake = make(chan struct{}, 1) })
	return g.wake
}

// Wake opens the gate for Hold, and releases a dequeue waiting in it.
func (g *IdleGate) Wake() {
	g.mu.Lock()
	if t := g.now().Add(g.Hold); t.After(g.openUntil) {
		g.openUntil = t
	}
	g.mu.Unlock()
	select {
	case g.wakeCh() <- struct{}{}:
	default:
	}
}

// wait holds a dequeue until a wake or the next probe, then opens the gate
// for the rest of the round.
func (g *IdleGate) wait(ctx context.Context) {
	g.mu.Lock()
	d := g.nextProbe.Sub(g.now())
	g.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-g.wakeCh():
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	g.mu.Lock()
	now := g.now()
	if !now.Before(g.nextProbe) {
		g.nextProbe = now.Add(g.Probe)
	}
	g.startRound(now)
	g.mu.Unlock()
}

// allow reports whether a dequeue may go to Redis now. A probe opens the
// gate briefly so the rest of its round (the other queues) goes too.
func (g *IdleGate) allow() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if now.Before(g.openUntil) {
		return true
	}
	if g.roundLeft > 0 && now.Before(g.roundUntil) {
		g.roundLeft--
		return true
	}
	if !now.Before(g.nextProbe) {
		g.nextProbe = now.Add(g.Probe)
		g.startRound(now)
		return true
	}
	return false
}

// roundWindow and forwardWindow bound how long a probe's round may take to
// pass (a dequeue round is one script per queue, a forwarder round two,
// each a Redis round trip); a round cut short only waits for the next probe
// or wake.
const (
	roundWindow   = 50 * time.Millisecond
	forwardWindow = 200 * time.Millisecond
)

// allowForward is allow for the forwarder: once a second while shut.
func (g *IdleGate) allowForward() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if now.Before(g.openUntil) {
		return true
	}
	if g.forwardLeft > 0 && now.Before(g.forwardOpen) {
		g.forwardLeft--
		return true
	}
	if !now.Before(g.nextForward) {
		g.nextForward = now.Add(time.Second)
		g.forwardLeft, g.forwardOpen = 2*max(1, g.Queues)-1, now.Add(forwardWindow)
		return true
	}
	return false
}

// Listen wakes the gate on every WakeChannel message until ctx ends
// (go-redis resubscribes after a reconnect; a lost wake costs at most one
// Probe).
func (g *IdleGate) Listen(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) {
	sub := rdb.Subscribe(ctx, WakeChannel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil && ctx.Err() == nil && log != nil {
		// Not fatal: every task then waits up to one Probe for this worker.
		log.Warn("idle gate: cannot subscribe to the wake channel; idle workers look every probe instead", "channel", WakeChannel, "probe", g.Probe, "err", err)
	}
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			g.Wake()
		}
	}
}

// isDequeue recognises asynq's dequeue script by its keys.
func isDequeue(cmd redis.Cmder) bool {
	return scriptKeys(cmd, ":pending", ":paused", ":active", ":lease")
}

// isForward recognises asynq's forwarder script (a scheduled or retry set
// into the pending list).
func isForward(cmd redis.Cmder) bool {
	return scriptKeys(cmd, ":scheduled", ":pending") || scriptKeys(cmd, ":retry", ":pending")
}

// scriptKeys reports whether cmd runs a script on exactly these asynq keys
// (by suffix).
func scriptKeys(cmd redis.Cmder, suffixes ...string) bool {
	args := cmd.Args()
	if len(args) < 3+len(suffixes) {
		return false
	}
	if name := strings.ToLower(cmd.Name()); name != "evalsha" && name != "eval" {
		return false
	}
	if n, ok := args[2].(int); !ok || n != len(suffixes) {
		return false
	}
	for i, suffix := range suffixes {
		k, ok := args[3+i].(string)
		if !ok || !strings.HasPrefix(k, "asynq:{") || !strings.HasSuffix(k, suffix) {
			return false
		}
	}
	return true
}

// Hook is the go-redis hook to add to the worker's client.
func (g *IdleGate) Hook() redis.Hook { return gateHook{g} }

type gateHook struct{ g *IdleGate }

func (h gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isForward(cmd) {
			c, ok := cmd.(*redis.Cmd)
			if ok && !h.g.allowForward() {
				c.SetVal(int64(0)) // "nothing became due": checked again within a second
				return nil
			}
			err := next(ctx, cmd)
			if ok {
				if n, _ := c.Int(); n > 0 {
					h.g.Wake() // retries or scheduled tasks are pending now
				}
			}
			return err
		}
		if !isDequeue(cmd) {
			return next(ctx, cmd)
		}
		if !h.g.allow() {
			h.g.Waited.Add(1)
			h.g.wait(ctx) // asynq passes no deadline: shutdown waits at most Probe
		}
		h.g.Passed.Add(1)
		err := next(ctx, cmd)
		if err == nil {
			h.g.Wake() // a task: there may be more
		} else if !errors.Is(err, redis.Nil) {
			h.g.Wake() // an error: do not hide the queues behind it
		}
		return err
	}
}

func (h gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
