package callback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/lock"
	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/store"
)

// Limits of one attempt (DESIGN.md).
const (
	// MaxResponse is how much of an answer is read.
	MaxResponse = 64 << 10
	// MaxRecorded is how much of an answer is kept with the attempt.
	MaxRecorded = 1 << 10
	// DefaultPerMerchant is how many callbacks of one merchant a worker
	// sends at once (PAYRAIL_CALLBACK_CONCURRENCY). 8, not 4: at 4 a
	// single busy merchant's lane delivered 110/s while it was paid 160/s
	// (bench 2026-12-04), and its callbacks fell seconds behind.
	DefaultPerMerchant = 8
	// MaxPerMerchant is the most PAYRAIL_CALLBACK_CONCURRENCY may ask for
	// (and the idle connections kept per endpoint).
	MaxPerMerchant = 16
)

// ErrBusy means the worker's callback capacity is in use. It wraps
// lock.ErrTaken so asynq treats it as the worker treats a taken lock: not a
// failure, retried soon, without spending a retry. It is answered before
// any database read.
var ErrBusy = fmt.Errorf("callback: deliveries at their concurrency limit: %w", lock.ErrTaken)

// Store is the slice of the store the deliverer uses.
type Store interface {
	// StartLaneTurn starts a turn and claims up to limit(lane) due
	// callbacks, in one transaction; store.ErrStaleLane when gen is not
	// the lane's.
	StartLaneTurn(ctx context.Context, merchantID string, gen int64, until time.Time, limit func(store.Lane) int) (store.Lane, []store.CallbackDelivery, error)
	CallbackSecrets(ctx context.Context, merchantID string) ([]string, error)
	// FinishLaneTurn records the attempts and ends the turn in one
	// transaction; recorded[i] is false when that callback had moved on,
	// and err is store.ErrStaleLane (attempts recorded) when gen was
	// superseded.
	FinishLaneTurn(ctx context.Context, outcomes []store.CallbackOutcome, e store.LaneEnd) (recorded []bool, next store.LaneWake, again bool, err error)
	// RecordCallbackAttempts records attempts of a turn still in progress
	// (or cut short), in one transaction.
	RecordCallbackAttempts(ctx context.Context, outcomes []store.CallbackOutcome) (recorded []bool, err error)
	WakeDueLanes(ctx context.Context, lostBefore time.Time, limit int) ([]store.LaneWake, error)
	QueuedLanes(ctx context.Context, queuedBefore, lostBefore time.Time, limit int) ([]store.LaneWake, error)
	// RequeueLane returns ok=false when the lane moved on meanwhile.
	// It is fenced on lane_queued_at < queuedBefore.
	RequeueLane(ctx context.Context, lost store.LaneWake, queuedBefore time.Time) (next store.LaneWake, ok bool, err error)
	ExpireStaleCallbacks(ctx context.Context, olderThan time.Duration, batch int) (int64, error)
	// TouchLane keeps a task-less turn's lane from being taken for lost;
	// false when the lane moved on.
	TouchLane(ctx context.Context, merchantID string, gen int64) (bool, error)
}

// Enqueuer enqueues a lane's turn; a task-ID conflict is success.
type Enqueuer interface {
	CallbackLane(ctx context.Context, merchantID string, gen int64) error
	// LaneTaskLost reports whether Redis holds no task for the lane's
	// generation (a failover or a flush lost it); an error when it cannot tell.
	LaneTaskLost(ctx context.Context, merchantID string, gen int64) (bool, error)
	// LanesWaiting reports whether other lanes' tasks wait for a worker;
	// an error counts as yes.
	LanesWaiting(ctx context.Context) (bool, error)
}

// LaneCheckAfter is how long a lane's task may be out, unheard of, before
// the sweep asks Redis whether it still holds it. Well above the time from
// a wake's commit to its enqueue, well below RequeueAfter.
const LaneCheckAfter = 3 * time.Second

// Deliverer sends callbacks. It is the asynq handler of callback:deliver and
// the sweep's source of due callbacks.
type Deliverer struct {
	Store  Store
	Queue  Enqueuer
	Client *http.Client
	Log    *slog.Logger
	// Schedule is the delay after each failed attempt; after the last, DEAD.
	Schedule []time.Duration
	// Timeout bounds one attempt, answer included.
	Timeout time.Duration
	// PerMerchant bounds one merchant's deliveries in flight (a lane's
	// batch). MaxInFlight bounds all of this worker's sends; a turn takes
	// at most a quarter of them and keeps only what its batch uses, so it
	// takes four hung endpoints with full batches to hold every send (each
	// until its breaker opens, after one turn). MaxTurns bounds the lane
	// turns running at once (each holds an asynq worker slot), so
	// callbacks never take every worker slot from confirms. 0 means
	// DefaultPerMerchant and unbounded.
	PerMerchant, MaxInFlight, MaxTurns int
	// RequeueAfter is how long a lane may go unheard of before the sweep
	// assumes its task lost (Redis flushed, worker killed) and wakes it.
	RequeueAfter time.Duration
	// Breaker is the circuit breaker's policy (zero: DefaultBreakerPolicy).
	Breaker BreakerPolicy
	// Now and Rand (in [0,1)) are the clock and the jitter source.
	Now  func() time.Time
	Rand func() float64
	// Observe, when set, is told of every attempt's outcome and latency.
	Observe func(outcome string, d time.Duration)

	mu           sync.Mutex
	total, turns int
	// refusedAt is when acquire last turned a lane away (see mayStay).
	refusedAt time.Time
	// running counts the turns reserved (Reserve) until they end.
	running sync.WaitGroup
	// stopping is set by Stop.
	stopping bool

	secretsMu sync.Mutex
	secrets   map[string]cachedSecrets
}

// SecretsTTL is how long a worker reuses a merchant's callback secrets
// between lane turns (one read saved per turn): a secret added or revoked
// signs, or stops signing, within this long.
const SecretsTTL = 2 * time.Second

type cachedSecrets struct {
	secrets []string
	until   time.Time
}

func (d *Deliverer) callbackSecrets(ctx context.Context, merchantID string) ([]string, error) {
	now := time.Now()
	d.secretsMu.Lock()
	c, ok := d.secrets[merchantID]
	d.secretsMu.Unlock()
	if ok && now.Before(c.until) {
		return c.secrets, nil
	}
	secrets, err := d.Store.CallbackSecrets(ctx, merchantID)
	if err != nil {
		return nil, err
	}
	d.secretsMu.Lock()
	if d.secrets == nil || len(d.secrets) > 10000 {
		d.secrets = map[string]cachedSecrets{} // bounded: merchants seen within a TTL or two
	}
	d.secrets[merchantID] = cachedSecrets{secrets: secrets, until: now.Add(SecretsTTL)}
	d.secretsMu.Unlock()
	return secrets, nil
}

// Options configure NewDeliverer.
type Options struct {
	Store       Store
	Queue       Enqueuer
	Guard       *Guard
	Log         *slog.Logger
	Schedule    []time.Duration
	Timeout     time.Duration
	MaxInFlight int
	MaxTurns    int
	// PerMerchant is PAYRAIL_CALLBACK_CONCURRENCY (0: DefaultPerMerchant).
	PerMerchant int
}

// NewDeliverer returns a deliverer whose client dials through the guard.
func NewDeliverer(o Options) *Deliverer {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return &Deliverer{
		Store: o.Store, Queue: o.Queue, Client: NewHTTPClient(o.Guard), Log: o.Log,
		Schedule: o.Schedule, Timeout: o.Timeout, MaxInFlight: o.MaxInFlight, MaxTurns: o.MaxTurns, PerMerchant: min(o.PerMerchant, MaxPerMerchant),
		RequeueAfter: 2*o.Timeout + 10*time.Second,
	}
}

// NewHTTPClient returns the client callbacks go out through: every dial is
// vetted by the guard, no proxy (it would dial for us, unvetted), redirects
// are never followed (a 3xx is the answer, and a failure).
func NewHTTPClient(g *Guard) *http.Client {
	if g == nil {
		g = &Guard{}
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            g.DialContext,
			ForceAttemptHTTP2:      true,
			MaxIdleConns:           100,
			MaxIdleConnsPerHost:    MaxPerMerchant,
			IdleConnTimeout:        90 * time.Second,
			TLSHandshakeTimeout:    5 * time.Second,
			ResponseHeaderTimeout:  0, // the attempt's context bounds it
			MaxResponseHeaderBytes: 16 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (d *Deliverer) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Deliverer) log() *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return slog.Default()
}

func (d *Deliverer) requeueAfter() time.Duration {
	if d.RequeueAfter > 0 {
		return d.RequeueAfter
	}
	return 2*d.Timeout + 10*time.Second
}

func (d *Deliverer) perMerchant() int {
	if d.PerMerchant > 0 {
		return d.PerMerchant
	}
	return DefaultPerMerchant
}

// EnqueueDue is the sweep's part: it wakes the lanes that have due work and
// no live task (retries that came due, cool-downs that ended, lane tasks
// Redis lost), and makes DEAD what has waited longer than the schedule.
func (d *Deliverer) EnqueueDue(ctx context.Context) error {
	var errs []error
	if n, err := d.Store.ExpireStaleCallbacks(ctx, d.span(), 1000); err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		d.log().Warn("callbacks dead: not delivered within the retry schedule", "count", n)
	}
	wakes, err := d.Store.WakeDueLanes(ctx, d.now().Add(-d.requeueAfter()), 1000)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, w := range wakes {
		if err := d.Queue.CallbackLane(ctx, w.MerchantID, w.Gen); err != nil {
			errs = append(errs, err)
		}
	}
	if len(wakes) > 0 {
		d.log().Debug("callback lanes woken", "count", len(wakes))
	}
	if err := d.requeueLost(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// requeueLost asks Redis about lanes out longer than LaneCheckAfter: after
// a Sentinel or Cluster failover the new master may lack the last tasks the
// old one took, and waiting RequeueAfter would stall their merchants'
// callbacks for half a minute. One lookup per such lane, at most 100.
func (d *Deliverer) requeueLost(ctx context.Context) error {
	now := d.now()
	out, err := d.Store.QueuedLanes(ctx, now.Add(-LaneCheckAfter), now.Add(-d.requeueAfter()), 100)
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range out {
		lost, err := d.Queue.LaneTaskLost(ctx, l.MerchantID, l.Gen)
		if err != nil || !lost {
			errs = append(errs, err)
			continue
		}
		next, ok, err := d.Store.RequeueLane(ctx, l, now.Add(-LaneCheckAfter))
		if err != nil || !ok {
			errs = append(errs, err)
			continue
		}
		d.log().Warn("callback lane task missing from Redis; enqueued again", "merchant_id", l.MerchantID, "gen", next.Gen)
		errs = append(errs, d.Queue.CallbackLane(ctx, next.MerchantID, next.Gen))
	}
	return errors.Join(errs...)
}

// span is the whole retry schedule: a callback PENDING longer is DEAD.
func (d *Deliverer) span() time.Duration {
	var total time.Duration
	for _, s := range d.Schedule {
		total += s
	}
	return max(total, time.Hour)
}

// ProcessTask runs a merchant's lane (callback:lane): each turn claims up
// to PerMerchant due callbacks (one probe when the breaker's cool-down is
// over), sends them concurrently, records each attempt and moves the
// breaker. The lane then ends, or takes another turn: in this task while
// no other lane waits for a worker (see mayStay), else at the back of the
// queue. A superseded generation does nothing.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	if t.Type() == queue.TypeCallback {
		return nil // a trigger of a release before lanes: the sweep wakes its lane
	}
	var p queue.LanePayload
	if err := queue.Decode(t, &p); err != nil {
		return err
	}
	slots := d.acquire(d.perMerchant())
	if slots == 0 {
		return ErrBusy
	}
	held := slots
	defer func() { d.release(held) }()
	log := d.log().With("merchant_id", p.MerchantID, "lane_gen", p.Gen)
	began := d.now()
	waves := 1
	for {
		stay, fast, err := d.turn(ctx, log, p, slots, waves, &held, began)
		if err != nil || !stay {
			return err
		}
		if fast {
			waves = min(2*waves, MaxWaves)
		} else {
			waves = 1
		}
	}
}

// A staying lane whose last turn was full, delivered everything and heard
// every answer within FastTurn claims twice its last turn's waves of its
// concurrency in its next turn, up to MaxWaves (sent one wave after the
// other, never more at once), so a backlog pays a turn's start and end
// once per several waves: each is a transaction, and on a saturated
// machine the start waits for the merchant's PAID transactions in flight
// (the lane lock). A wave goes only when the ones before it delivered
// everything, each within FastTurn; otherwise the rest's claims are given
// back at the turn's end. The claims of a turn of n waves hold for the
// timeout + 10 s + (n − 1) × FastTurn (a later wave starts only within
// its share of FastTurn of the turn's start).
const (
	FastTurn = time.Second
	MaxWaves = 4
)

// MaxStay bounds how long one lane task keeps taking turns in place: past
// it, the next turn goes to the back of the queue like any other.
const MaxStay = 5 * time.Second

// mayStay decides, before a turn ends, whether the lane's next turn (if it
// has one) runs in this task at the same generation. Re-queueing costs a
// task (~18 Redis commands) and a wait behind confirms at the callbacks
// queue's weight, which is what let a busy merchant's callbacks fall
// seconds behind its payments (issue 19). Round-robin between merchants
// holds: a lane stays only while no other lane's task waits in Redis and
// no turn was refused here for want of capacity in the last second, and
// it leaves a turn and a send free for another lane.
// Staying keeps the task active in Redis under the lane's generation, so
// the sweep's LaneTaskLost still finds it.
// On yes it has taken back the sends the turn gave back (*held = slots);
// without them free it says no.
func (d *Deliverer) mayStay(ctx context.Context, began time.Time, slots int, held *int) bool {
	if d.now().Sub(began) >= MaxStay || ctx.Err() != nil {
		return false
	}
	if d.othersWait(ctx) {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now, need := d.now(), slots-*held
	if !d.refusedAt.IsZero() && now.Sub(d.refusedAt) < time.Second {
		return false
	}
	// A lane stays only while another lane could still start here: a
	// free turn and a free send. Holding the last one would turn the next
	// lane away, and a refused lane retries at random against the
	// staying one's next turn (with one turn slot, a quiet merchant's
	// callback waited 3.8 s where re-queueing every turn took 0.4 s).
	if d.stopping || d.MaxTurns > 0 && d.turns >= d.MaxTurns {
		return false
	}
	if d.MaxInFlight > 0 && d.total+need >= d.MaxInFlight {
		return false
	}
	d.total += need
	*held = slots
	return true
}

// othersWait reports whether another lane waits for room: its task is
// queued in Redis (an error counts as yes), a turn was refused here in the
// last second, or the worker is stopping.
func (d *Deliverer) othersWait(ctx context.Context) bool {
	d.mu.Lock()
	busy := d.stopping || !d.refusedAt.IsZero() && d.now().Sub(d.refusedAt) < time.Second
	d.mu.Unlock()
	if busy {
		return true
	}
	waiting, err := d.Queue.LanesWaiting(ctx)
	return err != nil || waiting
}

// turn runs one turn of lane p with slots sends; *held is what it still
// holds when it returns. stay is true when the lane goes on in this task.
func (d *Deliverer) turn(ctx context.Context, log *slog.Logger, p queue.LanePayload, slots, waves int, held *int, began time.Time) (stay, fast bool, err error) {
	now := d.now()
	probe := false
	// A later wave starts only within (w × FastTurn) of the turn's start
	// (play), so the last one is out by (waves − 1) × FastTurn.
	until := now.Add(d.Timeout + 10*time.Second + time.Duration(waves-1)*FastTurn)
	lane, batch, err := d.Store.StartLaneTurn(ctx, p.MerchantID, p.Gen, until, func(lane store.Lane) int {
		switch {
		case !lane.CallbackEnabled:
			return 0 // disabled (410): the lane ends; re-enabling wakes it
		case lane.OpenUntil != nil && lane.OpenUntil.After(now):
			return 0 // cooling down: the sweep wakes it at OpenUntil
		case lane.OpenUntil != nil:
			probe = true
			return 1
		}
		return slots * waves
	})
	if errors.Is(err, store.ErrStaleLane) {
		log.Debug("stale lane turn")
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	log.Debug("lane turn started", "start_ms", d.now().Sub(now).Milliseconds(), "claimed", len(batch))
	if probe {
		waves = 1
	}
	return d.play(ctx, log, p, lane, batch, probe, slots, waves, until, held, began, true)
}

// play sends a started turn's batch, in waves of at most slots, records
// it and ends the turn (see turn); stayable is false for a turn with no
// task of its own (Run). fast reports a full turn that delivered all and
// heard every answer within FastTurn.
func (d *Deliverer) play(ctx context.Context, log *slog.Logger, p queue.LanePayload, lane store.Lane, batch []store.CallbackDelivery,
	probe bool, slots, waves int, until time.Time, held *int, began time.Time, stayable bool) (stay, fast bool, err error) {
	played := d.now()
	policy := d.Breaker.orDefault()
	limit := slots * waves
	if probe {
		limit = 1
	}
	d.giveBack(*held - min(len(batch), slots))
	*held = min(len(batch), slots)
	b := lane.Breaker
	var results []store.CallbackOutcome
	early := earlyRecords{done: make([]bool, len(batch))}
	var unclaim []string
	sentN := 0
	if len(batch) > 0 {
		secrets, err := d.callbackSecrets(ctx, p.MerchantID)
		if err != nil {
			return false, false, err
		}
		results = make([]store.CallbackOutcome, len(batch))
		for w := 0; w < len(batch); w += slots {
			end := min(w+slots, len(batch))
			if w > 0 && (!cleanAndFast(results[:w]) || d.now().Sub(played) >= time.Duration(w/slots)*FastTurn || d.othersWait(ctx)) {
				// A wave failed or was slow (by its answers or by the
				// clock: recording, scheduling), or another lane waits
				// for room: the rest waits for the next turn. So a turn
				// holds its claims and its slot for at most
				// (waves − 1) × FastTurn + the timeout, well within the
				// sweep's RequeueAfter, and a backlog delays another
				// merchant by one wave, not by a whole turn.
				for _, c := range batch[w:] {
					unclaim = append(unclaim, c.CallbackID)
				}
				break
			}
			e := d.sendBatch(ctx, log, batch[w:end], lane.CallbackURL, secrets, results[w:end])
			copy(early.done[w:end], e.done)
			sentN = end
			if ctx.Err() != nil {
				// Shutting down: what was answered is recorded (best effort:
				// the process may exit first), the other claims lapse, and
				// asynq re-queues the turn.
				var answered []store.CallbackOutcome
				for i, o := range results[:sentN] {
					if o.StatusCode != 0 && !early.done[i] {
						answered = append(answered, o)
					}
				}
				if _, err := d.Store.RecordCallbackAttempts(context.WithoutCancel(ctx), answered); err != nil {
					log.Error("record callback attempts at shutdown; their claims lapse and they are sent again", "err", err)
				}
				return false, false, ctx.Err()
			}
			prev := b
			b = policy.After(b, results[w:end], d.now())
			if b.Open() && !prev.Open() {
				log.Warn("callback endpoint failing; breaker open", "failures", b.Failures, "cooldown", b.Cooldown, "last_error", deref(b.LastError))
			} else if !b.Open() && prev.Open() {
				log.Info("callback endpoint answered; breaker closed")
			}
		}
		results = results[:sentN]
	}
	again := len(batch) > 0 && len(batch) == limit && !b.Open()
	if probe && !b.Open() {
		again = true // the probe closed the breaker: drain the backlog
	}
	fast = len(batch) == limit && !probe && len(unclaim) == 0 && cleanAndFast(results)
	// A turn that sent nothing ends the lane or waits for its breaker;
	// one that sent may go on (again, or work arrived meanwhile).
	stay = stayable && len(batch) > 0 && !b.Open() && d.mayStay(ctx, began, slots, held)
	// The answers not recorded during the batch go with the turn's end.
	var last []store.CallbackOutcome
	var lastIdx []int
	for i, o := range results {
		if !early.done[i] {
			last, lastIdx = append(last, o), append(lastIdx, i)
		}
	}
	sent := d.now()
	recorded, next, queued, err := d.Store.FinishLaneTurn(context.WithoutCancel(ctx), last, store.LaneEnd{MerchantID: p.MerchantID, Gen: p.Gen, Breaker: b, Again: again, Stay: stay, Unclaim: unclaim, ClaimedUntil: until})
	log.Debug("lane turn", "task", stayable, "batch", len(batch), "send_ms", sent.Sub(played).Milliseconds(),
		"finish_ms", d.now().Sub(sent).Milliseconds(), "queued", queued, "stay", stay)
	if err != nil && !errors.Is(err, store.ErrStaleLane) {
		log.Error("record the lane turn; its claims lapse and its callbacks are sent again", "err", err)
		return false, false, err
	}
	for k, i := range lastIdx {
		d.logOutcome(log, batch[i], results[i], recorded[k])
	}
	if errors.Is(err, store.ErrStaleLane) || !queued {
		return false, false, nil
	}
	if stay {
		return true, fast, nil
	}
	if err := d.Queue.CallbackLane(context.WithoutCancel(ctx), next.MerchantID, next.Gen); err != nil {
		log.Warn("enqueue the lane's next turn; the sweep will", "err", err)
	}
	return false, false, nil
}

// Reserve, Release and Run make the deliverer the store's TurnRunner
// (store.InlineTurns): a lane woken idle by a transaction in this worker
// has its first turn started in that transaction and run here at once.
//
// Reserve spares what mayStay spares: it takes no turn within a second of
// one turned away here, and leaves a turn and a send free for a queued
// lane, so a stream of fresh wakes cannot crowd out the round-robin of
// lanes with backlogs. It takes nothing once Stop was called.
func (d *Deliverer) Reserve(now time.Time) (int, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	at := d.now()
	switch {
	case d.stopping,
		!d.refusedAt.IsZero() && at.Sub(d.refusedAt) < time.Second,
		d.MaxTurns > 0 && d.turns+1 >= d.MaxTurns:
		return 0, time.Time{}
	}
	n := d.perMerchant()
	if d.MaxInFlight > 0 {
		n = min(n, max(1, d.MaxInFlight/4), d.MaxInFlight-d.total-1)
	}
	if n <= 0 {
		return 0, time.Time{}
	}
	d.total += n
	d.turns++
	d.running.Add(1)
	return n, now.Add(d.Timeout + 10*time.Second)
}

// Release gives back a reservation whose turn did not start.
func (d *Deliverer) Release(slots int) {
	d.release(slots)
	d.running.Done()
}

// Stop makes Reserve refuse and lanes stop staying: the worker is
// shutting down, and what it starts now could be cut off mid-send.
func (d *Deliverer) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopping = true
}

// Run plays a turn started at its wake, in its own goroutine (the
// transaction's caller, a confirm, goes on). Having no task, it tells the
// sweep it is alive while its sends are out, so it is not superseded as
// lost, and it never stays: its lane's next turn is a task, at the back
// of the queue.
func (d *Deliverer) Run(ctx context.Context, t store.LaneTurn) {
	go func() {
		defer d.running.Done()
		held := t.Slots
		defer func() { d.release(held) }()
		p := queue.LanePayload{MerchantID: t.Lane.MerchantID, Gen: t.Lane.Gen}
		log := d.log().With("merchant_id", p.MerchantID, "lane_gen", p.Gen)
		done := make(chan struct{})
		defer close(done)
		go d.touch(ctx, log, p, done, t.WokeAt)
		if _, _, err := d.play(ctx, log, p, t.Lane, t.Batch, false, t.Slots, 1, time.Time{}, &held, d.now(), false); err != nil {
			log.Warn("lane turn started at its wake failed; its claims lapse and the sweep takes the lane", "err", err)
		}
	}()
}

// touch keeps a task-less turn's lane fresh for the sweep until done:
// every LaneCheckAfter/3, and at once when its transaction committed late
// (the lane's lane_queued_at is the wake's, not the commit's).
func (d *Deliverer) touch(ctx context.Context, log *slog.Logger, p queue.LanePayload, done <-chan struct{}, wokeAt time.Time) {
	every := LaneCheckAfter / 3
	do := func() {
		if ok, err := d.Store.TouchLane(ctx, p.MerchantID, p.Gen); err != nil || !ok {
			log.Debug("touch lane", "moved_on", !ok, "err", err)
		}
	}
	if d.now().Sub(wokeAt) >= every {
		do()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			do()
		}
	}
}

// Wait waits, up to timeout, for the turns Run started (a worker's
// shutdown); what is still out then has its claims lapse and is sent again.
func (d *Deliverer) Wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { d.running.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// FlushAfter is how long an answered attempt may wait for the rest of its
// batch before it is recorded on its own: a batch whose answers arrive
// together is one transaction with the turn's end, while a slow or hung
// neighbour in the batch (up to the callback timeout) neither holds the
// others' records back nor makes a crash re-send them.
const FlushAfter = 20 * time.Millisecond

// earlyRecords is what sendBatch recorded before the batch ended.
type earlyRecords struct{ done []bool }

// sendBatch posts every callback of the batch concurrently into results.
// Answers that arrive while others are still out are recorded together
// after FlushAfter; the last answer of the batch (and any collected with
// it) is left for FinishLaneTurn.
func (d *Deliverer) sendBatch(ctx context.Context, log *slog.Logger, batch []store.CallbackDelivery, url string, secrets []string, results []store.CallbackOutcome) earlyRecords {
	early := earlyRecords{done: make([]bool, len(batch))}
	answered := make(chan int, len(batch))
	for i := range batch {
		batch[i].CallbackURL, batch[i].CallbackEnabled = url, true
		go func() {
			results[i] = d.deliver(ctx, batch[i], secrets)
			answered <- i
		}()
	}
	var pending []int
	var flush <-chan time.Time
	for out := len(batch); out > 0; {
		select {
		case i := <-answered:
			if out--; out > 0 {
				pending = append(pending, i)
				if flush == nil {
					flush = time.After(FlushAfter)
				}
			}
		case <-flush:
			flush = nil
			if ctx.Err() != nil || len(pending) == 0 {
				continue
			}
			outs := make([]store.CallbackOutcome, len(pending))
			for k, i := range pending {
				outs[k] = results[i]
			}
			recorded, err := d.Store.RecordCallbackAttempts(context.WithoutCancel(ctx), outs)
			if err != nil {
				log.Warn("record answered callbacks; they go with the turn's end", "err", err)
				continue
			}
			for k, i := range pending {
				early.done[i] = true
				d.logOutcome(log, batch[i], results[i], recorded[k])
			}
			pending = nil
		}
	}
	return early
}

// acquire takes a turn and up to want sends for it (0: none free); the
// turn gives back what its batch does not use (giveBack) and ends with
// release.
func (d *Deliverer) acquire(want int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.MaxTurns > 0 && d.turns >= d.MaxTurns {
		d.refusedAt = d.now()
		return 0
	}
	n := want
	if d.MaxInFlight > 0 {
		n = min(want, max(1, d.MaxInFlight/4), d.MaxInFlight-d.total)
	}
	if n <= 0 {
		d.refusedAt = d.now()
		return 0
	}
	d.total += n
	d.turns++
	return n
}

func (d *Deliverer) release(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.total -= n
	d.turns--
}

// giveBack returns n of a turn's sends it will not use, before the turn
// ends: a turn that claimed one callback (or a probe) holds one send, so
// sends run out only by callbacks actually in flight.
func (d *Deliverer) giveBack(n int) {
	if n <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.total -= n
}

// cleanAndFast: every attempt delivered, each answered within FastTurn.
func cleanAndFast(results []store.CallbackOutcome) bool {
	for _, o := range results {
		if o.Status != payment.CallbackDelivered || o.Latency >= FastTurn {
			return false
		}
	}
	return true
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Attempt is what one POST to a merchant produced.
type Attempt struct {
	Started    time.Time
	StatusCode int // 0 when no answer arrived
	Latency    time.Duration
	Err        error
	Response   []byte // at most MaxResponse bytes
	RetryAfter string
}

// Post sends one signed attempt: body as is, Standard Webhooks headers signed
// with every secret, within d.Timeout, reading at most MaxResponse bytes of
// the answer.
func (d *Deliverer) Post(ctx context.Context, url, id string, body []byte, secrets []string) (a Attempt) {
	a.Started = d.now()
	start := time.Now()
	defer func() { a.Latency = time.Since(start) }()
	sig, err := Sign(secrets, id, a.Started, body)
	if err != nil {
		a.Err = err
		return a
	}
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		a.Err = err
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "payrail-callbacks/1")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(a.Started.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := d.Client.Do(req)
	if err != nil {
		a.Err = err
		if ctx.Err() == context.DeadlineExceeded {
			a.Err = fmt.Errorf("timeout after %s", d.Timeout)
		}
		return a
	}
	defer resp.Body.Close()
	a.StatusCode = resp.StatusCode
	a.RetryAfter = resp.Header.Get("Retry-After")
	a.Response, err = io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
	if err != nil && resp.StatusCode/100 != 2 {
		// A 2xx whose body breaks off still said yes; anything else keeps
		// the read error for the record.
		a.Err = fmt.Errorf("read answer: %w", err)
		if ctx.Err() == context.DeadlineExceeded {
			a.Err = fmt.Errorf("timeout after %s reading the answer", d.Timeout)
		}
	}
	return a
}

// deliver sends one claimed callback and records the attempt; it returns
// the outcome (for the breaker).
func (d *Deliverer) deliver(ctx context.Context, c store.CallbackDelivery, secrets []string) store.CallbackOutcome {
	return d.outcome(c, d.Post(ctx, c.CallbackURL, c.CallbackID, c.Payload, secrets))
}

// logOutcome logs and observes one recorded (or, when recorded is false,
// overtaken) attempt.
func (d *Deliverer) logOutcome(log *slog.Logger, c store.CallbackDelivery, o store.CallbackOutcome, recorded bool) {
	if d.Observe != nil {
		d.Observe(outcomeLabel(o), o.Latency)
	}
	log = log.With("callback_id", c.CallbackID, "order_id", c.OrderID, "attempt", c.Attempt,
		"status_code", o.StatusCode, "latency_ms", o.Latency.Milliseconds(), "result", o.Status)
	switch {
	case !recorded:
		log.Warn("callback moved while it was being sent; attempt not recorded")
	case o.DisableEndpoint:
		log.Warn("merchant endpoint answered 410 Gone; callbacks disabled until re-enabled")
	case o.Status == payment.CallbackDelivered:
		log.Info("callback delivered")
	case o.Status == payment.CallbackDead:
		log.Warn("callback dead after its last attempt", "err", o.Error)
	default:
		log.Info("callback attempt failed; retrying", "err", o.Error, "next_attempt_at", o.NextAttempt)
	}
}

func outcomeLabel(o store.CallbackOutcome) string {
	switch {
	case o.DisableEndpoint:
		return "gone"
	case o.Status == payment.CallbackDelivered:
		return "delivered"
	case o.Status == payment.CallbackDead:
		return "dead"
	case o.StatusCode == 0:
		return "error"
	}
	return "rejected"
}

// outcome decides what an attempt leaves: DELIVERED on 2xx; for 410, the
// endpoint disabled and the callback PENDING (due when re-enabled);
// otherwise the next attempt per the schedule (or Retry-After on 429/503),
// or DEAD after the schedule's last delay.
func (d *Deliverer) outcome(c store.CallbackDelivery, a Attempt) store.CallbackOutcome {
	now := d.now()
	o := store.CallbackOutcome{
		CallbackID: c.CallbackID, MerchantID: c.MerchantID, Attempt: c.Attempt, StartedAt: a.Started,
		StatusCode: a.StatusCode, Latency: a.Latency, Response: recordable(a.Response),
		Status: payment.CallbackPending, NextAttempt: now,
	}
	if a.Err != nil {
		o.Error = a.Err.Error()
	}
	switch code := a.StatusCode; {
	case code >= 200 && code < 300:
		o.Status = payment.CallbackDelivered
		return o
	case code == http.StatusGone:
		o.DisableEndpoint = true
		o.Error = "HTTP 410 Gone: endpoint disabled"
		return o
	case code != 0 && o.Error == "":
		o.Error = "HTTP " + strconv.Itoa(code)
	}
	// n attempts of this generation failed before this one.
	n := c.Attempt % store.CallbackGeneration
	if n >= len(d.Schedule) || n >= store.CallbackGeneration-1 {
		o.Status = payment.CallbackDead
		return o
	}
	delay := d.jitter(d.Schedule[n])
	if a.StatusCode == http.StatusTooManyRequests || a.StatusCode == http.StatusServiceUnavailable {
		if ra, ok := parseRetryAfter(a.RetryAfter, now); ok {
			delay = min(ra, maxOf(d.Schedule))
		}
	}
	o.NextAttempt = now.Add(delay)
	return o
}

func (d *Deliverer) jitter(base time.Duration) time.Duration {
	r := rand.Float64
	if d.Rand != nil {
		r = d.Rand
	}
	// ±20 %.
	return base + time.Duration((r()*0.4-0.2)*float64(base))
}

func maxOf(s []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range s {
		m = max(m, d)
	}
	return m
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, 1<<31)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// recordable is the first MaxRecorded bytes of an answer as valid UTF-8
// without NULs (PostgreSQL text holds neither invalid UTF-8 nor NUL).
func recordable(b []byte) string {
	if len(b) > MaxRecorded {
		b = b[:MaxRecorded]
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	for len(s) > MaxRecorded {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}
