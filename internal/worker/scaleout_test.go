package worker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
	"github.com/payrail/payrail/internal/testredis"
)

// payrail on a real three-master Redis Cluster (issue 17): asynq, redsync,
// the nonces, rate limits and fair shares all go through the cluster client
// (PAYRAIL_REDIS_CLUSTER_ADDRS). make chaos kills one of its masters under
// load; this is the reduced form that fits make test.
func TestOnRedisCluster(t *testing.T) {
	t.Parallel()
	cl := testredis.StartCluster(t, 3, 0)
	env := map[string]string{"PAYRAIL_REDIS_CLUSTER_ADDRS": strings.Join(cl.Addrs(), ","), "PAYRAIL_REDIS_URL": "redis://" + cl.Addrs()[0] + "/0"}

	t.Run("end to end", func(t *testing.T) {
		var got atomic.Int32
		sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
		defer sink.Close()
		sys := systest.Start(t, systest.Options{Worker: true, Env: env})
		m := sys.NewMerchant(sink.URL)
		var orders []systest.Order
		for i := range 20 {
			o := m.CreateOrder(int64(3000 + i))
			if r := m.Confirm(o, sys.Session(o)); r.Status != 202 {
				t.Fatalf("confirm: %d %s", r.Status, r.Body)
			}
			orders = append(orders, o)
		}
		for _, o := range orders {
			m.WaitStatus(o.OrderID, "PAID", 20*time.Second)
		}
		testenv.Poll(t, 20*time.Second, "every payment.paid callback delivered", func() bool {
			return sys.Count(`SELECT count(*) FROM callbacks WHERE event_type = 'payment.paid' AND status = 'DELIVERED'`) == len(orders)
		})
		if n := got.Load(); n != int32(len(orders)) {
			t.Fatalf("merchant received %d callbacks, want %d", n, len(orders))
		}
		// The keys really are spread over the cluster's masters.
		spread := 0
		for _, n := range cl.Nodes {
			c := redis.NewClient(&redis.Options{Addr: n.Addr()})
			keys, err := c.DBSize(context.Background()).Result()
			c.Close()
			testenv.Must(t, err)
			if keys > 0 {
				spread++
			}
		}
		if spread < 2 {
			t.Fatalf("payrail's keys live on %d of 3 masters, want them spread", spread)
		}
	})
	t.Run("concurrent duplicate confirms", func(t *testing.T) {
		concurrentDuplicateConfirms(t, systest.Options{Worker: true, Faults: mockpg.Faults{LatencyMS: 50}, Env: env})
	})
}

// payrail on a real Sentinel (one master, one replica, three sentinels):
// the master is SIGKILLed with confirms in flight, Sentinel promotes the
// replica, and every payment — before, across and after — is charged once,
// PAID and called back once. make chaos runs the same under the full load
// with 2 api and 3 worker processes (scenario 9).
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	sen := testredis.StartSentinel(t)
	var got atomic.Int32
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
	defer sink.Close()
	sys := systest.Start(t, systest.Options{Worker: true, Faults: mockpg.Faults{LatencyMS: 200}, Env: map[string]string{
		"PAYRAIL_REDIS_SENTINEL_ADDRS": strings.Join(sen.SentinelAddrs(), ","),
		"PAYRAIL_REDIS_MASTER_NAME":    sen.MasterName,
		"PAYRAIL_REDIS_URL":            "redis://" + sen.Master.Addr() + "/0",
		"PAYRAIL_CALLBACK_SCHEDULE":    "200ms,500ms,1s,1s,1s,1s,1s,1s",
	}})
	m := sys.NewMerchant(sink.URL)
	// pay creates and confirms, retrying what a merchant retries (a 5xx
	// while Redis has no master).
	pay := func(amount int64) systest.Order {
		t.Helper()
		var o systest.Order
		testenv.Poll(t, 30*time.Second, "an order to be created", func() bool {
			r := m.Do("POST", "/v1/orders", map[string]any{"amount": amount, "orderName": "Test order"}, "Idempotency-Key", "sentinel-"+strconv.FormatInt(amount, 10))
			return r.Status == 201 && json.Unmarshal(r.Body, &o) == nil
		})
		key := sys.Session(o)
		testenv.Poll(t, 30*time.Second, "a confirm to be accepted", func() bool {
			r := m.Confirm(o, key)
			return r.Status == 202 || r.Status == 200
		})
		return o
	}
	var orders []systest.Order
	for i := range 10 {
		orders = append(orders, pay(int64(4000+i)))
	}
	old := sen.Master.Addr()
	killed := time.Now()
	sen.Master.Kill() // the 200 ms PG calls of the last confirms are in flight
	newMaster, err := sen.WaitMasterOtherThan(context.Background(), old, 30*time.Second)
	testenv.Must(t, err)
	t.Logf("Sentinel promoted %s after %s", newMaster, time.Since(killed).Round(time.Millisecond))
	for i := range 10 {
		orders = append(orders, pay(int64(4100+i)))
		if i == 0 {
			t.Logf("first payment after the kill accepted %s after it", time.Since(killed).Round(time.Millisecond))
		}
	}
	for _, o := range orders {
		m.WaitStatus(o.OrderID, "PAID", 30*time.Second)
	}
	t.Logf("all PAID %s after the kill", time.Since(killed).Round(time.Millisecond))
	testenv.Poll(t, 30*time.Second, "every payment.paid callback delivered", func() bool {
		return sys.Count(`SELECT count(*) FROM callbacks WHERE event_type = 'payment.paid' AND status = 'DELIVERED'`) == len(orders)
	})
	t.Logf("all called back %s after the kill", time.Since(killed).Round(time.Millisecond))
	stats := sys.PG.Stats()
	for _, o := range orders {
		if n := stats[o.OrderID].Approvals; n != 1 {
			t.Errorf("order %s approved %d times at the PG, want 1", o.OrderID, n)
		}
	}
	if n := sys.Count(`SELECT count(*) FROM payment_log WHERE to_status = 'PAID'`); n != len(orders) {
		t.Errorf("%d PAID transitions, want %d", n, len(orders))
	}
	// At-least-once delivery may repeat a send whose answer was lost in the
	// failover; the payload's webhook-id lets the merchant drop it, so it
	// is bounded, not zero.
	if n := got.Load(); n < int32(len(orders)) || n > int32(len(orders))+3 {
		t.Errorf("merchant received %d callbacks for %d payments", n, len(orders))
	}
}

// payrail behind a real PgBouncer in transaction mode (docs/scaling.md):
// 200 concurrent duplicate confirms and a run of payments go through a pool
// of 3 server connections (the api and the worker would otherwise open up
// to 40), and Prefer: wait still answers on the LISTEN of its direct
// connection rather than on the 2 s poll.
func TestBehindPgBouncer(t *testing.T) {
	t.Parallel()
	const pool = 3
	t.Run("concurrent duplicate confirms", func(t *testing.T) {
		concurrentDuplicateConfirms(t, systest.Options{Worker: true, Faults: mockpg.Faults{LatencyMS: 50}, PgBouncerPool: pool})
	})
	sys := systest.Start(t, systest.Options{Worker: true, PgBouncerPool: pool})
	m := sys.NewMerchant("")
	var dbName string
	testenv.Must(t, sys.DB.DB.Get(&dbName, `SELECT current_database()`))
	// The most backends this database had while the payments ran: the
	// pool, the LISTEN connection and this test's own one.
	var most atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			var n int64
			if err := sys.DB.DB.Get(&n, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, dbName); err == nil && n > most.Load() {
				most.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var waits []time.Duration
	const n = 10
	for i := range n {
		o := m.CreateOrder(int64(5000 + i))
		key := sys.Session(o)
		start := time.Now()
		r := m.Confirm(o, key, "Prefer", "wait=5")
		waits = append(waits, time.Since(start))
		if r.Status != 200 || r.JSON()["status"] != "PAID" {
			t.Fatalf("confirm with Prefer: wait: %d %s", r.Status, r.Body)
		}
	}
	close(stop)
	<-sampled
	if got := most.Load(); got > pool+3 {
		t.Errorf("%d backends on the database while paying, want at most the pool of %d + LISTEN + this test's", got, pool)
	}
	// A LISTEN through the pooler would hear nothing: each wait would last
	// until the 2 s poll, about 1 s at the median. The median, not the
	// mean, so a stall of this loaded machine does not decide it.
	slices.Sort(waits)
	if median := waits[n/2]; median > 500*time.Millisecond {
		t.Errorf("Prefer: wait took %s at the median, want the LISTEN's answer, not the poll's", median)
	}
	t.Logf("%d payments with Prefer: wait through PgBouncer: %s at the median; at most %d backends", n, waits[n/2].Round(time.Millisecond), most.Load())
}
