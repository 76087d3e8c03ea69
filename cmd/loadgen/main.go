// Command loadgen is `make bench`: it drives the payrail that `make up`
// started (found through .run/env) with signed merchant traffic, receives the
// callbacks on its own sink, and prints and saves (bench/results/<date>.json)
// throughput, latency, the SQL/asynq ceiling on the same servers, cost per
// payment, growth with 1M orders and throughput against a slow PG.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/envfile"
	"github.com/payrail/payrail/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], envfile.Getenv(".run/env"), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type config struct {
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
	// VAShare of the closed and open phases' payments are 가상계좌 (-method).
	VAShare      float64
	DepositDelay time.Duration
}

// phases are the -only names, in run order.
var phases = []string{"closed", "open", "ceiling", "growth", "slow", "neighbor", "dead"}

// want reports whether a phase runs: -only lists it, or -only is empty.
func (c config) want(phase string) bool { return len(c.Only) == 0 || c.Only[phase] }

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "a quick run: -n 500, sweep 16,64, no growth, slow PG at 8,32 with 200 payments, smaller ceilings")
	fs.IntVar(&c.N, "n", 20000, "payments per closed-loop level")
	sweep := fs.String("sweep", "16,64,256", "closed-loop concurrency levels")
	fs.Float64Var(&c.Rate, "rate", 0, "open-loop offered rate, payments/s (0 = 50 % of the closed-loop maximum)")
	fs.Float64Var(&c.OpenSeconds, "open-seconds", 30, "open-loop duration")
	fs.IntVar(&c.WaitEvery, "wait-every", 10, "open loop: every k-th confirm sends Prefer: wait=10 (accepted → PAID sample)")
	fs.IntVar(&c.CeilingN, "ceiling-n", 5000, "payments of SQL (and 3× as many asynq no-op tasks) for the ceiling; 0 skips")
	fs.IntVar(&c.CeilingConns, "ceiling-conns", 40, "SQL ceiling connections (api + worker pools: 2 × PAYRAIL_DB_MAX_CONNS)")
	fs.IntVar(&c.AsynqConc, "asynq-concurrency", 20, "asynq ceiling server concurrency (PAYRAIL_WORKER_CONCURRENCY)")
	fs.IntVar(&c.AsynqDB, "asynq-db", 0, "Redis DB index for the asynq ceiling (0 = the server's last)")
	fs.BoolVar(&c.Growth, "growth", true, "rerun with -growth-rows pre-existing orders and EXPLAIN the hot queries")
	fs.IntVar(&c.GrowthRows, "growth-rows", 1_000_000, "orders seeded for the growth run")
	fs.IntVar(&c.GrowthConc, "growth-concurrency", 64, "closed-loop concurrency compared in the growth run")
	fs.BoolVar(&c.GrowthRecon, "growth-recon", true, "growth run: seed mockpg with the seeded orders' approvals and reconcile them all (time, rows/s, peak RSS)")
	fs.BoolVar(&c.KeepSeed, "keep-seed", false, "leave the seeded orders in place")
	fs.BoolVar(&c.Slow, "slow", true, "run the slow-PG phase (restarts the worker of make up)")
	fs.IntVar(&c.SlowLatencyMs, "slow-latency-ms", 200, "mockpg latency for the slow-PG phase")
	slowConc := fs.String("slow-worker-concurrency", "8,32,128", "worker concurrency levels for the slow-PG phase")
	fs.IntVar(&c.SlowN, "slow-n", 1000, "payments per slow-PG level")
	fs.DurationVar(&c.CallbackTimeout, "callback-timeout", 2*time.Minute, "how long to wait for the last callback of a phase")
	fs.StringVar(&c.Out, "out", "", "result file (default bench/results/<date>.json)")
	fs.StringVar(&c.RunDir, "run-dir", ".run", "make up's .run directory (pids, env)")
	fs.BoolVar(&c.Progress, "progress", true, "progress bar on stderr")
	fs.StringVar(&c.Note, "note", "", "free text saved with the result (e.g. what else ran on the machine)")
	only := fs.String("only", "", "run only these phases (comma list of "+strings.Join(phases, ",")+"); the other flags still shape them")
	fs.BoolVar(&c.Neighbor, "neighbor", true, "run the neighbor phase: merchant A floods at -neighbor-factor × its limit while B pays steadily")
	fs.Float64Var(&c.NeighborSeconds, "neighbor-seconds", 30, "neighbor: seconds of B alone, then as many beside A's flood")
	fs.Float64Var(&c.NeighborRate, "neighbor-quiet-rate", 10, "neighbor: B's payments/s (every confirm with Prefer: wait)")
	fs.IntVar(&c.NeighborLimit, "neighbor-limit", 100, "neighbor: A's rate limit per second (burst twice; DESIGN's default)")
	fs.Float64Var(&c.NeighborFactor, "neighbor-factor", 10, "neighbor: A offers this many times its limit")
	fs.IntVar(&c.NeighborInFlight, "neighbor-max-in-flight", 512, "neighbor: most of A's payments open at once (a tick finding them all open is counted as not started)")
	fs.BoolVar(&c.Dead, "dead", true, "run the dead-endpoint phase: merchant D's endpoint refuses with -dead-pending callbacks waiting")
	fs.IntVar(&c.DeadPending, "dead-pending", 50_000, "dead endpoint: D's pending callbacks")
	fs.Float64Var(&c.DeadSeconds, "dead-seconds", 30, "dead endpoint: seconds of B alone, then as many beside D")
	fs.Float64Var(&c.DeadQuiet, "dead-quiet-seconds", 20, "dead endpoint: seconds the worker's CPU is measured with only D's backlog (and idle before it)")
	fs.Float64Var(&c.DeadRate, "dead-rate", 10, "dead endpoint: B's payments/s")
	method := fs.String("method", "card", "payment methods of the closed and open phases: card, va (all 가상계좌), or mix=F (a share F of 가상계좌, e.g. mix=0.2)")
	fs.DurationVar(&c.DepositDelay, "deposit-delay", 500*time.Millisecond, "가상계좌: how long after the confirm's answer the buyer deposits")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch m := *method; {
	case m == "card" || m == "카드":
	case m == "va" || m == "가상계좌":
		c.VAShare = 1
	case strings.HasPrefix(m, "mix="):
		f, err := strconv.ParseFloat(strings.TrimPrefix(m, "mix="), 64)
		if err != nil || f < 0 || f > 1 {
			return c, fmt.Errorf("-method %s: the share must be between 0 and 1", m)
		}
		c.VAShare = f
	default:
		return c, fmt.Errorf("-method %q: want card, va or mix=F", m)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("n", func() { c.N = 500 })
		def("sweep", func() { *sweep = "16,64" })
		def("open-seconds", func() { c.OpenSeconds = 15 })
		def("ceiling-n", func() { c.CeilingN = 1000 })
		def("growth", func() { c.Growth = false })
		def("slow-worker-concurrency", func() { *slowConc = "8,32" })
		def("slow-n", func() { c.SlowN = 200 })
		def("neighbor-seconds", func() { c.NeighborSeconds = 15 })
		def("dead-seconds", func() { c.DeadSeconds = 15 })
		def("dead-quiet-seconds", func() { c.DeadQuiet = 10 })
	}
	if *only != "" {
		c.Only = map[string]bool{}
		for _, p := range strings.Split(*only, ",") {
			p = strings.TrimSpace(p)
			if !slices.Contains(phases, p) {
				return c, fmt.Errorf("-only: unknown phase %q (have %s)", p, strings.Join(phases, ","))
			}
			c.Only[p] = true
		}
	}
	var err error
	if c.Sweep, err = ints(*sweep); err != nil {
		return c, fmt.Errorf("-sweep: %w", err)
	}
	if c.SlowConc, err = ints(*slowConc); err != nil {
		return c, fmt.Errorf("-slow-worker-concurrency: %w", err)
	}
	if c.N <= 0 || len(c.Sweep) == 0 {
		return c, errors.New("-n and -sweep must be positive")
	}
	return c, nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// Report is bench/results/<date>.json.
type Report struct {
	Date    string `json:"date"`
	Machine struct {
		CPUs   int    `json:"cpus"`
		MemGiB int    `json:"memGiB"`
		Go     string `json:"go"`
		Note   string `json:"note,omitempty"`
	} `json:"machine"`
	Flags        []string              `json:"flags"`
	OrdersBefore int64                 `json:"ordersBefore"`
	Closed       []loadgen.Result      `json:"closed"`
	Open         *loadgen.Result       `json:"open,omitempty"`
	MaxClosed    float64               `json:"maxClosedPaymentsPerSec"`
	SQLCeiling   *loadgen.SQLCeiling   `json:"sqlCeiling,omitempty"`
	AsynqCeiling *loadgen.AsynqCeiling `json:"asynqCeiling,omitempty"`
	// CeilingPerSec is min(SQL payments/s, asynq tasks/s ÷ TasksPerPayment).
	CeilingPerSec   float64               `json:"ceilingPaymentsPerSec,omitempty"`
	TasksPerPayment int                   `json:"tasksPerPayment"`
	Efficiency      float64               `json:"efficiency,omitempty"`
	Growth          *Growth               `json:"growth,omitempty"`
	Slow            *Slow                 `json:"slowPG,omitempty"`
	Neighbor        *loadgen.Neighbor     `json:"neighbor,omitempty"`
	DeadEndpoint    *loadgen.DeadEndpoint `json:"deadEndpoint,omitempty"`
	Sink            loadgen.SinkStats     `json:"sink"`
	Problems        []string              `json:"problems,omitempty"`
}

// Growth is the same load on a table with many pre-existing orders.
type Growth struct {
	Rows        int             `json:"rows"`
	SeedSeconds float64         `json:"seedSeconds"`
	Closed      loadgen.Result  `json:"closed"`
	Open        *loadgen.Result `json:"open,omitempty"`
	// ClosedChange is (growth − empty) ÷ empty payments/s at the same concurrency.
	ClosedChange  float64        `json:"closedChange"`
	OpenP99Change float64        `json:"openIngressP99Change,omitempty"`
	Explain       []loadgen.Plan `json:"explain"`
	// Recon reconciles the seeded orders against a mockpg seeded with
	// their approvals (issue 15's figure: rows/s and the worker's peak RSS).
	Recon *loadgen.ReconResult `json:"recon,omitempty"`
}

// Slow is throughput against a PG with added latency at several worker concurrencies.
type Slow struct {
	LatencyMs int         `json:"latencyMs"`
	Levels    []SlowLevel `json:"levels"`
}

// SlowLevel is one worker concurrency.
type SlowLevel struct {
	WorkerConcurrency int            `json:"workerConcurrency"`
	Result            loadgen.Result `json:"result"`
	// Bound is workerConcurrency ÷ latency: what the worker can confirm if
	// every slot waits on the PG.
	Bound float64 `json:"boundPerSec"`
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
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
	var t loadgen.Target
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

	sink, err := loadgen.NewSink()
	if err != nil {
		return err
	}
	defer sink.Close()
	c := &loadgen.Client{T: t, HTTP: loadgen.NewHTTPClient()}
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
	rep.OrdersBefore, _ = loadgen.CountOrders(ctx, db)
	// Pids are read per phase: the slow-PG phase restarts the worker.
	meter := func() *loadgen.Meter {
		return &loadgen.Meter{Procs: loadgen.ProcsFromRun(cfg.RunDir), DB: db, Redis: rdb}
	}
	phase := func(o loadgen.Options) loadgen.Result {
		o.Progress, o.CallbackTimeout = prog, cfg.CallbackTimeout
		m := meter()
		m.Start(ctx)
		r := loadgen.Run(ctx, c, sink, o)
		r.Cost = m.Stop(ctx, r.Delivered)
		if err := loadgen.Check(r, loadgen.SinkStats{}); err != nil {
			rep.Problems = append(rep.Problems, r.Name+": "+err.Error())
		}
		return r
	}

	// 1. Closed loop sweep.
	for _, conc := range cfg.Sweep {
		if !cfg.want("closed") {
			break
		}
		r := phase(loadgen.Options{Name: fmt.Sprintf("closed c=%d", conc), N: cfg.N, Concurrency: conc,
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
		open := phase(loadgen.Options{Name: fmt.Sprintf("open %.0f/s", rate), N: openN, Rate: rate, WaitEvery: cfg.WaitEvery,
			VirtualAccountShare: cfg.VAShare, DepositDelay: cfg.DepositDelay})
		rep.Open = &open
	}

	// 3. Ceiling on the same servers.
	if cfg.CeilingN > 0 && cfg.want("ceiling") {
		p := loadgen.StartProgress(prog, "ceiling: SQL", cfg.CeilingN)
		sc, err := loadgen.RunSQLCeiling(ctx, dbURL, cfg.CeilingN, cfg.CeilingConns, cfg.CeilingConns, p)
		p.Stop()
		if err != nil {
			rep.Problems = append(rep.Problems, "sql ceiling: "+err.Error())
		} else {
			rep.SQLCeiling = &sc
		}
		tasks := cfg.CeilingN * rep.TasksPerPayment
		p = loadgen.StartProgress(prog, "ceiling: asynq no-op", tasks)
		adb := cfg.AsynqDB
		if adb == 0 {
			adb = lastRedisDB(ctx, rdb)
		}
		ac, err := loadgen.RunAsynqCeiling(ctx, ropt, adb, tasks, cfg.CeilingConns, cfg.AsynqConc, p)
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
		n, err := loadgen.RunNeighbor(ctx, t, sink, loadgen.NeighborOptions{Seconds: cfg.NeighborSeconds, QuietRate: cfg.NeighborRate,
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
		var worker loadgen.Proc
		for _, p := range loadgen.ProcsFromRun(cfg.RunDir) {
			if p.Name == "worker" {
				worker = p
			}
		}
		logf("dead endpoint: B at %.0f/s alone, then beside D (refusing, %d callbacks pending)", cfg.DeadRate, cfg.DeadPending)
		d, err := loadgen.RunDeadEndpoint(ctx, t, sink, db, rdb, loadgen.DeadOptions{Pending: cfg.DeadPending, Seconds: cfg.DeadSeconds,
			QuietSeconds: cfg.DeadQuiet, Rate: cfg.DeadRate, Callback: cfg.CallbackTimeout, Progress: prog, Worker: worker})
		if err != nil {
			rep.Problems = append(rep.Problems, "dead endpoint: "+err.Error())
		} else {
			rep.DeadEndpoint = d
			for _, r := range []loadgen.Result{d.Alone, d.Beside} {
				if err := loadgen.Check(r, loadgen.SinkStats{}); err != nil {
					rep.Problems = append(rep.Problems, r.Name+": "+err.Error())
				}
			}
		}
	}

	time.Sleep(2 * time.Second) // a late duplicate would show here
	rep.Sink = sink.Stats()
	if err := loadgen.Check(loadgen.Result{}, rep.Sink); err != nil {
		rep.Problems = append(rep.Problems, "sink: "+err.Error())
	}
	out := cfg.Out
	if out == "" {
		out = filepath.Join("bench", "results", time.Now().Format("2006-01-02T15-04")+".json")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	printTable(stdout, rep)
	fmt.Fprintf(stdout, "\ncreates shed by payrail (503 OVERLOADED, retried after 200 ms): %d\nsaved %s\n", c.Shed.Load(), out)
	if len(rep.Problems) > 0 {
		return fmt.Errorf("%d problems (see above and %s)", len(rep.Problems), out)
	}
	return nil
}

// neighborProblems are the neighbor phase's correctness failures: a
// failed or undelivered payment of B, a 5xx for anyone, a lost callback of A.
func neighborProblems(n *loadgen.Neighbor) []string {
	var out []string
	for _, r := range []loadgen.Result{n.Alone, n.Beside} {
		if err := loadgen.Check(r, loadgen.SinkStats{}); err != nil {
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

func growth(ctx context.Context, cfg config, db *sql.DB, c *loadgen.Client, rep *Report, phase func(loadgen.Options) loadgen.Result, rate float64, logf func(string, ...any)) (*Growth, error) {
	g := &Growth{Rows: cfg.GrowthRows}
	logf("seeding %d orders under %s (INSERT … SELECT generate_series)", cfg.GrowthRows, loadgen.SeedMerchant)
	d, err := loadgen.Seed(ctx, db, cfg.GrowthRows)
	if err != nil {
		return g, err
	}
	g.SeedSeconds = d.Seconds()
	if !cfg.KeepSeed {
		defer func() {
			logf("removing the seeded orders")
			if err := loadgen.Unseed(context.Background(), db); err != nil {
				logf("unseed: %v", err)
			}
		}()
	}
	g.Closed = phase(loadgen.Options{Name: fmt.Sprintf("growth closed c=%d", cfg.GrowthConc), N: cfg.N, Concurrency: cfg.GrowthConc})
	for _, r := range rep.Closed {
		if r.Concurrency == cfg.GrowthConc && r.PaymentsPerSec > 0 {
			g.ClosedChange = (g.Closed.PaymentsPerSec - r.PaymentsPerSec) / r.PaymentsPerSec
		}
	}
	open := phase(loadgen.Options{Name: fmt.Sprintf("growth open %.0f/s", rate), N: rep.Open.N, Rate: rate, WaitEvery: cfg.WaitEvery})
	g.Open = &open
	if p := rep.Open.ConfirmIngress.P99; p > 0 {
		g.OpenP99Change = (open.ConfirmIngress.P99 - p) / p
	}
	g.Explain, err = loadgen.Explain(ctx, db, "seed_500000", loadgen.SeedMerchant)
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

func slowPG(ctx context.Context, cfg config, c *loadgen.Client, ropt *redis.Options, phase func(loadgen.Options) loadgen.Result, logf func(string, ...any)) (*Slow, error) {
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
		if err := loadgen.RestartWorker(ctx, cfg.RunDir, nil, ropt); err != nil {
			logf("restart worker: %v", err)
		}
	}()
	for _, wc := range cfg.SlowConc {
		logf("restarting the worker with PAYRAIL_WORKER_CONCURRENCY=%d", wc)
		if err := loadgen.RestartWorker(ctx, cfg.RunDir, map[string]string{"PAYRAIL_WORKER_CONCURRENCY": strconv.Itoa(wc)}, ropt); err != nil {
			return s, err
		}
		// Enough merchants in flight to fill every worker slot twice.
		r := phase(loadgen.Options{Name: fmt.Sprintf("slow PG w=%d", wc), N: cfg.SlowN, Concurrency: max(64, 2*wc)})
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
func growthRecon(ctx context.Context, cfg config, db *sql.DB, c *loadgen.Client, logf func(string, ...any)) (*loadgen.ReconResult, error) {
	logf("seeding mockpg's books with the seeded orders' approvals")
	start := time.Now()
	rows, from, to, err := loadgen.SeedPGBooks(ctx, db, c)
	if err != nil {
		return nil, err
	}
	seeded := time.Since(start).Seconds()
	logf("reconciling %d approvals (%s–%s) with payrail's records", rows, from.Format(time.RFC3339), to.Format(time.RFC3339))
	m := &loadgen.Meter{Procs: loadgen.ProcsFromRun(cfg.RunDir), DB: db}
	m.Start(ctx)
	var w io.Writer
	if cfg.Progress {
		w = os.Stderr
	}
	res, err := loadgen.RunRecon(ctx, c, from, to, w)
	res.Rows, res.SeedPGSeconds = rows, seeded
	res.Cost = m.Stop(ctx, rows)
	return &res, err
}
