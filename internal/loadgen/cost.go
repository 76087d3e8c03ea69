package loadgen

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// clockTicks is USER_HZ, 100 on every Linux we run on.
const clockTicks = 100

// Proc names one monitored process; Group means it and its children
// (PostgreSQL: the postmaster and its backends).
type Proc struct {
	Name  string
	PID   int
	Group bool
}

// ProcsFromRun finds the pids of what `make up` started: .run/pids/*.pid,
// the postmaster in .run/pg/data/postmaster.pid, Redis in .run/redis/redis.pid.
// Missing ones are skipped (a PostgreSQL or Redis that was found running).
func ProcsFromRun(runDir string) []Proc {
	var out []Proc
	read := func(path string) int {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0
		}
		line, _, _ := strings.Cut(string(b), "\n")
		pid, _ := strconv.Atoi(strings.TrimSpace(line))
		if pid > 0 {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				return 0
			}
		}
		return pid
	}
	for _, n := range []string{"api", "worker", "mockpg"} {
		if pid := read(filepath.Join(runDir, "pids", n+".pid")); pid > 0 {
			out = append(out, Proc{Name: n, PID: pid})
		}
	}
	if pid := read(filepath.Join(runDir, "pg", "data", "postmaster.pid")); pid > 0 {
		out = append(out, Proc{Name: "postgres", PID: pid, Group: true})
	}
	if pid := read(filepath.Join(runDir, "redis", "redis.pid")); pid > 0 {
		out = append(out, Proc{Name: "redis", PID: pid})
	}
	return out
}

type procStat struct {
	ppid           int
	utime, stime   int64
	cutime, cstime int64
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procStat{}, false
	}
	n := func(k int) int64 { v, _ := strconv.ParseInt(f[k-3], 10, 64); return v }
	return procStat{ppid: int(n(4)), utime: n(14), stime: n(15), cutime: n(16), cstime: n(17)}, true
}

func readRSSKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(c); ok && st.ppid == pid {
			out = append(out, c)
		}
	}
	return out
}

// cpuTicks is a process's CPU so far: its own plus its reaped children's,
// plus (for a group) its live children's, so backends that come and go
// between two samples are counted once.
func cpuTicks(p Proc) (ticks, rssKiB int64) {
	st, ok := readStat(p.PID)
	if !ok {
		return 0, 0
	}
	ticks = st.utime + st.stime + st.cutime + st.cstime
	rssKiB = readRSSKiB(p.PID)
	if p.Group {
		for _, c := range children(p.PID) {
			if cs, ok := readStat(c); ok {
				ticks += cs.utime + cs.stime
				rssKiB += readRSSKiB(c)
			}
		}
	}
	return ticks, rssKiB
}

// ProcCost is one process's share of a phase.
type ProcCost struct {
	CPUSeconds float64 `json:"cpuSeconds"`
	// CPUSecondsPer1k is CPU seconds per 1,000 payments.
	CPUSecondsPer1k float64 `json:"cpuSecondsPer1k"`
	// PeakRSSMiB is the highest resident set sampled (every 250 ms) during
	// the phase; for PostgreSQL the sum over postmaster and backends, which
	// counts shared buffers once per backend that touched them.
	PeakRSSMiB float64 `json:"peakRssMiB"`
}

// Cost is what a phase cost the servers.
type Cost struct {
	Payments int                 `json:"payments"`
	Procs    map[string]ProcCost `json:"procs"`
	// CPUMsPerPayment sums api, worker, postgres and redis (mockpg, the
	// stand-in PG, and the load generator itself are left out).
	CPUMsPerPayment float64 `json:"cpuMsPerPayment"`
	DB              DBCost  `json:"db"`
	// RedisCommandsPerPayment is the INFO total_commands_processed delta.
	RedisCommandsPerPayment float64 `json:"redisCommandsPerPayment"`
	// RedisByCommand is the INFO commandstats delta per payment, by command.
	RedisByCommand map[string]float64 `json:"redisByCommand,omitempty"`
}

// DBCost is the pg_stat_database (and, when loaded, pg_stat_statements)
// delta per payment.
type DBCost struct {
	XactCommitPerPayment   float64 `json:"xactCommitPerPayment"`
	XactRollbackPerPayment float64 `json:"xactRollbackPerPayment"`
	TupInsertedPerPayment  float64 `json:"tupInsertedPerPayment"`
	TupUpdatedPerPayment   float64 `json:"tupUpdatedPerPayment"`
	TupFetchedPerPayment   float64 `json:"tupFetchedPerPayment"`
	// WALSyncsPerPayment is pg_stat_wal's wal_sync (the WAL flushes to disk
	// a durable commit waits for, server-wide) and WALRecordsPerPayment its
	// records; -1 when PostgreSQL has no pg_stat_wal (before 14).
	WALSyncsPerPayment   float64 `json:"walSyncsPerPayment"`
	WALRecordsPerPayment float64 `json:"walRecordsPerPayment"`
	// StatementsPerPayment is from pg_stat_statements; -1 when it is not
	// loaded (it needs shared_preload_libraries).
	StatementsPerPayment float64 `json:"statementsPerPayment"`
	// Statements are pg_stat_statements' busiest statements of the phase,
	// most calls first.
	Statements []StatementCost `json:"statements,omitempty"`
}

// StatementCost is one statement's share of a payment.
type StatementCost struct {
	Query           string  `json:"query"`
	CallsPerPayment float64 `json:"callsPerPayment"`
	MsPerPayment    float64 `json:"msPerPayment"`
}

type stmtSnap struct {
	calls int64
	ms    float64
	query string
}

type dbSnap struct {
	commit, rollback, ins, upd, fetch, stmts int64
	walSync, walRecords                      int64
	walOK                                    bool
	byQuery                                  map[int64]stmtSnap
}

// Meter samples processes, PostgreSQL and Redis over one phase.
type Meter struct {
	Procs []Proc
	DB    *sql.DB
	Redis *redis.Client

	start   map[string]int64
	peak    map[string]int64
	db0     dbSnap
	redis0  int64
	cmds0   map[string]int64
	stmtsOK bool
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
}

// Start takes the first sample and begins sampling RSS.
func (m *Meter) Start(ctx context.Context) {
	m.start, m.peak = map[string]int64{}, map[string]int64{}
	for _, p := range m.Procs {
		t, r := cpuTicks(p)
		m.start[p.Name], m.peak[p.Name] = t, r
	}
	m.db0, m.stmtsOK = m.dbSnap(ctx)
	m.redis0 = m.redisCommands(ctx)
	m.cmds0 = m.redisCommandStats(ctx)
	m.stop = make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				for _, p := range m.Procs {
					_, r := cpuTicks(p)
					m.mu.Lock()
					m.peak[p.Name] = max(m.peak[p.Name], r)
					m.mu.Unlock()
				}
			}
		}
	}()
}

// Stop takes the last sample and returns the cost of payments payments.
func (m *Meter) Stop(ctx context.Context, payments int) *Cost {
	close(m.stop)
	m.wg.Wait()
	// Backends report their counters to pg_stat at most once a second.
	time.Sleep(1100 * time.Millisecond)
	c := &Cost{Payments: payments, Procs: map[string]ProcCost{}}
	per := float64(max(payments, 1))
	var total float64
	for _, p := range m.Procs {
		t, _ := cpuTicks(p)
		cpu := float64(t-m.start[p.Name]) / clockTicks
		c.Procs[p.Name] = ProcCost{CPUSeconds: cpu, CPUSecondsPer1k: cpu * 1000 / per, PeakRSSMiB: float64(m.peak[p.Name]) / 1024}
		if p.Name != "mockpg" {
			total += cpu
		}
	}
	c.CPUMsPerPayment = total * 1000 / per
	d1, ok := m.dbSnap(ctx)
	d0 := m.db0
	c.DB = DBCost{
		XactCommitPerPayment:   float64(d1.commit-d0.commit) / per,
		XactRollbackPerPayment: float64(d1.rollback-d0.rollback) / per,
		TupInsertedPerPayment:  float64(d1.ins-d0.ins) / per,
		TupUpdatedPerPayment:   float64(d1.upd-d0.upd) / per,
		TupFetchedPerPayment:   float64(d1.fetch-d0.fetch) / per,
		StatementsPerPayment:   -1,
		WALSyncsPerPayment:     -1,
		WALRecordsPerPayment:   -1,
	}
	if d0.walOK && d1.walOK {
		c.DB.WALSyncsPerPayment = float64(d1.walSync-d0.walSync) / per
		c.DB.WALRecordsPerPayment = float64(d1.walRecords-d0.walRecords) / per
	}
	if ok && m.stmtsOK {
		c.DB.StatementsPerPayment = float64(d1.stmts-d0.stmts) / per

		for id, q := range d1.byQuery {
			p := d0.byQuery[id]
			if calls := q.calls - p.calls; calls > 0 {
				c.DB.Statements = append(c.DB.Statements, StatementCost{Query: q.query, CallsPerPayment: float64(calls) / per, MsPerPayment: (q.ms - p.ms) / per})
			}
		}
		slices.SortFunc(c.DB.Statements, func(a, b StatementCost) int { return cmp.Compare(b.CallsPerPayment, a.CallsPerPayment) })
		c.DB.Statements = c.DB.Statements[:min(len(c.DB.Statements), 25)]
	}
	c.RedisCommandsPerPayment = float64(m.redisCommands(ctx)-m.redis0) / per
	if cmds := m.redisCommandStats(ctx); len(cmds) > 0 {
		c.RedisByCommand = map[string]float64{}
		for k, v := range cmds {
			if d := v - m.cmds0[k]; d > 0 {
				c.RedisByCommand[k] = float64(d) / per
			}
		}
	}
	return c
}

// redisCommandStats is INFO commandstats: calls by command.
func (m *Meter) redisCommandStats(ctx context.Context) map[string]int64 {
	if m.Redis == nil {
		return nil
	}
	info, err := m.Redis.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[name] = n
			}
		}
	}
	return out
}

func (m *Meter) dbSnap(ctx context.Context) (dbSnap, bool) {
	var s dbSnap
	if m.DB == nil {
		return s, false
	}
	_ = m.DB.QueryRowContext(ctx, `SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_fetched
FROM pg_stat_database WHERE datname = current_database()`).Scan(&s.commit, &s.rollback, &s.ins, &s.upd, &s.fetch)
	s.walOK = m.DB.QueryRowContext(ctx, `SELECT wal_sync, wal_records FROM pg_stat_wal`).Scan(&s.walSync, &s.walRecords) == nil
	err := m.DB.QueryRowContext(ctx, `SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&s.stmts)
	if err != nil {
		return s, false
	}
	rows, err := m.DB.QueryContext(ctx, `SELECT queryid, calls, total_exec_time, left(regexp_replace(query, '\s+', ' ', 'g'), 160)
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL`)
	if err != nil {
		return s, false
	}
	defer rows.Close()
	s.byQuery = map[int64]stmtSnap{}
	for rows.Next() {
		var id int64
		var q stmtSnap
		if rows.Scan(&id, &q.calls, &q.ms, &q.query) == nil {
			s.byQuery[id] = q
		}
	}
	return s, rows.Err() == nil
}

func (m *Meter) redisCommands(ctx context.Context) int64 {
	if m.Redis == nil {
		return 0
	}
	info, err := m.Redis.Info(ctx, "stats").Result()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}
