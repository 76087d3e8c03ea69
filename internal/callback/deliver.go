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
	// sends at once.
	DefaultPerMerchant = 4
)

// ErrBusy means the merchant (or the worker's callback capacity) is at its
// limit of deliveries in flight. It wraps lock.ErrTaken so asynq treats it as
// the worker treats a taken lock: not a failure, retried soon, without
// spending a retry.
var ErrBusy = fmt.Errorf("callback: deliveries at their concurrency limit: %w", lock.ErrTaken)

// Store is the slice of the store the deliverer uses.
type Store interface {
	// CallbackDelivery returns CALLBACK_NOT_FOUND for an unknown id.
	CallbackDelivery(ctx context.Context, callbackID string) (store.CallbackDelivery, error)
	CallbackSecrets(ctx context.Context, merchantID string) ([]string, error)
	ClaimDueCallbacks(ctx context.Context, now, lostBefore time.Time, limit int) ([]store.CallbackRef, error)
	ParkCallback(ctx context.Context, callbackID string, attempt int) error
	// ClaimCallbackSend returns false when another trigger is sending this
	// attempt or the callback moved on.
	ClaimCallbackSend(ctx context.Context, callbackID string, attempt int, until time.Time) (bool, error)
	// RecordCallbackAttempt returns recorded=false when the callback moved on.
	RecordCallbackAttempt(ctx context.Context, o store.CallbackOutcome) (recorded bool, err error)
}

// Enqueuer triggers one attempt; a task-ID conflict is success.
type Enqueuer interface {
	Callback(ctx context.Context, callbackID string, attempt int) error
	CallbackAgain(ctx context.Context, callbackID string, attempt int, gen int64) error
}

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
	// PerMerchant bounds one merchant's deliveries in flight in this worker;
	// MaxInFlight bounds all of them, so callbacks never take every worker
	// slot from confirms. 0 means DefaultPerMerchant and unbounded.
	PerMerchant, MaxInFlight int
	// RequeueAfter is how long a claimed trigger may go unrun before the
	// sweep assumes it lost (Redis flushed) and enqueues it again.
	RequeueAfter time.Duration
	// Now and Rand (in [0,1)) are the clock and the jitter source.
	Now  func() time.Time
	Rand func() float64
	// Observe, when set, is told of every attempt's outcome and latency.
	Observe func(outcome string, d time.Duration)

	mu       sync.Mutex
	inFlight map[string]int
	total    int
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
}

// NewDeliverer returns a deliverer whose client dials through the guard.
func NewDeliverer(o Options) *Deliverer {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return &Deliverer{
		Store: o.Store, Queue: o.Queue, Client: NewHTTPClient(o.Guard), Log: o.Log,
		Schedule: o.Schedule, Timeout: o.Timeout, MaxInFlight: o.MaxInFlight,
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
			MaxIdleConnsPerHost:    DefaultPerMerchant,
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

// EnqueueDue triggers every due PENDING callback of an enabled endpoint, in
// order of creation; the sweep calls it each tick.
func (d *Deliverer) EnqueueDue(ctx context.Context) error {
	now := d.now()
	requeue := d.RequeueAfter
	if requeue <= 0 {
		requeue = 2*d.Timeout + 10*time.Second
	}
	var errs []error
	for range 20 { // at most 20 batches per tick; the next tick continues
		refs, err := d.Store.ClaimDueCallbacks(ctx, now, now.Add(-requeue), 500)
		if err != nil {
			return err
		}
		for _, r := range refs {
			enqueue := d.Queue.Callback
			if r.Lost {
				// A stranded task (its worker lost Redis mid-run) keeps the
				// plain ID until asynq's lease recovery; a new generation
				// does not wait for it. A stale trigger is a no-op.
				gen := now.UnixMilli()
				enqueue = func(ctx context.Context, id string, attempt int) error {
					return d.Queue.CallbackAgain(ctx, id, attempt, gen)
				}
			}
			if err := enqueue(ctx, r.CallbackID, r.Attempt); err != nil {
				errs = append(errs, err)
			}
		}
		if len(refs) > 0 {
			d.log().Debug("callbacks enqueued", "count", len(refs))
		}
		if len(refs) < 500 || len(errs) > 0 {
			break
		}
	}
	return errors.Join(errs...)
}

// ProcessTask makes one delivery attempt of callback:{id}:{attempt}. A stale
// trigger (the callback moved on) does nothing; a disabled endpoint parks the
// callback without spending an attempt; a busy merchant is ErrBusy. Delivery
// failures are not task errors: the outcome and the next attempt's time go to
// PostgreSQL, and the sweep triggers the next attempt when it is due.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p queue.IDPayload
	if err := queue.Decode(t, &p); err != nil {
		return err
	}
	taskID, _ := asynq.GetTaskID(ctx)
	log := d.log().With("callback_id", p.ID, "task_id", taskID, "attempt", p.Attempt)
	c, err := d.Store.CallbackDelivery(ctx, p.ID)
	if payment.ErrorCode(err) == payment.CodeCallbackNotFound {
		log.Warn("callback not found; dropping trigger")
		return nil
	}
	if err != nil {
		return err
	}
	log = log.With("order_id", c.OrderID, "merchant_id", c.MerchantID)
	if c.Status != "PENDING" || c.Attempt != p.Attempt {
		log.Debug("stale callback trigger", "status", c.Status, "row_attempt", c.Attempt)
		return nil
	}
	if !c.CallbackEnabled {
		log.Info("merchant endpoint disabled; callback waits")
		return d.Store.ParkCallback(ctx, c.CallbackID, c.Attempt)
	}
	if !d.acquire(c.MerchantID) {
		return ErrBusy
	}
	defer d.release(c.MerchantID)
	// Two triggers of one attempt (the plain one and a sweep's re-enqueue
	// after presuming it lost) must not both send it.
	ok, err := d.Store.ClaimCallbackSend(ctx, c.CallbackID, c.Attempt, d.now().Add(d.Timeout+10*time.Second))
	if err != nil {
		return err
	}
	if !ok {
		log.Info("another trigger is sending this attempt")
		return nil
	}
	return d.deliver(ctx, log, c)
}

func (d *Deliverer) acquire(merchantID string) bool {
	per := d.PerMerchant
	if per <= 0 {
		per = DefaultPerMerchant
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inFlight == nil {
		d.inFlight = map[string]int{}
	}
	if d.inFlight[merchantID] >= per || (d.MaxInFlight > 0 && d.total >= d.MaxInFlight) {
		return false
	}
	d.inFlight[merchantID]++
	d.total++
	return true
}

func (d *Deliverer) release(merchantID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.total--
	if d.inFlight[merchantID]--; d.inFlight[merchantID] <= 0 {
		delete(d.inFlight, merchantID)
	}
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

func (d *Deliverer) deliver(ctx context.Context, log *slog.Logger, c store.CallbackDelivery) error {
	secrets, err := d.Store.CallbackSecrets(ctx, c.MerchantID)
	if err != nil {
		return err
	}
	a := d.Post(ctx, c.CallbackURL, c.CallbackID, c.Payload, secrets)
	if ctx.Err() != nil {
		// Shutting down: the attempt did not finish; asynq re-queues the task.
		return ctx.Err()
	}
	o := d.outcome(c, a)
	recorded, err := d.Store.RecordCallbackAttempt(context.WithoutCancel(ctx), o)
	if err != nil {
		return err
	}
	if d.Observe != nil {
		d.Observe(outcomeLabel(o), a.Latency)
	}
	log = log.With("status_code", a.StatusCode, "latency_ms", a.Latency.Milliseconds(), "result", o.Status)
	switch {
	case !recorded:
		log.Warn("callback moved while it was being sent; attempt not recorded")
	case o.DisableEndpoint:
		log.Warn("merchant endpoint answered 410 Gone; callbacks disabled until re-enabled")
	case o.Status == "DELIVERED":
		log.Info("callback delivered")
	case o.Status == "DEAD":
		log.Warn("callback dead after its last attempt", "err", o.Error)
	default:
		log.Info("callback attempt failed; retrying", "err", o.Error, "next_attempt_at", o.NextAttempt)
	}
	return nil
}

func outcomeLabel(o store.CallbackOutcome) string {
	switch {
	case o.DisableEndpoint:
		return "gone"
	case o.Status == "DELIVERED":
		return "delivered"
	case o.Status == "DEAD":
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
		Status: "PENDING", NextAttempt: now,
	}
	if a.Err != nil {
		o.Error = a.Err.Error()
	}
	switch code := a.StatusCode; {
	case code >= 200 && code < 300:
		o.Status = "DELIVERED"
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
		o.Status = "DEAD"
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
