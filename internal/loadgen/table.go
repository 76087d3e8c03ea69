package loadgen

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

func lat(l Latency) string {
	if l.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f/%.1f/%.1f/%.1f", l.P50, l.P95, l.P99, l.Max)
}

func PrintReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "\npayrail bench %s  (%d CPUs, %d GiB, %s; %d orders before)\n", r.Date, r.Machine.CPUs, r.Machine.MemGiB, r.Machine.Go, r.OrdersBefore)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tn\tok\tdelivered\tpaid/s\tpayments/s\tingress ms p50/p95/p99/max\taccepted→PAID ms\taccepted→callback ms\tPAID→callback ms\t가상계좌 n / deposit→callback ms\tCPU ms/payment\txact/payment\tredis cmds/payment")
	row := func(x Result) {
		cpu, xact, rc := "-", "-", "-"
		if x.Cost != nil {
			cpu = fmt.Sprintf("%.2f", x.Cost.CPUMsPerPayment)
			xact = fmt.Sprintf("%.1f", x.Cost.DB.XactCommitPerPayment)
			rc = fmt.Sprintf("%.1f", x.Cost.RedisCommandsPerPayment)
		}
		va := "-"
		if x.VirtualAccounts > 0 {
			va = fmt.Sprintf("%d / %s", x.VirtualAccounts, lat(x.DepositToCallback))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Name, x.N, x.OK, x.Delivered, x.PaidPerSec, x.PaymentsPerSec,
			lat(x.ConfirmIngress), lat(x.AcceptedToPaid), lat(x.AcceptedToCallback), lat(x.PaidToCallback), va, cpu, xact, rc)
	}
	for _, x := range r.Closed {
		row(x)
	}
	if r.Open != nil {
		row(*r.Open)
	}
	if g := r.Growth; g != nil {
		row(g.Closed)
		if g.Open != nil {
			row(*g.Open)
		}
	}
	if s := r.Slow; s != nil {
		for _, l := range s.Levels {
			row(l.Result)
		}
	}
	if n := r.Neighbor; n != nil {
		row(n.Alone)
		row(n.Beside)
	}
	if d := r.DeadEndpoint; d != nil {
		row(d.Alone)
		row(d.Beside)
	}
	tw.Flush()

	fmt.Fprintln(w)
	if len(r.Idle) > 0 {
		fmt.Fprintf(w, "idle (no load), %% of one core:")
		for _, name := range []string{"worker", "api", "redis", "postgres", "mockpg"} {
			if v, ok := r.Idle[name]; ok {
				fmt.Fprintf(w, " %s %.2f;", name, v)
			}
		}
		fmt.Fprintf(w, " Redis served %.0f commands/s\n", r.IdleRedisCommandsPerSec)
	}
	if c := r.SQLCeiling; c != nil {
		fmt.Fprintf(w, "SQL ceiling: %.1f payments/s (the store's own %d calls, ≤ %.1f commits per payment; %d conns, %d merchants)\n",
			c.PaymentsPerSec, c.TxPerPayment, c.CommitsPerPayment, c.Conns, c.Merchants)
	}
	if c := r.AsynqCeiling; c != nil {
		fmt.Fprintf(w, "asynq ceiling: %.1f no-op tasks/s end to end (concurrency %d, Redis db %d) = %.1f payments/s at %d tasks per payment\n",
			c.TasksPerSec, c.Concurrency, c.RedisDB, c.TasksPerSec/float64(r.TasksPerPayment), r.TasksPerPayment)
	}
	if r.CeilingPerSec > 0 {
		fmt.Fprintf(w, "efficiency = %.1f payments/s ÷ %.1f ceiling payments/s = %.2f\n", r.MaxClosed, r.CeilingPerSec, r.Efficiency)
	}
	if c := r.MinimalCeiling; c != nil {
		fmt.Fprintf(w, "minimal durable path: %.1f payments/s (4 transactions: create, accept, PAID with its log and callback rows, delivered; %.1f commits per payment; %d conns)\n",
			c.PaymentsPerSec, c.CommitsPerPayment, c.Conns)
		fmt.Fprintf(w, "efficiency_minimal = %.1f payments/s ÷ %.1f = %.2f\n", r.MaxClosed, c.PaymentsPerSec, r.EfficiencyMinimal)
	}
	if r.Open != nil && r.Open.Cost != nil {
		fmt.Fprintf(w, "cost at the open-loop rate (per 1,000 payments):")
		for _, name := range []string{"api", "worker", "postgres", "redis", "mockpg"} {
			if pc, ok := r.Open.Cost.Procs[name]; ok {
				fmt.Fprintf(w, "  %s %.2f CPU s, peak %.0f MiB;", name, pc.CPUSecondsPer1k, pc.PeakRSSMiB)
			}
		}
		st := "pg_stat_statements not loaded"
		if r.Open.Cost.DB.StatementsPerPayment >= 0 {
			st = fmt.Sprintf("%.1f statements", r.Open.Cost.DB.StatementsPerPayment)
		}
		wal := "pg_stat_wal unavailable"
		if r.Open.Cost.DB.WALSyncsPerPayment >= 0 {
			wal = fmt.Sprintf("%.2f WAL flushes (%.1f records)", r.Open.Cost.DB.WALSyncsPerPayment, r.Open.Cost.DB.WALRecordsPerPayment)
		}
		fmt.Fprintf(w, "\n  per payment: %.1f commits (read-only ones included), %s, %.1f rows inserted, %.1f updated, %s\n",
			r.Open.Cost.DB.XactCommitPerPayment, wal, r.Open.Cost.DB.TupInsertedPerPayment, r.Open.Cost.DB.TupUpdatedPerPayment, st)
		if sts := r.Open.Cost.DB.Statements; len(sts) > 0 {
			fmt.Fprintf(w, "  statements per payment (pg_stat_statements, busiest first):\n")
			for _, q := range sts[:min(len(sts), 15)] {
				fmt.Fprintf(w, "    %5.2f calls %6.3f ms  %s\n", q.CallsPerPayment, q.MsPerPayment, q.Query)
			}
		}
		if rc := r.Open.Cost.RedisByCommand; len(rc) > 0 {
			names := make([]string, 0, len(rc))
			for k := range rc {
				names = append(names, k)
			}
			slices.SortFunc(names, func(a, b string) int { return cmp.Compare(rc[b], rc[a]) })
			fmt.Fprintf(w, "  Redis commands per payment (INFO commandstats):")
			for _, k := range names[:min(len(names), 12)] {
				fmt.Fprintf(w, " %s %.1f;", k, rc[k])
			}
			fmt.Fprintln(w)
		}
	}
	if g := r.Growth; g != nil {
		fmt.Fprintf(w, "growth: %d seeded orders (%.0f s): closed-loop payments/s change %+.1f %%, open-loop ingress p99 change %+.1f %%\n",
			g.Rows, g.SeedSeconds, 100*g.ClosedChange, 100*g.OpenP99Change)
		if rc := g.Recon; rc != nil {
			rss := ""
			if rc.Cost != nil {
				for _, name := range []string{"worker", "api", "mockpg"} {
					if p, ok := rc.Cost.Procs[name]; ok {
						rss += fmt.Sprintf(" %s %.0f MiB (%.1f CPU s);", name, p.PeakRSSMiB, p.CPUSeconds)
					}
				}
			}
			fmt.Fprintf(w, "reconciliation of %d seeded approvals (mockpg seeded in %.0f s): %s in %.1f s, %d PG rows, %.0f rows/s, %d matched, %d repaired, %d flagged; peak RSS:%s\n",
				rc.Rows, rc.SeedPGSeconds, rc.Status, rc.Seconds, rc.PGRows, rc.RowsPerSec, rc.Matched, rc.Repaired, rc.Flagged, rss)
		}
		for _, p := range g.Explain {
			fmt.Fprintf(w, "\nEXPLAIN (ANALYZE, BUFFERS) %s\n%s\n", p.Name, indent(p.Plan))
		}
	}
	if s := r.Slow; s != nil {
		for _, l := range s.Levels {
			fmt.Fprintf(w, "slow PG %d ms, worker concurrency %d: %.1f payments/s (bound %.0f/s)\n", s.LatencyMs, l.WorkerConcurrency, l.Result.PaymentsPerSec, l.Bound)
		}
	}
	if n := r.Neighbor; n != nil {
		f := n.Flood
		fmt.Fprintf(w, "neighbor: B at %.0f/s; A offered %.0f/s (%.0f× its limit %d/s, burst %d) for %.0f s: %d payments started (%d not started: generator full)\n",
			n.QuietRate, f.OfferedRate, f.OfferedRate/float64(max(f.Limit, 1)), f.Limit, f.Burst, f.Seconds, f.Attempts, f.Skipped)
		fmt.Fprintf(w, "  A's creates 2xx/429/5xx/other/no answer %d/%d/%d/%d/%d; confirms %d/%d/%d/%d/%d; %d accepted, %d payment.paid delivered\n",
			f.Creates.S2xx, f.Creates.S429, f.Creates.S5xx, f.Creates.Other, f.Creates.Errors,
			f.Confirms.S2xx, f.Confirms.S429, f.Confirms.S5xx, f.Confirms.Other, f.Confirms.Errors, f.Accepted, f.Delivered)
		fmt.Fprintf(w, "  B's p99 beside ÷ alone: accepted → PAID %.1f / %.1f ms = %.2f; confirm → callback %.1f / %.1f ms = %.2f (target ≤ 2); B's creates refused and retried: %d\n",
			n.Beside.AcceptedToPaid.P99, n.Alone.AcceptedToPaid.P99, n.AcceptedToPaidP99Ratio,
			n.Beside.ConfirmToCallback.P99, n.Alone.ConfirmToCallback.P99, n.ConfirmToCallbackP99Ratio, n.QuietRefused)
		fmt.Fprintf(w, "  while B ran beside A: machine CPU %.0f %% busy (all cores), of which this load generator %.0f %% of a core\n", n.MachineBusyPercent, n.LoadgenCPUPercent)
	}
	if d := r.DeadEndpoint; d != nil {
		fmt.Fprintf(w, "dead endpoint: D refusing, %d callbacks pending (seeded in %.1f s, breaker open after %.1f s); %d attempts to D while measured, %d still pending\n",
			d.Pending, d.SeedSeconds, d.BreakerOpenSeconds, d.DAttempts, d.StillPending)
		fmt.Fprintf(w, "  B's PAID → callback p99 beside ÷ alone %.1f / %.1f ms = %.2f (target ≤ 2); queued callback tasks max %d (target ≤ 1000)\n",
			d.Beside.PaidToCallback.P99, d.Alone.PaidToCallback.P99, d.P99Ratio, d.MaxQueuedCallbackTasks)
		fmt.Fprintf(w, "  worker CPU with only D's backlog %.2f %% of a core over %.0f s (idle before: %.2f %%; target ≤ 5 %%)\n",
			d.WorkerCPUPercent, d.QuietSeconds, d.IdleCPUPercent)
	}
	fmt.Fprintf(w, "sink: %+v\n", r.Sink)
	for _, p := range r.Problems {
		fmt.Fprintf(w, "PROBLEM: %s\n", p)
	}
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }
