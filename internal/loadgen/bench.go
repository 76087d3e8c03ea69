package loadgen

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"
)

// BenchConfig is what `make bench` runs: cmd/loadgen fills it from its flags.
type BenchConfig struct {
	N                int
	Sweep            []int
	Rate             float64
	OpenSeconds      float64
	WaitEvery        int
	CeilingN         int
	CeilingConns     int
	AsynqConc        int
	AsynqDB          int
	Growth           bool
	GrowthRows       int
	GrowthRecon      bool
	GrowthConc       int
	KeepSeed         bool
	Slow             bool
	SlowLatencyMs    int
	SlowConc         []int
	SlowN            int
	CallbackTimeout  time.Duration
	Out              string
	RunDir           string
	Progress         bool
	Note             string
	Only             map[string]bool
	Neighbor         bool
	NeighborSeconds  float64
	NeighborRate     float64
	NeighborLimit    int
	NeighborFactor   float64
	NeighborInFlight int
	Dead             bool
	DeadPending      int
	DeadSeconds      float64
	DeadQuiet        float64
	DeadRate         float64
	// VAShare of the closed and open BenchPhases' payments are 가상계좌 (-method).
	VAShare      float64
	DepositDelay time.Duration
	// IdleSeconds is how long the idle phase watches the processes with
	// nothing to do (0 skips it).
	IdleSeconds float64
}

// BenchPhases are the -only names, in run order.
var BenchPhases = []string{"idle", "closed", "open", "ceiling", "growth", "slow", "neighbor", "dead"}

// want reports whether a phase runs: -only lists it, or -only is empty.
func (c BenchConfig) want(phase string) bool { return len(c.Only) == 0 || c.Only[phase] }

// Report is bench/results/<date>.json.
type Report struct {
	Date    string `json:"date"`
	Machine struct {
		CPUs   int    `json:"cpus"`
		MemGiB int    `json:"memGiB"`
		Go     string `json:"go"`
		Note   string `json:"note,omitempty"`
	} `json:"machine"`
	Flags        []string      `json:"flags"`
	OrdersBefore int64         `json:"ordersBefore"`
	Closed       []Result      `json:"closed"`
	Open         *Result       `json:"open,omitempty"`
	MaxClosed    float64       `json:"maxClosedPaymentsPerSec"`
	SQLCeiling   *SQLCeiling   `json:"sqlCeiling,omitempty"`
	AsynqCeiling *AsynqCeiling `json:"asynqCeiling,omitempty"`
	// CeilingPerSec is min(SQL payments/s, asynq tasks/s ÷ TasksPerPayment).
	CeilingPerSec   float64 `json:"ceilingPaymentsPerSec,omitempty"`
	TasksPerPayment int     `json:"tasksPerPayment"`
	Efficiency      float64 `json:"efficiency,omitempty"`
	// MinimalCeiling is the minimal durable path (four commits per payment,
	// issue 19) on the same database; EfficiencyMinimal = MaxClosed ÷ it.
	MinimalCeiling    *MinimalCeiling `json:"minimalCeiling,omitempty"`
	EfficiencyMinimal float64         `json:"efficiencyMinimal,omitempty"`
	Growth            *Growth         `json:"growth,omitempty"`
	Slow              *Slow           `json:"slowPG,omitempty"`
	Neighbor          *Neighbor       `json:"neighbor,omitempty"`
	DeadEndpoint      *DeadEndpoint   `json:"deadEndpoint,omitempty"`
	Sink              SinkStats       `json:"sink"`
	Problems          []string        `json:"problems,omitempty"`
	// Idle is each process's CPU with no load, in % of one core, and
	// IdleRedisCommandsPerSec what Redis served meanwhile.
	Idle                    map[string]float64 `json:"idlePercentOfCore,omitempty"`
	IdleRedisCommandsPerSec float64            `json:"idleRedisCommandsPerSec,omitempty"`
}

// Growth is the same load on a table with many pre-existing orders.
type Growth struct {
	Rows        int     `json:"rows"`
	SeedSeconds float64 `json:"seedSeconds"`
	Closed      Result  `json:"closed"`
	Open        *Result `json:"open,omitempty"`
	// ClosedChange is (growth − empty) ÷ empty payments/s at the same concurrency.
	ClosedChange  float64 `json:"closedChange"`
	OpenP99Change float64 `json:"openIngressP99Change,omitempty"`
	Explain       []Plan  `json:"explain"`
	// Recon reconciles the seeded orders against a mockpg seeded with
	// their approvals (issue 15's figure: rows/s and the worker's peak RSS).
	Recon *ReconResult `json:"recon,omitempty"`
}

// Slow is throughput against a PG with added latency at several worker concurrencies.
type Slow struct {
	LatencyMs int         `json:"latencyMs"`
	Levels    []SlowLevel `json:"levels"`
}

// SlowLevel is one worker concurrency.
type SlowLevel struct {
	WorkerConcurrency int    `json:"workerConcurrency"`
	Result            Result `json:"result"`
	// Bound is workerConcurrency ÷ latency: what the worker can confirm if
	// every slot waits on the PG.
	Bound float64 `json:"boundPerSec"`
}

// Bench runs cfg's phases against the payrail that getenv describes (make
// up's .run/env), prints the table to stdout and saves the JSON report; args
// are recorded in it. It fails when any phase found a problem.
func Bench(ctx context.Context, cfg BenchConfig, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var err error
	var prog io.Writer
	if cfg.Progress {
		prog = stderr
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "==> "+format+"\n", a...) }
	need := func(k string) (string, error) {
		v := getenv(k)
		if v == "" {
			return "", fmt.Errorf("%s is not set and not in .run/env: run `make up` first", k)
		}
		return v, nil
	}
	var t Target
	if t.APIURL, err = need("PAYRAIL_API_URL"); err != nil {
		return err
	}
	if t.AdminToken, err = need("PAYRAIL_ADMIN_TOKEN"); err != nil {
		return err
	}
	if t.MockPGURL, err = need("MOCKPG_URL"); err != nil {
		return err
	}
	dbURL, err := need("PAYRAIL_DATABASE_URL")
	if err != nil {
		return err
	}
	redisURL, err := need("PAYRAIL_REDIS_URL")
	if err != nil {
		return err
	}
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(4)
	ropt, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("PAYRAIL_REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(ropt)
	defer rdb.Close()

	sink, err := NewSink()
	if err != nil {
		return err
	}
	defer sink.Close()
	c := &Client{T: t, HTTP: NewHTTPClient()}
	if c.M, err = c.CreateMerchant(ctx, "loadgen "+time.Now().Format(time.RFC3339), sink.URL()); err != nil {
		return err
	}
	if err := sink.AddSecret(c.M.CallbackSecret); err != nil {
		return err
	}
	logf("merchant %s, callbacks to %s", c.M.MerchantID, sink.URL())

	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), Flags: args, TasksPerPayment: 3}
	rep.Machine.CPUs = runtime.NumCPU()
	rep.Machine.MemGiB = memGiB()
	rep.Machine.Go = runtime.Version()
	rep.Machine.Note = cfg.Note
	rep.OrdersBefore, _ = CountOrders(ctx, db)
	// Pids are read per phase: the slow-PG phase restarts the worker.
	meter := func() *Meter {
		return &Meter{Procs: ProcsFromRun(cfg.RunDir), DB: db, Redis: rdb}
	}
	phase := func(o Options) Result {
		o.Progress, o.CallbackTimeout = prog, cfg.CallbackTimeout
		m := meter()
		m.Start(ctx)
		r := Run(ctx, c, sink, o)
		r.Cost = m.Stop(ctx, r.Delivered)
		if err := Check(r, SinkStats{}); err != nil {
			rep.Problems = append(rep.Problems, r.Name+": "+err.Error())
		}
		return r
	}

	// 0. Idle: what the processes cost with nothing to do (issue 19).
	if cfg.IdleSeconds > 0 && cfg.want("idle") {
		logf("idle: watching the processes for %.0f s with no load", cfg.IdleSeconds)
		m := meter()
		m.Start(ctx)
		start := time.Now()
		select {
		case <-time.After(time.Duration(cfg.IdleSeconds * float64(time.Second))):
		case <-ctx.Done():
			return ctx.Err()
		}
		c := m.Stop(ctx, 1)
		secs := time.Since(start).Seconds()
		rep.Idle = map[string]float64{}
		for name, p := range c.Procs {
			rep.Idle[name] = 100 * p.CPUSeconds / secs
		}
		rep.IdleRedisCommandsPerSec = c.RedisCommandsPerPayment / secs
	}

	// 1. Closed loop sweep.
	for _, conc := range cfg.Sweep {
		if !cfg.want("closed") {
			break
		}
		r := phase(Options{Name: fmt.Sprintf("closed c=%d", conc), N: cfg.N, Concurrency: conc,
			VirtualAccountShare: cfg.VAShare, DepositDelay: cfg.DepositDelay})
		rep.Closed = append(rep.Closed, r)
		rep.MaxClosed = max(rep.MaxClosed, r.PaymentsPerSec)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	// 2. Open loop: latency at 50 % of the closed-loop maximum.
	rate := cfg.Rate
	if rate <= 0 {
		rate = max(1, rep.MaxClosed/2)
	}
	if rep.MaxClosed == 0 && cfg.Rate <= 0 {
		rate = 100 // no closed loop ran to size it
	}
	openN := max(10, int(rate*cfg.OpenSeconds))
	if cfg.want("open") {
		open := phase(Options{Name: fmt.Sprintf("open %.0f/s", rate), N: openN, Rate: rate, WaitEvery: cfg.WaitEvery,
			VirtualAccountShare: cfg.VAShare, DepositDelay: cfg.DepositDelay})
		rep.Open = &open
	}

	// 3. Ceiling on the same servers.
	if cfg.CeilingN > 0 && cfg.want("ceiling") {
		p := StartProgress(prog, "ceiling: SQL", cfg.CeilingN)
		// The ceilings open their pools as the api and worker open theirs.
		cache := getenv("PAYRAIL_DB_STATEMENT_CACHE") == "true" || getenv("PAYRAIL_DB_STATEMENT_CACHE") == "1"
		sc, err := RunSQLCeiling(ctx, dbURL, cfg.CeilingN, cfg.CeilingConns, cfg.CeilingConns, cache, p)
		p.Stop()
		if err != nil {
			rep.Problems = append(rep.Problems, "sql ceiling: "+err.Error())
		} else {
			rep.SQLCeiling = &sc
		}
		p = StartProgress(prog, "ceiling: minimal durable path", cfg.CeilingN)
		mc, err := RunMinimalCeiling(ctx, dbURL, cfg.CeilingN, cfg.CeilingConns, cache, p)
		p.Stop()
		if err != nil {
			rep.Problems = append(rep.Problems, "minimal ceiling: "+err.Error())
		} else {
			rep.MinimalCeiling = &mc
			if rep.MaxClosed > 0 {
				rep.EfficiencyMinimal = rep.MaxClosed / mc.PaymentsPerSec
			}
		}
		tasks := cfg.CeilingN * rep.TasksPerPayment
		p = StartProgress(prog, "ceiling: asynq no-op", tasks)
		adb := cfg.AsynqDB
		if adb == 0 {
			adb = lastRedisDB(ctx, rdb)
		}
		ac, err := RunAsynqCeiling(ctx, ropt, adb, tasks, cfg.CeilingConns, cfg.AsynqConc, p)
		p.Stop()
		if err != nil {
			rep.Problems = append(rep.Problems, "asynq ceiling: "+err.Error())
		} else {
			rep.AsynqCeiling = &ac
		}
		if rep.SQLCeiling != nil && rep.AsynqCeiling != nil {
			rep.CeilingPerSec = min(rep.SQLCeiling.PaymentsPerSec, rep.AsynqCeiling.TasksPerSec/float64(rep.TasksPerPayment))
			rep.Efficiency = rep.MaxClosed / rep.CeilingPerSec
		}
	}

	// 4. Growth: the same load over a big orders table.
	if cfg.Growth && cfg.want("growth") && rep.Open != nil {
		g, err := growth(ctx, cfg, db, c, rep, phase, rate, logf)
		if err != nil {
			rep.Problems = append(rep.Problems, "growth: "+err.Error())
		}
		rep.Growth = g
	}

	// 5. Slow PG.
	if cfg.Slow && cfg.want("slow") {
		s, err := slowPG(ctx, cfg, c, ropt, phase, logf)
		if err != nil {
			rep.Problems = append(rep.Problems, "slow PG: "+err.Error())
		}
		rep.Slow = s
	}

	// 6. Neighbor: a flooding merchant beside a quiet one.
	if cfg.Neighbor && cfg.want("neighbor") {
		logf("neighbor: B at %.0f/s alone for %.0f s, then beside A flooding at %.0f× its limit of %d/s", cfg.NeighborRate, cfg.NeighborSeconds, cfg.NeighborFactor, cfg.NeighborLimit)
		n, err := RunNeighbor(ctx, t, sink, NeighborOptions{Seconds: cfg.NeighborSeconds, QuietRate: cfg.NeighborRate,
			Limit: cfg.NeighborLimit, Factor: cfg.NeighborFactor, MaxInFlight: cfg.NeighborInFlight, Callback: cfg.CallbackTimeout, Progress: prog})
		if err != nil {
			rep.Problems = append(rep.Problems, "neighbor: "+err.Error())
		} else {
			rep.Neighbor = n
			rep.Problems = append(rep.Problems, neighborProblems(n)...)
		}
	}

	// 7. Dead endpoint: a merchant whose endpoint refuses, with a backlog.
	if cfg.Dead && cfg.want("dead") {
		var worker Proc
		for _, p := range ProcsFromRun(cfg.RunDir) {
			if p.Name == "worker" {
				worker = p
			}
		}
		logf("dead endpoint: B at %.0f/s alone, then beside D (refusing, %d callbacks pending)", cfg.DeadRate, cfg.DeadPending)
		d, err := RunDeadEndpoint(ctx, t, sink, db, rdb, DeadOptions{Pending: cfg.DeadPending, Seconds: cfg.DeadSeconds,
			QuietSeconds: cfg.DeadQuiet, Rate: cfg.DeadRate, Callback: cfg.CallbackTimeout, Progress: prog, Worker: worker})
		if err != nil {
			rep.Problems = append(rep.Problems, "dead endpoint: "+err.Error())
		} else {
			rep.DeadEndpoint = d
			for _, r := range []Result{d.Alone, d.Beside} {
				if err := Check(r, SinkStats{}); err != nil {
					rep.Problems = append(rep.Problems, r.Name+": "+err.Error())
				}
			}
		}
	}

	time.Sleep(2 * time.Second) // a late duplicate would show here
	rep.Sink = sink.Stats()
	if err := Check(Result{}, rep.Sink); err != nil {
		rep.Problems = append(rep.Problems, "sink: "+err.Error())
	}
	out := cfg.Out
	if out == "" {
		out = filepath.Join("bench", "results", time.Now().Format("2006-01-02T15-04-05")+".json")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	PrintReport(stdout, rep)
	fmt.Fprintf(stdout, "\ncreates shed by payrail (503 OVERLOADED, retried after 200 ms): %d; refused 429 (admission control, retried after 200 ms): %d\nsaved %s\n", c.Shed.Load(), c.Limited.Load(), out)
	if len(rep.Problems) > 0 {
		return fmt.Errorf("%d problems (see above and %s)", len(rep.Problems), out)
	}
	return nil
}

// neighborProblems are the neighbor phase's correctness failures: a
// failed or undelivered payment of B, a 5xx for anyone, a lost callback of A.
func neighborProblems(n *Neighbor) []string {
	var out []string
	for _, r := range []Result{n.Alone, n.Beside} {
		if err := Check(r, SinkStats{}); err != nil {
			out = append(out, r.Name+": "+err.Error())
		}
	}
	f := n.Flood
	if f.Creates.S5xx+f.Confirms.S5xx > 0 {
		out = append(out, fmt.Sprintf("neighbor: A got %d 5xx on creates and %d on confirms", f.Creates.S5xx, f.Confirms.S5xx))
	}
	if f.Delivered != f.Accepted {
		out = append(out, fmt.Sprintf("neighbor: %d of A's %d accepted payments got no payment.paid", f.Accepted-f.Delivered, f.Accepted))
	}
	return out
}

func growth(ctx context.Context, cfg BenchConfig, db *sql.DB, c *Client, rep *Report, phase func(Options) Result, rate float64, logf func(string, ...any)) (*Growth, error) {
	g := &Growth{Rows: cfg.GrowthRows}
	logf("seeding %d orders under %s (INSERT … SELECT generate_series)", cfg.GrowthRows, SeedMerchant)
	d, err := Seed(ctx, db, cfg.GrowthRows)
	if err != nil {
		return g, err
	}
	g.SeedSeconds = d.Seconds()
	if !cfg.KeepSeed {
		defer func() {
			logf("removing the seeded orders")
			if err := Unseed(context.Background(), db); err != nil {
				logf("unseed: %v", err)
			}
		}()
	}
	g.Closed = phase(Options{Name: fmt.Sprintf("growth closed c=%d", cfg.GrowthConc), N: cfg.N, Concurrency: cfg.GrowthConc})
	for _, r := range rep.Closed {
		if r.Concurrency == cfg.GrowthConc && r.PaymentsPerSec > 0 {
			g.ClosedChange = (g.Closed.PaymentsPerSec - r.PaymentsPerSec) / r.PaymentsPerSec
		}
	}
	open := phase(Options{Name: fmt.Sprintf("growth open %.0f/s", rate), N: rep.Open.N, Rate: rate, WaitEvery: cfg.WaitEvery})
	g.Open = &open
	if p := rep.Open.ConfirmIngress.P99; p > 0 {
		g.OpenP99Change = (open.ConfirmIngress.P99 - p) / p
	}
	g.Explain, err = Explain(ctx, db, "seed_500000", SeedMerchant)
	if err != nil {
		return g, err
	}
	if cfg.GrowthRecon {
		rc, err := growthRecon(ctx, cfg, db, c, logf)
		g.Recon = rc
		if err != nil {
			rep.Problems = append(rep.Problems, "growth reconciliation: "+err.Error())
		}
	}
	return g, nil
}

func slowPG(ctx context.Context, cfg BenchConfig, c *Client, ropt *redis.Options, phase func(Options) Result, logf func(string, ...any)) (*Slow, error) {
	s := &Slow{LatencyMs: cfg.SlowLatencyMs}
	faults, err := c.Faults(ctx)
	if err != nil {
		return s, err
	}
	restoreFaults := func() {
		f := clone(faults)
		f["latencyMs"] = 0
		if err := c.SetFaults(context.Background(), f); err != nil {
			logf("restore mockpg faults: %v", err)
		}
	}
	slow := clone(faults)
	slow["latencyMs"] = cfg.SlowLatencyMs
	if err := c.SetFaults(ctx, slow); err != nil {
		return s, err
	}
	defer restoreFaults()
	defer func() {
		logf("restarting the worker with its usual environment")
		if err := RestartWorker(ctx, cfg.RunDir, nil, ropt); err != nil {
			logf("restart worker: %v", err)
		}
	}()
	for _, wc := range cfg.SlowConc {
		logf("restarting the worker with PAYRAIL_WORKER_CONCURRENCY=%d", wc)
		if err := RestartWorker(ctx, cfg.RunDir, map[string]string{"PAYRAIL_WORKER_CONCURRENCY": strconv.Itoa(wc)}, ropt); err != nil {
			return s, err
		}
		// Enough merchants in flight to fill every worker slot twice.
		r := phase(Options{Name: fmt.Sprintf("slow PG w=%d", wc), N: cfg.SlowN, Concurrency: max(64, 2*wc)})
		s.Levels = append(s.Levels, SlowLevel{WorkerConcurrency: wc, Result: r, Bound: float64(wc) * 1000 / float64(cfg.SlowLatencyMs)})
		if ctx.Err() != nil {
			return s, ctx.Err()
		}
	}
	return s, nil
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func lastRedisDB(ctx context.Context, rdb *redis.Client) int {
	if v, err := rdb.ConfigGet(ctx, "databases").Result(); err == nil {
		if n, err := strconv.Atoi(v["databases"]); err == nil && n > 1 {
			return n - 1
		}
	}
	return 15
}

func memGiB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return int((kb + 512*1024) / (1024 * 1024))
		}
	}
	return 0
}

// growthRecon seeds mockpg with the seeded orders' approvals and
// reconciles their whole window once, metering the processes.
func growthRecon(ctx context.Context, cfg BenchConfig, db *sql.DB, c *Client, logf func(string, ...any)) (*ReconResult, error) {
	logf("seeding mockpg's books with the seeded orders' approvals")
	start := time.Now()
	rows, from, to, err := SeedPGBooks(ctx, db, c)
	if err != nil {
		return nil, err
	}
	seeded := time.Since(start).Seconds()
	logf("reconciling %d approvals (%s–%s) with payrail's records", rows, from.Format(time.RFC3339), to.Format(time.RFC3339))
	m := &Meter{Procs: ProcsFromRun(cfg.RunDir), DB: db}
	m.Start(ctx)
	var w io.Writer
	if cfg.Progress {
		w = os.Stderr
	}
	res, err := RunRecon(ctx, c, from, to, w)
	res.Rows, res.SeedPGSeconds = rows, seeded
	res.Cost = m.Stop(ctx, rows)
	return &res, err
}
