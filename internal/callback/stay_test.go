package callback

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/queue"
	"github.com/payrail/payrail/internal/store"
)

// laneFake is one merchant's lane and due callbacks, in memory, with the
// generation fence of store/lanes.go.
type laneFake struct {
	mu      sync.Mutex
	gen     int64
	queued  bool
	due     []string
	sending map[string]bool
	starts  []int64 // generation of each StartLaneTurn
	url     string
	dirty   bool // work arrived during the turn
	claims  []int
	// maxInFlight is the most requests the endpoint had at once.
	maxInFlight, inFlight int
	answer                func(http.ResponseWriter)
	ends                  []store.LaneEnd
}

func (f *laneFake) StartLaneTurn(_ context.Context, _ string, gen int64, _ time.Time, limit func(store.Lane) int) (store.Lane, []store.CallbackDelivery, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if gen != f.gen || !f.queued {
		return store.Lane{}, nil, store.ErrStaleLane
	}
	f.starts = append(f.starts, gen)
	l := store.Lane{MerchantID: "mer_f", Gen: gen, CallbackURL: f.url, CallbackEnabled: true}
	var batch []store.CallbackDelivery
	for _, id := range f.due {
		if len(batch) == limit(l) {
			break
		}
		if !f.sending[id] {
			f.sending[id] = true
			batch = append(batch, store.CallbackDelivery{CallbackID: id, MerchantID: "mer_f", Status: "PENDING", Payload: []byte(`{}`)})
		}
	}
	f.claims = append(f.claims, len(batch))
	return l, batch, nil
}

func (f *laneFake) FinishLaneTurn(_ context.Context, outs []store.CallbackOutcome, e store.LaneEnd) ([]bool, store.LaneWake, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(outs)
	for _, id := range e.Unclaim {
		delete(f.sending, id)
	}
	f.ends = append(f.ends, e)
	if e.Gen != f.gen {
		return recordedAll(outs), store.LaneWake{}, false, store.ErrStaleLane
	}
	f.queued, f.dirty = e.Again || f.dirty, false
	if f.queued && !e.Stay {
		f.gen++
	}
	return recordedAll(outs), store.LaneWake{MerchantID: "mer_f", Gen: f.gen}, f.queued, nil
}

func (f *laneFake) record(outs []store.CallbackOutcome) {
	for _, o := range outs {
		delete(f.sending, o.CallbackID)
		if o.Status == payment.CallbackDelivered {
			for i, id := range f.due {
				if id == o.CallbackID {
					f.due = append(f.due[:i], f.due[i+1:]...)
					break
				}
			}
		}
	}
}

func (f *laneFake) RecordCallbackAttempts(_ context.Context, outs []store.CallbackOutcome) ([]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(outs)
	return recordedAll(outs), nil
}

func recordedAll(outs []store.CallbackOutcome) []bool {
	r := make([]bool, len(outs))
	for i := range r {
		r[i] = true
	}
	return r
}

func (f *laneFake) CallbackSecrets(context.Context, string) ([]string, error) {
	return []string{"whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ="}, nil
}
func (f *laneFake) WakeDueLanes(context.Context, time.Time, int) ([]store.LaneWake, error) {
	return nil, nil
}
func (f *laneFake) QueuedLanes(context.Context, time.Time, time.Time, int) ([]store.LaneWake, error) {
	return nil, nil
}
func (f *laneFake) RequeueLane(context.Context, store.LaneWake, time.Time) (store.LaneWake, bool, error) {
	return store.LaneWake{}, false, nil
}
func (f *laneFake) TouchLane(context.Context, string, int64) (bool, error) { return true, nil }
func (f *laneFake) ExpireStaleCallbacks(context.Context, time.Duration, int) (int64, error) {
	return 0, nil
}

// queueFake answers LanesWaiting from waiting (nil: no) and records enqueues.
type queueFake struct {
	mu       sync.Mutex
	waiting  func() (bool, error)
	enqueued []int64
	asked    int
}

func (q *queueFake) CallbackLane(_ context.Context, _ string, gen int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.enqueued = append(q.enqueued, gen)
	return nil
}
func (q *queueFake) LaneTaskLost(context.Context, string, int64) (bool, error) { return false, nil }
func (q *queueFake) LanesWaiting(context.Context) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.asked++
	if q.waiting == nil {
		return false, nil
	}
	return q.waiting()
}

func newStayFixture(t *testing.T, backlog int) (*Deliverer, *laneFake, *queueFake, *int) {
	t.Helper()
	var mu sync.Mutex
	received := 0
	var f *laneFake
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received++
		mu.Unlock()
		f.mu.Lock()
		f.inFlight++
		f.maxInFlight = max(f.maxInFlight, f.inFlight)
		answer := f.answer
		f.mu.Unlock()
		time.Sleep(time.Millisecond)
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
		if answer != nil {
			answer(w)
		}
	}))
	t.Cleanup(srv.Close)
	f = &laneFake{gen: 7, queued: true, sending: map[string]bool{}, url: srv.URL}
	for i := range backlog {
		f.due = append(f.due, fmt.Sprintf("msg_%03d", i))
	}
	q := &queueFake{}
	d := NewDeliverer(Options{Store: f, Queue: q, Guard: &Guard{AllowPrivate: true}, Timeout: 2 * time.Second,
		Schedule: []time.Duration{time.Second}, PerMerchant: 8, MaxInFlight: 32, MaxTurns: 4})
	return d, f, q, &received
}

func laneTask(gen int64) *asynq.Task {
	return asynq.NewTask(queue.TypeCallbackLane, fmt.Appendf(nil, `{"merchantId":"mer_f","gen":%d}`, gen))
}

// A lane with a backlog takes all its turns in the task it started in
// while no other lane waits: one generation, no task enqueued, every
// callback sent once, and the sends it holds are back afterwards. After
// a full, fast, all-delivered turn it claims twice the waves of 8 (sent 8
// at a time), up to MaxWaves: 70 callbacks take turns of 8, 16, 32 and 14.
func TestLaneStaysWhileNoOtherLaneWaits(t *testing.T) {
	d, f, q, received := newStayFixture(t, 70)
	if err := d.ProcessTask(context.Background(), laneTask(7)); err != nil {
		t.Fatal(err)
	}
	if len(f.due) != 0 || *received != 70 {
		t.Errorf("%d still due, %d received; want 0 and 70", len(f.due), *received)
	}
	if len(f.starts) != 4 || f.gen != 7 || len(q.enqueued) != 0 {
		t.Errorf("turns %v (gens), lane gen %d, enqueued %v; want 4 turns at gen 7 and nothing enqueued", f.starts, f.gen, q.enqueued)
	}
	if !slices.Equal(f.claims, []int{8, 16, 32, 14}) || f.maxInFlight > 8 {
		t.Errorf("claims %v, at most %d in flight; want [8 16 32 14], never more than 8 at once", f.claims, f.maxInFlight)
	}
	// Every turn that sent may stay; the last (14 of 32) ends the lane anyway.
	for i, e := range f.ends {
		if !e.Stay || e.Again != (i < 3) {
			t.Errorf("turn %d: Stay %v Again %v, want true %v", i, e.Stay, e.Again, i < 3)
		}
	}
	if f.queued {
		t.Error("the lane is still queued after its backlog drained")
	}
	if d.total != 0 || d.turns != 0 {
		t.Errorf("after the task: %d sends and %d turns held", d.total, d.turns)
	}
}

// A second wave goes only when the first delivered everything, each
// within FastTurn: a failure or a slow answer in the first gives the
// second wave's claims back, unsent.
func TestSecondWaveOnlyAfterACleanFastFirst(t *testing.T) {
	for name, answer := range map[string]func(http.ResponseWriter){
		"a failure":     func(w http.ResponseWriter) { w.WriteHeader(500) },
		"a slow answer": func(http.ResponseWriter) { time.Sleep(FastTurn + 50*time.Millisecond) },
	} {
		t.Run(name, func(t *testing.T) {
			d, f, _, received := newStayFixture(t, 40)
			var mu sync.Mutex
			n := 0
			f.answer = func(w http.ResponseWriter) {
				mu.Lock()
				n++
				odd := n == 10 // the second turn's (first wave's) second callback
				mu.Unlock()
				if odd {
					answer(w)
				}
			}
			if err := d.ProcessTask(context.Background(), laneTask(7)); err != nil {
				t.Fatal(err)
			}
			if len(f.claims) < 3 || f.claims[1] != 16 {
				t.Fatalf("claims %v, want a second turn of 16", f.claims)
			}
			if got := f.ends[1].Unclaim; len(got) != 8 {
				t.Errorf("second turn gave back %d claims, want its unsent second wave (8)", len(got))
			}
			// The fake has no retry schedule: a failed one goes again at once.
			if len(f.due) != 0 || *received < 40 {
				t.Errorf("received %d, %d still due; want all 40 delivered", *received, len(f.due))
			}
		})
	}
}

// Another lane's task waiting in Redis, or a refused turn in this worker,
// sends the lane's next turn to the back of the queue (round-robin); so
// does an answer Redis cannot give.
func TestLaneYieldsWhenOthersWait(t *testing.T) {
	cases := map[string]func(d *Deliverer, q *queueFake){
		"a lane task waits": func(_ *Deliverer, q *queueFake) { q.waiting = func() (bool, error) { return true, nil } },
		"Redis errs": func(_ *Deliverer, q *queueFake) {
			q.waiting = func() (bool, error) { return false, errors.New("connection refused") }
		},
		"a turn was refused here": func(d *Deliverer, _ *queueFake) {
			d.MaxTurns = 2
			d.acquire(8) // two lanes hold the turns; a third is refused
			d.acquire(8)
			if d.acquire(8) != 0 {
				panic("third turn should be refused")
			}
			d.release(8)
			d.release(8)
		},
		"no turn would be left for another lane": func(d *Deliverer, _ *queueFake) { d.MaxTurns = 1 },
		"no send would be left for another lane": func(d *Deliverer, _ *queueFake) {
			d.total = d.MaxInFlight - 8 // other turns' sends: this lane's 8 are the last
		},
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			d, f, q, received := newStayFixture(t, 30)
			setup(d, q)
			if err := d.ProcessTask(context.Background(), laneTask(7)); err != nil {
				t.Fatal(err)
			}
			if *received != 8 || len(f.starts) != 1 {
				t.Errorf("sent %d in %d turns; want one turn of 8", *received, len(f.starts))
			}
			if len(q.enqueued) != 1 || q.enqueued[0] != 8 || f.gen != 8 {
				t.Errorf("enqueued %v, lane gen %d; want the next generation (8) at the back of the queue", q.enqueued, f.gen)
			}
		})
	}
}

// Staying is bounded in time (MaxStay) and by the worker's sends: a lane
// whose sends were taken by other turns while it sent goes to the back.
func TestLaneStayIsBounded(t *testing.T) {
	t.Run("MaxStay", func(t *testing.T) {
		d, f, q, _ := newStayFixture(t, 80)
		now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		d.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(100 * time.Millisecond); return now }
		if err := d.ProcessTask(context.Background(), laneTask(7)); err != nil {
			t.Fatal(err)
		}
		// Each turn reads the clock a dozen times, 0.1 s each: the stay
		// ends well before the 10 turns the backlog needs.
		if n := len(f.starts); n < 2 || n >= 10 || len(q.enqueued) != 1 {
			t.Errorf("%d turns in the task, enqueued %v; want 2–9 then one enqueue", n, q.enqueued)
		}
	})
	t.Run("sends taken meanwhile", func(t *testing.T) {
		// A batch of 3 gives 5 sends back; work arrives during it, and
		// other turns take every free send meanwhile.
		d, f, q, _ := newStayFixture(t, 3)
		q.waiting = func() (bool, error) {
			f.mu.Lock()
			for i := range 20 {
				f.due = append(f.due, fmt.Sprintf("msg_late_%02d", i))
			}
			f.dirty = true
			f.mu.Unlock()
			d.mu.Lock()
			d.total = d.MaxInFlight
			d.mu.Unlock()
			return false, nil
		}
		if err := d.ProcessTask(context.Background(), laneTask(7)); err != nil {
			t.Fatal(err)
		}
		if len(f.starts) != 1 || len(q.enqueued) != 1 {
			t.Errorf("%d turns, enqueued %v; want 1 turn and the next at the back", len(f.starts), q.enqueued)
		}
	})
}

// Reserve (a turn started at its wake) spares what a staying lane spares:
// a turn and a send for a queued lane, nothing within a second of a turn
// turned away, nothing once the worker stops; Wait waits for every
// reservation to be released or run.
func TestReserveSparesRoomForQueuedLanes(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	d := &Deliverer{PerMerchant: 8, MaxInFlight: 32, MaxTurns: 3, Timeout: time.Second, Now: func() time.Time { return now }}
	a, until := d.Reserve(now)
	if a != 8 || !until.Equal(now.Add(11*time.Second)) {
		t.Fatalf("first reservation %d until %s, want 8 until +11s", a, until)
	}
	if b, _ := d.Reserve(now); b != 8 {
		t.Fatalf("second reservation %d, want 8", b)
	}
	if c, _ := d.Reserve(now); c != 0 {
		t.Fatalf("third reservation %d: it would take the last of 3 turns", c)
	}
	d.Release(8)
	d.mu.Lock()
	d.total = 31 // other turns' sends: one left
	d.mu.Unlock()
	if c, _ := d.Reserve(now); c != 0 {
		t.Fatalf("reservation %d with one send free, want 0", c)
	}
	d.mu.Lock()
	d.total = 8
	d.mu.Unlock()
	d.acquire(8) // lane tasks take the other two turns...
	d.acquire(8)
	if got := d.acquire(8); got != 0 {
		t.Fatalf("a fourth turn was granted: %d", got)
	}
	d.release(8) // ...and a third was turned away just now
	d.release(8)
	if c, _ := d.Reserve(now); c != 0 {
		t.Fatalf("reservation %d within a second of a refusal, want 0", c)
	}
	now = now.Add(1100 * time.Millisecond)
	if c, _ := d.Reserve(now); c != 8 {
		t.Fatalf("reservation %d a second after the refusal, want 8", c)
	}
	d.Release(8)
	d.Stop()
	if c, _ := d.Reserve(now); c != 0 {
		t.Fatalf("reservation %d after Stop, want 0", c)
	}
	d.Release(8) // the first reservation
	if !d.Wait(time.Second) {
		t.Fatal("Wait timed out with every reservation released")
	}
}
