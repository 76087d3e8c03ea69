package chaos

import (
	"context"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/mockpg"
)

// size is how hard a run pushes: payments per scenario, spread over
// duration, and how long the system may take to settle afterwards.
type size struct {
	payments int
	duration time.Duration
	quiesce  time.Duration
	full     bool
}

var (
	fullSize    = size{payments: 300, duration: 45 * time.Second, quiesce: 3 * time.Minute, full: true}
	reducedSize = size{payments: 60, duration: 8 * time.Second, quiesce: 45 * time.Second}
)

func (sz size) base(name string) scenario {
	return scenario{name: name, payments: sz.payments, duration: sz.duration, quiesce: sz.quiesce}
}

// sleepCtx sleeps for d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

// workerKills SIGKILLs a worker every few seconds, round robin, and starts it
// again: confirms, callbacks and sweeps die mid-flight.
func workerKills(sz size) scenario {
	sc := sz.base("1 worker SIGKILL")
	every := 2 * time.Second
	if sz.full {
		every = 3 * time.Second
	}
	sc.faults = mockpg.Faults{LatencyMS: 800} // so kills land mid-PG-call
	sc.vaShare = 0.2                          // deposits land while workers die
	sc.inject = func(ctx context.Context, t *testing.T, c *cluster) {
		for i := 0; sleepCtx(ctx, every); i++ {
			w := c.workers[i%len(c.workers)]
			t.Logf("%s: SIGKILL %s", time.Now().Format("15:04:05.000"), w.name)
			if err := w.kill(300 * time.Millisecond); err != nil {
				t.Errorf("restart %s: %v", w.name, err)
			}
		}
	}
	return sc
}

// redisFaults restarts Redis (full run: a private redis-server, all queues,
// locks and nonces lost) and flushes it; the reduced run flushes its index of
// the shared test Redis only.
func redisFaults(sz size) scenario {
	if !sz.full {
		sc := sz.base("2 Redis FLUSHDB")
		sc.inject = func(ctx context.Context, t *testing.T, c *cluster) {
			if !sleepCtx(ctx, sz.duration/2) {
				return
			}
			t.Logf("%s: FLUSHDB", time.Now().Format("15:04:05.000"))
			if err := c.rdb.FlushDB(context.Background()).Err(); err != nil {
				t.Errorf("flushdb: %v", err)
			}
		}
		return sc
	}
	sc := sz.base("2 Redis restart + FLUSHALL")
	sc.privateRedis = true
	sc.inject = func(ctx context.Context, t *testing.T, c *cluster) {
		if !sleepCtx(ctx, sz.duration*3/10) {
			return
		}
		o := c.beginOutage("Redis restart")
		c.redis.stop()
		time.Sleep(3 * time.Second)
		if err := c.redis.start(); err != nil {
			t.Errorf("restart redis: %v", err)
		}
		c.endOutage(o)
		if !sleepCtx(ctx, sz.duration*3/10) {
			return
		}
		t.Logf("%s: FLUSHALL", time.Now().Format("15:04:05.000"))
		if err := c.rdb.FlushAll(context.Background()).Err(); err != nil {
			t.Errorf("flushall: %v", err)
		}
	}
	return sc
}

// postgresRestart stops a private PostgreSQL for a few seconds mid-load.
func postgresRestart(sz size) scenario {
	sc := sz.base("3 PostgreSQL restart")
	sc.privatePG = true
	sc.inject = func(ctx context.Context, t *testing.T, c *cluster) {
		if !sleepCtx(ctx, sz.duration*4/10) {
			return
		}
		o := c.beginOutage("PostgreSQL restart")
		if err := c.pgsrv.stop(); err != nil {
			t.Errorf("stop postgres: %v", err)
		}
		time.Sleep(3 * time.Second)
		if err := c.pgsrv.start(); err != nil {
			t.Errorf("start postgres: %v", err)
		}
		c.endOutage(o)
	}
	return sc
}

// workerFreeze SIGSTOPs a worker for longer than the lock TTL while it waits
// on a slow PG, then SIGCONTs it: its lock has passed to another worker, and
// only the version fence stops it overwriting state when it wakes.
func workerFreeze(sz size) scenario {
	sc := sz.base("4 worker SIGSTOP > lock TTL")
	sc.env = map[string]string{"PAYRAIL_LOCK_TTL": "3s", "PAYRAIL_PG_TIMEOUT": "2s"}
	sc.faults = mockpg.Faults{LatencyMS: 700}
	freeze := 5 * time.Second
	if sz.full {
		freeze = 8 * time.Second
	}
	sc.inject = func(ctx context.Context, t *testing.T, c *cluster) {
		for i := 0; sleepCtx(ctx, sz.duration/8); i++ {
			w := c.workers[i%len(c.workers)]
			t.Logf("%s: SIGSTOP %s for %s", time.Now().Format("15:04:05.000"), w.name, freeze)
			w.signal(syscall.SIGSTOP)
			time.Sleep(freeze)
			w.signal(syscall.SIGCONT)
			if !sz.full && i >= 1 {
				return
			}
		}
	}
	return sc
}

// flakyPG makes mockpg answer 30 % 5xx, 10 % timeouts, 5 % approved but the
// answer lost, and duplicate and reorder its webhooks.
func flakyPG(sz size) scenario {
	sc := sz.base("5 mockpg faults")
	sc.faults = mockpg.Faults{Error5xxRate: 0.30, TimeoutRate: 0.10, AnswerLostRate: 0.05,
		WebhookDuplicateRate: 0.3, WebhookReorderRate: 0.3, TimeoutMS: 3000}
	sc.vaShare = 0.2 // DEPOSIT_CALLBACKs duplicated and reordered too
	return sc
}

// merchantDown answers 503 at the merchant's callback endpoint for the first
// half of the run; the callback schedule is scaled down (callbackSched).
func merchantDown(sz size) scenario {
	sc := sz.base("6 merchant endpoint down")
	sc.inject = func(ctx context.Context, t *testing.T, c *cluster) {
		c.sink.setDownUntil(time.Now().Add(sz.duration / 2))
	}
	return sc
}

// network puts toxiproxy between the workers and PostgreSQL, Redis and
// mockpg, and adds latency, then resets, then hangs.
func network(sz size) scenario {
	sc := sz.base("7 network faults (toxiproxy)")
	sc.setup = func(t *testing.T, c *cluster) {
		c.toxi = newToxi(t)
		c.workerEnv["PAYRAIL_DATABASE_URL"] = withHost(c.dbURL, c.toxi.add(t, "postgres", hostPort(t, c.dbURL)))
		c.workerEnv["PAYRAIL_REDIS_URL"] = withHost(c.redisURL, c.toxi.add(t, "redis", hostPort(t, c.redisURL)))
		c.workerEnv["PAYRAIL_PG_BASE_URL"] = withHost(c.pgURL, c.toxi.add(t, "mockpg", hostPort(t, c.pgURL)))
	}
	step := sz.duration / 6
	sc.inject = func(ctx context.Context, t *testing.T, c *cluster) {
		defer c.toxi.clear()
		phase := func(what string, d time.Duration, toxics map[string][]string) bool {
			t.Logf("%s: %s for %s", time.Now().Format("15:04:05.000"), what, d)
			for proxy, specs := range toxics {
				for _, s := range specs {
					if err := c.toxi.toxic(proxy, s); err != nil {
						t.Errorf("toxic %s on %s: %v", s, proxy, err)
					}
				}
			}
			ok := sleepCtx(ctx, d)
			c.toxi.clear()
			return ok && sleepCtx(ctx, step/2)
		}
		lat := []string{
			`{"name":"lat_down","type":"latency","stream":"downstream","attributes":{"latency":150,"jitter":50}}`,
			`{"name":"lat_up","type":"latency","stream":"upstream","attributes":{"latency":50,"jitter":20}}`,
		}
		reset := []string{`{"name":"reset","type":"reset_peer","stream":"downstream","toxicity":0.5,"attributes":{"timeout":100}}`}
		hang := []string{`{"name":"hang","type":"timeout","stream":"downstream","attributes":{"timeout":1500}}`}
		if !sleepCtx(ctx, step/2) {
			return
		}
		_ = phase("latency on PostgreSQL, Redis and mockpg", step, map[string][]string{"postgres": lat, "redis": lat, "mockpg": lat}) &&
			phase("reset_peer on Redis", step/2, map[string][]string{"redis": reset}) &&
			phase("reset_peer on PostgreSQL", step/2, map[string][]string{"postgres": reset}) &&
			phase("timeout on mockpg", step/2, map[string][]string{"mockpg": hang}) &&
			phase("timeout on PostgreSQL and Redis", step/3, map[string][]string{"postgres": hang, "redis": hang})
	}
	return sc
}

// hungNeighbour adds a second merchant whose endpoint hangs 10 s on every
// request (payrail's callback timeout is the production 10 s), with a
// backlog of callbacks, while the load's merchant pays: the load's
// callbacks must still arrive within 2 s of PAID.
func hungNeighbour(sz size) scenario {
	sc := sz.base("8 neighbour's endpoint hangs")
	sc.env = map[string]string{"PAYRAIL_CALLBACK_TIMEOUT": "10s"}
	sc.callbackWithin = 2 * time.Second
	backlog := 500
	if sz.full {
		backlog = 5000
	}
	sc.inject = func(ctx context.Context, t *testing.T, c *cluster) {
		release := make(chan struct{})
		hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(10 * time.Second):
			case <-r.Context().Done():
			case <-release:
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		// Cleanup order: release hung handlers before Close waits for them.
		t.Cleanup(hung.Close)
		t.Cleanup(func() { close(release) })
		n := c.createMerchant("Hung Shop", hung.URL+"/callbacks")
		c.outMu.Lock()
		c.others = append(c.others, n.MerchantID)
		c.outMu.Unlock()
		// The backlog rides on one of the load's orders (callbacks only
		// reference an order); its event type is not one the checks read.
		var orderID string
		for orderID == "" {
			if !sleepCtx(ctx, 200*time.Millisecond) {
				return
			}
			_ = c.db.GetContext(ctx, &orderID, `SELECT order_id FROM orders ORDER BY created_at LIMIT 1`)
		}
		if _, err := c.db.ExecContext(ctx, `INSERT INTO callbacks (callback_id, merchant_id, order_id, event_type, payload)
SELECT 'msg_hung_' || g, $1, $2, 'payment.backlog', '{"type":"payment.backlog"}' FROM generate_series(1, $3) g`, n.MerchantID, orderID, backlog); err != nil {
			t.Errorf("hung merchant's backlog: %v", err)
			return
		}
		t.Logf("%s: %d callbacks pending for a merchant whose endpoint hangs 10 s", time.Now().Format("15:04:05.000"), backlog)
	}
	return sc
}

// sentinelFailover SIGKILLs the Redis master under load (Sentinel: one
// master, one replica, three sentinels): asynq's and redsync's failover
// clients must find the promoted replica; tasks the old master took but
// never replicated are recovered from PostgreSQL by the sweep, and a lock
// lost with it is covered by the version fence. The old master then comes
// back and Sentinel makes it a replica.
func sentinelFailover(sz size) scenario {
	sc := sz.base("9 Redis Sentinel: master SIGKILL")
	sc.topology = "sentinel"
	sc.faults = mockpg.Faults{LatencyMS: 200} // confirms hold their locks across the kill
	sc.vaShare = 0.2
	sc.inject = func(ctx context.Context, t *testing.T, c *cluster) {
		if !sleepCtx(ctx, sz.duration*4/10) {
			return
		}
		old, err := c.sentinel.CurrentMaster(context.Background())
		if err != nil {
			t.Errorf("current master: %v", err)
			return
		}
		o := c.beginOutage("Redis master SIGKILL, Sentinel failover")
		c.failoverAt = time.Now()
		c.sentinel.Master.Kill()
		nm, err := c.sentinel.WaitMasterOtherThan(context.Background(), old, time.Minute)
		c.promoted = time.Since(c.failoverAt)
		c.endOutage(o)
		if err != nil {
			t.Errorf("sentinel failover: %v", err)
			return
		}
		t.Logf("%s: Sentinel promoted %s after %s", time.Now().Format("15:04:05.000"), nm, c.promoted.Round(time.Millisecond))
		if !sleepCtx(ctx, 3*time.Second) {
			return
		}
		if err := c.sentinel.Master.Start(); err != nil {
			t.Errorf("restart the old master: %v", err)
		}
	}
	return sc
}

// clusterFailover SIGKILLs one of a Redis Cluster's three masters under
// load: its replica takes its slots over (cluster-node-timeout 1 s), the
// cluster client follows the MOVED answers, and the node comes back as a
// replica.
func clusterFailover(sz size) scenario {
	sc := sz.base("10 Redis Cluster: a master SIGKILL")
	sc.topology = "cluster"
	sc.faults = mockpg.Faults{LatencyMS: 200}
	sc.vaShare = 0.2
	sc.inject = func(ctx context.Context, t *testing.T, c *cluster) {
		if !sleepCtx(ctx, sz.duration*4/10) {
			return
		}
		masters := c.rcluster.Masters(context.Background())
		if len(masters) != 3 {
			t.Errorf("cluster has %d masters, want 3", len(masters))
			return
		}
		victim := masters[0]
		o := c.beginOutage("Redis Cluster master " + victim.Addr() + " SIGKILL")
		c.failoverAt = time.Now()
		victim.Kill()
		err := c.rcluster.WaitOK(context.Background(), time.Minute)
		c.promoted = time.Since(c.failoverAt)
		c.endOutage(o)
		if err != nil {
			t.Errorf("cluster failover: %v", err)
			return
		}
		t.Logf("%s: the cluster serves every slot again after %s", time.Now().Format("15:04:05.000"), c.promoted.Round(time.Millisecond))
		if !sleepCtx(ctx, 3*time.Second) {
			return
		}
		if err := victim.Start(); err != nil {
			t.Errorf("restart %s: %v", victim.Addr(), err)
		}
	}
	return sc
}

// postgresPromote crashes the PostgreSQL primary under load and promotes
// its synchronous streaming replica; PgBouncer (transaction mode) is the
// address every process uses, and is pointed at the new primary. No commit
// payrail answered for may be lost, nothing charged twice.
func postgresPromote(sz size) scenario {
	sc := sz.base("11 PostgreSQL primary crash + replica promote")
	sc.pgReplica = true
	sc.faults = mockpg.Faults{LatencyMS: 200}
	sc.vaShare = 0.2
	sc.inject = func(ctx context.Context, t *testing.T, c *cluster) {
		if !sleepCtx(ctx, sz.duration*4/10) {
			return
		}
		o := c.beginOutage("PostgreSQL primary crash, promote")
		c.failoverAt = time.Now()
		if err := c.pgsrv.crash(); err != nil {
			t.Errorf("crash primary: %v", err)
		}
		if err := c.pgReplica.promote(); err != nil {
			t.Errorf("promote: %v", err)
		}
		if err := c.bouncer.Retarget(c.pgReplica.addr()); err != nil {
			t.Errorf("retarget pgbouncer: %v", err)
		}
		c.promoted = time.Since(c.failoverAt)
		c.endOutage(o)
		t.Logf("%s: replica promoted and PgBouncer pointed at it after %s", time.Now().Format("15:04:05.000"), c.promoted.Round(time.Millisecond))
	}
	return sc
}

// runAll runs the scenarios one after another and prints the table.
func runAll(t *testing.T, scs ...scenario) {
	t.Cleanup(func() { printTable(t) })
	for _, sc := range scs {
		t.Run(sc.name, func(t *testing.T) { run(t, sc) })
	}
}
