package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testenv"
)

// countingDB is a Counter that counts its SQL reads and takes a while, as a
// count under load does.
type countingDB struct {
	reads atomic.Int64
	delay time.Duration
	fail  atomic.Bool
}

func (c *countingDB) CountInFlight(ctx context.Context, _ time.Duration) (store.StateCounts, error) {
	c.reads.Add(1)
	time.Sleep(c.delay)
	if c.fail.Load() {
		return store.StateCounts{}, errors.New("db down")
	}
	return store.StateCounts{Orders: map[string]int64{"CREATED": 3, "CONFIRMING": 1}, Callbacks: map[string]int64{"PENDING": 2, "DEAD": 0}}, nil
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// scrapeAll runs n concurrent scrapes of reg and returns one body.
func scrapeAll(t *testing.T, reg *prometheus.Registry, n int) string {
	t.Helper()
	srv := httptest.NewServer(Handler(reg))
	defer srv.Close()
	var wg sync.WaitGroup
	bodies := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			bodies[i] = string(b)
		}()
	}
	wg.Wait()
	return bodies[0]
}

// Item 3 of issue #20: N concurrent scrapes run the counting SQL at most
// once per interval (it used to be twice per scrape).
func TestConcurrentScrapesCountOncePerInterval(t *testing.T) {
	t.Parallel()
	db := &countingDB{delay: 50 * time.Millisecond}
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&State{DB: db, Now: clk.Now})

	body := scrapeAll(t, reg, 40)
	if n := db.reads.Load(); n != 1 {
		t.Fatalf("40 concurrent scrapes ran the count %d times, want 1", n)
	}
	for _, want := range []string{`payrail_orders{status="CREATED"} 3`, `payrail_callbacks{status="PENDING"} 2`, `payrail_state_scrape_ok{source="orders"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s:\n%s", want, body)
		}
	}
	clk.Add(DefaultCountsInterval - time.Second)
	scrapeAll(t, reg, 20)
	if n := db.reads.Load(); n != 1 {
		t.Fatalf("scrapes within the interval ran the count again (%d reads)", n)
	}
	clk.Add(time.Second)
	body = scrapeAll(t, reg, 20)
	if n := db.reads.Load(); n != 2 {
		t.Fatalf("after one interval: %d reads, want 2", n)
	}
	if !strings.Contains(body, "payrail_state_counts_age_seconds 0") {
		t.Errorf("fresh counts have an age: %s", body)
	}
	// A failed read keeps the last numbers, flagged, and is not retried
	// before the next interval.
	db.fail.Store(true)
	clk.Add(DefaultCountsInterval)
	body = scrapeAll(t, reg, 10)
	if n := db.reads.Load(); n != 3 {
		t.Fatalf("after a second interval: %d reads, want 3", n)
	}
	if !strings.Contains(body, `payrail_state_scrape_ok{source="orders"} 0`) || !strings.Contains(body, `payrail_orders{status="CREATED"} 3`) {
		t.Errorf("a failed read: %s", body)
	}
}

// Replicas sharing Redis run the count once per interval between them.
func TestReplicasShareOneCountPerInterval(t *testing.T) {
	t.Parallel()
	rdb := testenv.NewRedis(t).Client
	db := &countingDB{delay: 20 * time.Millisecond}
	clk := &clock{now: time.Now()}
	var regs []*prometheus.Registry
	for range 5 {
		reg := prometheus.NewRegistry()
		reg.MustRegister(&State{DB: db, Redis: rdb, Now: clk.Now})
		regs = append(regs, reg)
	}
	scrapeReplicas := func() []string {
		var wg sync.WaitGroup
		bodies := make([]string, len(regs))
		for i, reg := range regs {
			wg.Add(1)
			go func() { defer wg.Done(); bodies[i] = scrapeAll(t, reg, 5) }()
		}
		wg.Wait()
		return bodies
	}
	scrapeReplicas()
	if n := db.reads.Load(); n != 1 {
		t.Fatalf("5 replicas × 5 scrapes: %d reads, want 1", n)
	}
	// Within the interval every replica reports the shared counts.
	clk.Add(time.Second)
	for i, body := range scrapeReplicas() {
		if !strings.Contains(body, `payrail_orders{status="CREATED"} 3`) {
			t.Errorf("replica %d has no counts:\n%s", i, body)
		}
	}
	if n := db.reads.Load(); n != 1 {
		t.Fatalf("%d reads within one interval, want 1", n)
	}
}

// The counts run on PostgreSQL, served by partial indexes (callbacks_dead
// comes from migration 00005), and cover only unsettled states.
func TestCountInFlightOnPostgres(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	st := store.New(db.DB, testenv.Keyring(t), store.Options{})
	got, err := st.CountInFlight(t.Context(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Orders) != 3 || len(got.Callbacks) != 2 || got.Orders["CREATED"] != 0 || got.Orders["AWAITING_DEPOSIT"] != 0 || got.Callbacks["DEAD"] != 0 {
		t.Errorf("counts of an empty database: %+v", got)
	}
	var n int
	testenv.Must(t, db.DB.Get(&n, `SELECT count(*) FROM pg_indexes WHERE tablename = 'callbacks' AND indexname = 'callbacks_dead'`))
	if n != 1 {
		t.Error("no callbacks_dead index")
	}
}
