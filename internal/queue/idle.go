package queue

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// WakeChannel is the Redis pub/sub channel every enqueue publishes on, with
// the task's queue as the message, so idle workers look at that queue at
// once (IdleGate).
const WakeChannel = "payrail:wake"

// IdleGate keeps a worker from asking Redis about queues that cannot hold
// a task for it (issue 19: "idle is idle", and ≤ 40 Redis commands per
// payment). asynq has no blocking dequeue: each round its processor runs
// its dequeue script on every queue, in a weighted random order, until one
// yields a task, and after a round that found nothing it tries again every
// TaskCheckInterval (20 ms here, for latency). Idle, that kept a worker at
// 4 % of a core and Redis at 1.5 %; busy, the empty queues of every round
// cost three Redis commands each (18 of the 80 commands of a payment). The
// gate, a go-redis hook on the worker's client, answers for those queues:
//
//   - every enqueue publishes its queue on WakeChannel, and a wake gives
//     that queue a credit; a queue with credits is asked, a task found
//     takes one, an empty answer clears them (another worker took it);
//   - a queue without credits is answered "empty" without a Redis round
//     trip while another queue has some, and when none has, the round's
//     first dequeue waits in the hook until a wake or the next probe;
//   - every Probe, and after a wake that names no queue (a forwarder move,
//     an error), one round asks Redis of every queue: for tasks whose wake
//     was lost (a pub/sub reconnect), moved back by asynq's recoverer, or
//     forwarded by another worker.
//
// asynq's forwarder (retries and scheduled tasks becoming due, every
// DelayedTaskCheckInterval on every queue) is gated too: it runs at its
// interval for Hold after a wake, else once a second (its script compares
// whole unix seconds, so nothing becomes due more often than that). A task
// it moves credits its queue. Its ticks between rounds wait in the hook for
// the next round (with the next probe when that comes less than a second
// later) or a wake: every tick wakes the process, and an idle worker woke
// four times a second for a forwarder that did nothing at three of them
// (0.45–0.60 % of a core before, 0.31–0.40 % waiting; docs/bench.md). A
// held script is sent with the time it is released at, so a task due by
// then moves.
//
// A second, not less: an idle worker's probes are most of what it costs
// (5 dequeue scripts a round; at 4 rounds a second they were a quarter of
// its idle CPU), and a task without a wake is rare: a lost wake, a task
// asynq's recoverer moved back, or a retry another worker's forwarder
// moved while that worker was busy.
//
// So no task waits longer than Probe for a worker that missed its wake, and
// with a wake none waits longer than before. Close releases what waits in
// the gate, so a shutting-down asynq is not held a round. Only asynq's
// dequeue and forward scripts (recognised by their keys) are touched; a
// future asynq whose scripts differ is simply never gated.
type IdleGate struct {
	Hold, Probe time.Duration
	// Queues is how many queues the worker serves: a round is one dequeue
	// per queue (fewer when one yields a task).
	Queues int
	Now    func() time.Time
	// Redis, when set, lets a probe and a forwarder round look first, with
	// one pipeline each (LLEN of every pending list; ZCOUNT of every retry
	// and scheduled set up to now), and send asynq's scripts only for the
	// queues and sets holding something: idle, two round trips and 15
	// commands a second instead of 15 scripts and 35 commands. Without it
	// (or for a gate serving any queue) every probe and forwarder round
	// asks with asynq's own scripts.
	Redis redis.UniversalClient
	// serves names the queues: a wake for another (a worker with other
	// queues, another deployment on the same Redis: PUBLISH ignores the
	// database) would otherwise hold a credit no dequeue of ours clears,
	// and the gate would never wait again. nil: any.
	serves map[string]bool

	mu          sync.Mutex
	openUntil   time.Time
	nextProbe   time.Time
	credits     map[string]int64
	wakes       map[string]int64 // credits ever given, per queue
	asked       int64            // wakes[queue] when the dequeue in flight was let through
	inRound     map[string]bool  // the queues the current round has asked about
	round       int              // dequeues seen in the current round
	sweep       bool             // the current round asks every queue
	all         bool             // the next round asks every queue
	nextForward time.Time
	forwardLeft int
	forwardOpen time.Time
	due         map[string]bool // retry and scheduled sets with a task due, as of dueAt
	dueAt       time.Time
	// Passed counts dequeue scripts sent to Redis, Skipped those answered
	// "empty" for a queue with no credit, Waited the rounds held back until
	// a wake or a probe.
	Passed, Skipped, Waited atomic.Int64
	// Looked counts probes made as one pipeline, LookedDue forwarder
	// rounds' looks (Redis set).
	Looked, LookedDue atomic.Int64
	// ForwardWaits counts forwarder scripts held for their round.
	ForwardWaits atomic.Int64
	wake         chan struct{}
	once         sync.Once
	// fwake releases a forwarder script waiting for its round (its own
	// channel: a wake the forwarder took would leave a waiting dequeue
	// asleep until its probe).
	fwake chan struct{}
	fonce sync.Once
	// stop, closed by Close, ends every wait in the gate.
	stop      chan struct{}
	stopOnce  sync.Once
	closeOnce sync.Once
}

func (g *IdleGate) stopCh() chan struct{} {
	g.stopOnce.Do(func() { g.stop = make(chan struct{}) })
	return g.stop
}

// Close releases the dequeue and forwarder scripts waiting in the gate and
// keeps later ones from waiting: call it before asynq's Shutdown, whose
// forwarder and processor stop only between scripts (asynq passes them no
// context to cancel).
func (g *IdleGate) Close() {
	g.closeOnce.Do(func() { close(g.stopCh()) })
}

// NewIdleGate returns a gate for a worker serving queues, with the
// defaults: the forwarder at its interval 200 ms after a wake, a probe
// round every second.
func NewIdleGate(queues ...string) *IdleGate {
	serves := map[string]bool{}
	for _, q := range queues {
		serves[q] = true
	}
	return &IdleGate{Hold: 200 * time.Millisecond, Probe: time.Second, Queues: len(queues), serves: serves}
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

// maxCredit bounds one queue's credits (a burst of enqueues while every
// slot was busy); more than a round's worth only ever asks Redis again.
const maxCredit = 1 << 20

// WakeQueue says a task was enqueued in queue: it is asked next, and a
// dequeue waiting in the gate is released.
func (g *IdleGate) WakeQueue(queue string) { g.credit(queue, 1) }

func (g *IdleGate) credit(queue string, n int64) {
	if g.serves != nil && !g.serves[queue] {
		return
	}
	g.mu.Lock()
	if g.credits == nil {
		g.credits = map[string]int64{}
	}
	if _, ok := g.credits[queue]; ok || len(g.credits) < 64 { // a queue name from the wire: bounded
		g.credits[queue] = min(g.credits[queue]+n, maxCredit)
		if g.wakes == nil {
			g.wakes = map[string]int64{}
		}
		g.wakes[queue] += n
	}
	g.openFor()
	g.mu.Unlock()
	g.signal()
}

// Wake says tasks may be waiting in any queue: the next round asks every
// queue, and a dequeue waiting in the gate is released.
func (g *IdleGate) Wake() {
	g.mu.Lock()
	g.all = true
	if g.round > 0 {
		g.sweep = true // the rest of this round too
	}
	g.openFor()
	g.mu.Unlock()
	g.signal()
}

// openFor lets the forwarder run at its interval for Hold (g.mu held).
func (g *IdleGate) openFor() {
	if t := g.now().Add(g.Hold); t.After(g.openUntil) {
		g.openUntil = t
	}
}

func (g *IdleGate) signal() {
	select {
	case g.wakeCh() <- struct{}{}:
	default:
	}
	select {
	case g.fwakeCh() <- struct{}{}:
	default:
	}
}

func (g *IdleGate) fwakeCh() chan struct{} {
	g.fonce.Do(func() { g.fwake = make(chan struct{}, 1) })
	return g.fwake
}

// gate is the decision on one dequeue of queue.
type gate int

const (
	pass gate = iota // ask Redis
	skip             // answer "empty" without asking
	hold             // wait for a wake or a probe, then decide again
)

// decide decides one dequeue of queue. first is whether it opens a round.
func (g *IdleGate) decide(queue string) gate {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if g.inRound[queue] {
		// asynq asks each queue once a round: this is a new one (the count
		// went astray, e.g. a script retried after NOSCRIPT).
		g.endRound()
	}
	if g.round == 0 && g.all {
		g.all, g.sweep = false, true
	}
	switch {
	case g.sweep || g.credits[queue] > 0:
		g.asked = g.wakes[queue]
		return pass
	case !now.Before(g.nextProbe):
		g.nextProbe, g.sweep = now.Add(g.Probe), true
		g.asked = g.wakes[queue]
		return pass
	case g.round > 0:
		return skip // mid-round: the round's first dequeue already waited
	}
	for _, n := range g.credits {
		if n > 0 {
			return skip // another queue has work: asynq asks it in this round
		}
	}
	return hold
}

// wait holds a round's first dequeue until a wake or the next probe.
func (g *IdleGate) wait(ctx context.Context) {
	g.mu.Lock()
	d := g.nextProbe.Sub(g.now())
	g.mu.Unlock()
	if d <= 0 {
		return
	}
	g.sleep(ctx, d, g.wakeCh())
}

// sleep waits d, or until wake, ctx or Close.
func (g *IdleGate) sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-ctx.Done():
	case <-g.stopCh():
	}
}

// answered records what one dequeue of queue got (found a task, or err);
// asked is whether Redis was asked. A round ends with a task, an error or
// one dequeue per queue.
func (g *IdleGate) answered(queue string, asked, found bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		return // go-redis sends the script itself next, for the same queue
	}
	switch {
	case found:
		if g.credits[queue] > 0 {
			g.credits[queue]--
		} else {
			// A task no wake announced (a probe found it): a backlog left
			// by a restart or a failover drains at full speed, not one
			// task per probe.
			g.all = true
		}
	case err != nil:
		g.all = true // do not hide the queues behind an error
	case asked:
		// Empty: another worker took what it was woken for. A wake that
		// came while Redis was answering is for a task it may not have
		// seen, and keeps its credit.
		if late := g.wakes[queue] - g.asked; late > 0 {
			g.credits[queue] = min(g.credits[queue], late)
		} else {
			delete(g.credits, queue)
		}
	}
	if g.inRound == nil {
		g.inRound = map[string]bool{}
	}
	g.inRound[queue] = true
	if g.round++; found || err != nil || g.round >= max(1, g.Queues) {
		g.endRound()
	}
}

func (g *IdleGate) endRound() {
	g.round, g.sweep = 0, false
	clear(g.inRound)
}

// forwardWindow bounds how long a forwarder round (two scripts per queue,
// each a Redis round trip) may take to pass; one cut short waits a second.
// A second: on a slow link a shorter window cut off the same last queues
// every time.
const forwardWindow = time.Second

// forwardSlack is how much earlier than a second after the last one a
// shut gate's forwarder round may come.
const forwardSlack = 100 * time.Millisecond

// allowForward decides one forwarder script on set (a retry or scheduled
// set): once a second while shut, at asynq's interval for Hold after a
// wake; and with Redis set, only for a set the round's look found a task
// due in. A script that comes between rounds waits for the next one
// (waitForward).
func (g *IdleGate) allowForward(ctx context.Context, set string) bool {
	round := g.forwardRound()
	if !round {
		g.waitForward(ctx)
		round = g.forwardRound()
	}
	return round && g.isDue(ctx, set)
}

// forwardAt is when a forwarder script refused now may pass: the next
// round, or the waiting dequeue's next probe if that comes later by less
// than a second, so the two wake the process together (g.mu held).
func (g *IdleGate) forwardAt() time.Time {
	at := g.nextForward
	if g.nextProbe.After(at) && g.nextProbe.Sub(at) < time.Second {
		at = g.nextProbe
	}
	return at
}

// waitForward holds a forwarder script the gate refused until its round
// (forwardAt), a wake or Close. asynq's
// forwarder ticks at its interval whether or not the gate lets it
// through, and every tick wakes the process: held here, an idle worker's
// forwarder wakes about once a second, with the probe, while a busy one (a
// wake within Hold) still runs at asynq's interval.
func (g *IdleGate) waitForward(ctx context.Context) {
	// A token left by a wake before this script is stale (that wake's
	// Hold is in openUntil, checked below under the lock); one that comes
	// after the check is in the channel when the select looks.
	select {
	case <-g.fwakeCh():
	default:
	}
	g.mu.Lock()
	now := g.now()
	d, open := g.forwardAt().Sub(now), now.Before(g.openUntil)
	g.mu.Unlock()
	if d <= 0 || open {
		return
	}
	g.ForwardWaits.Add(1)
	g.sleep(ctx, d, g.fwakeCh())
}

// forwardRound is whether the forwarder runs now: once a second while shut.
func (g *IdleGate) forwardRound() bool {
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
		// Less than a second: a forwarder ticking every second
		// (PAYRAIL_DELAYED_CHECK_INTERVAL=1s) whose tick comes a hair
		// early would otherwise lose every other round.
		g.nextForward = now.Add(time.Second - forwardSlack)
		g.forwardLeft, g.forwardOpen = 2*max(1, g.Queues)-1, now.Add(forwardWindow)
		return true
	}
	return false
}

// dueFresh is how long one look at the retry and scheduled sets answers
// for: a forwarder round's scripts follow each other within it, and a task
// that becomes due meanwhile is moved by the next round.
const dueFresh = 100 * time.Millisecond

// isDue reports whether set may hold a task due now: one pipelined ZCOUNT
// per served set answers a whole forwarder round. Without Redis, for a set
// the gate does not know, or when the look fails, it says yes.
func (g *IdleGate) isDue(ctx context.Context, set string) bool {
	if g.Redis == nil || len(g.serves) == 0 {
		return true
	}
	g.mu.Lock()
	now := g.now()
	if g.due != nil && !now.Before(g.dueAt) && now.Sub(g.dueAt) < dueFresh {
		due, known := g.due[set]
		g.mu.Unlock()
		return due || !known
	}
	g.mu.Unlock()
	sets := make([]string, 0, 2*len(g.serves))
	for q := range g.serves {
		sets = append(sets, "asynq:{"+q+"}:scheduled", "asynq:{"+q+"}:retry")
	}
	upTo := strconv.FormatInt(now.Unix(), 10) // asynq's forwarder compares whole seconds
	pipe := g.Redis.Pipeline()
	counts := make([]*redis.IntCmd, len(sets))
	for i, k := range sets {
		counts[i] = pipe.ZCount(ctx, k, "-inf", upTo)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// Every set passes for this round (an empty map knows no set), and
		// its other scripts do not each wait for another failed look.
		g.mu.Lock()
		g.due, g.dueAt = map[string]bool{}, now
		g.mu.Unlock()
		return true
	}
	g.LookedDue.Add(1)
	due := make(map[string]bool, len(sets))
	for i, k := range sets {
		due[k] = counts[i].Val() > 0
	}
	g.mu.Lock()
	g.due, g.dueAt = due, now
	g.mu.Unlock()
	d, known := due[set]
	return d || !known
}

// look, with Redis set, runs a due probe as one pipeline of LLENs at the
// start of a round: the queues holding tasks get a credit per task, and
// the round asks only them. A failed look asks every queue.
func (g *IdleGate) look(ctx context.Context) {
	if g.Redis == nil || len(g.serves) == 0 {
		return
	}
	g.mu.Lock()
	now := g.now()
	if now.Before(g.nextProbe) || g.round > 0 {
		g.mu.Unlock()
		return
	}
	g.nextProbe = now.Add(g.Probe)
	g.mu.Unlock()
	queues := make([]string, 0, len(g.serves))
	pipe := g.Redis.Pipeline()
	var lens []*redis.IntCmd
	for q := range g.serves {
		queues = append(queues, q)
		lens = append(lens, pipe.LLen(ctx, "asynq:{"+q+"}:pending"))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		g.Wake()
		return
	}
	g.Looked.Add(1)
	for i, q := range queues {
		if n := lens[i].Val(); n > 0 {
			g.credit(q, n)
		}
	}
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
		case m, ok := <-ch:
			if !ok {
				return
			}
			if m.Payload == "" || m.Payload == "1" {
				g.Wake() // an enqueuer that does not name its queue
			} else {
				g.WakeQueue(m.Payload)
			}
		}
	}
}

// freshForwardTime sets the time in asynq's forward script arguments
// (ARGV[1] unix seconds, ARGV[3] unix nanoseconds, set when asynq built the
// command) to now, for every script the gate lets through: one it held
// would otherwise move only what was due before the wait, and so would
// go-redis's EVAL after NOSCRIPT, built again from asynq's arguments.
// Arguments of another shape are left as they are.
func freshForwardTime(cmd redis.Cmder, now time.Time) {
	a := cmd.Args()
	if len(a) < 8 {
		return
	}
	if _, ok := a[5].(int64); !ok {
		return
	}
	if _, ok := a[7].(int64); !ok {
		return
	}
	a[5], a[7] = now.Unix(), now.UnixNano()
}

// isDequeue recognises asynq's dequeue script by its keys.
func isDequeue(cmd redis.Cmder) bool {
	_, ok := dequeueQueue(cmd)
	return ok
}

// dequeueQueue is the queue asynq's dequeue script asks about.
func dequeueQueue(cmd redis.Cmder) (string, bool) {
	if !scriptKeys(cmd, ":pending", ":paused", ":active", ":lease") {
		return "", false
	}
	return queueOfKey(cmd.Args()[3].(string))
}

// isForward recognises asynq's forwarder script (a scheduled or retry set
// into the pending list).
func isForward(cmd redis.Cmder) bool {
	_, ok := forwardQueue(cmd)
	return ok
}

// forwardQueue is the queue asynq's forwarder script moves tasks into.
func forwardQueue(cmd redis.Cmder) (string, bool) {
	if !scriptKeys(cmd, ":scheduled", ":pending") && !scriptKeys(cmd, ":retry", ":pending") {
		return "", false
	}
	return queueOfKey(cmd.Args()[4].(string))
}

// queueOfKey reads the queue out of an asynq key, asynq:{queue}:….
func queueOfKey(k string) (string, bool) {
	rest, ok := strings.CutPrefix(k, "asynq:{")
	if !ok {
		return "", false
	}
	q, _, ok := strings.Cut(rest, "}")
	return q, ok
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
		if q, ok := forwardQueue(cmd); ok {
			c, isCmd := cmd.(*redis.Cmd)
			if isCmd {
				if !h.g.allowForward(ctx, cmd.Args()[3].(string)) {
					c.SetVal(int64(0)) // "nothing became due": checked again within a second
					return nil
				}
				freshForwardTime(cmd, h.g.now())
			}
			err := next(ctx, cmd)
			if isCmd {
				if n, _ := c.Int(); n > 0 {
					h.g.credit(q, int64(n)) // retries or scheduled tasks are pending now
				}
			}
			return err
		}
		q, ok := dequeueQueue(cmd)
		if !ok {
			return next(ctx, cmd)
		}
		h.g.look(ctx)
		d := h.g.decide(q)
		if d == hold {
			h.g.Waited.Add(1)
			h.g.wait(ctx)
			h.g.look(ctx)
			if d = h.g.decide(q); d == hold {
				// Nothing came (a look found the queues empty): "empty",
				// without Redis, so that asynq, which passes no deadline,
				// checks for shutdown at least once a Probe.
				d = skip
			}
		}
		if d == skip {
			h.g.Skipped.Add(1)
			h.g.answered(q, false, false, nil)
			cmd.SetErr(redis.Nil)
			return redis.Nil
		}
		h.g.Passed.Add(1)
		err := next(ctx, cmd)
		nilAnswer := errors.Is(err, redis.Nil)
		if nilAnswer {
			err = nil
		}
		h.g.answered(q, true, err == nil && !nilAnswer, err)
		if nilAnswer {
			return redis.Nil
		}
		return err
	}
}

func (h gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
