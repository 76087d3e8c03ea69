package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"
)

type ctlReconRun struct {
	RunID      string     `json:"runId"`
	From       time.Time  `json:"from"`
	To         time.Time  `json:"to"`
	Trigger    string     `json:"trigger"`
	Status     string     `json:"status"`
	PGRows     int64      `json:"pgRows"`
	Error      string     `json:"error"`
	CreatedAt  time.Time  `json:"createdAt"`
	FinishedAt *time.Time `json:"finishedAt"`
	Counts     struct {
		Matched        int64 `json:"matched"`
		MissingHere    int   `json:"missingHere"`
		MissingAtPG    int   `json:"missingAtPg"`
		AmountMismatch int   `json:"amountMismatch"`
		CancelMismatch int   `json:"cancelMismatch"`
		Repaired       int   `json:"repaired"`
		Flagged        int   `json:"flagged"`
	} `json:"counts"`
}

type ctlReconItem struct {
	Class, PaymentKey, OrderID, Action, Detail string
	NeedsAttention                             bool
	PGAmount, OurAmount                        *int64
}

// recon runs `payrailctl recon run --from D --to D`, `recon show RUN_ID`
// and `recon list`.
func (c *cli) recon(ctx context.Context, args []string) error {
	const use = "usage: payrailctl recon run --from 2026-12-02 [--to 2026-12-02] | recon show RUN_ID [--attention] | recon list"
	if len(args) < 1 {
		return errors.New(use)
	}
	switch args[0] {
	case "run":
		fs := flag.NewFlagSet("recon run", flag.ContinueOnError)
		from := fs.String("from", "", "first UTC day (2026-12-02) or an RFC 3339 time")
		to := fs.String("to", "", "last UTC day (inclusive) or an RFC 3339 time; default: from's day")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *from == "" {
			return errors.New(use)
		}
		if *to == "" {
			*to = *from
		}
		_, body, err := c.adminCall(ctx, "POST", "/admin/recon", map[string]string{"from": *from, "to": *to}, 0)
		if err != nil {
			return err
		}
		var run ctlReconRun
		if err := json.Unmarshal(body, &run); err != nil {
			return fmt.Errorf("recon answer: %w", err)
		}
		// A large window answers 202: follow it, one progress line.
		for run.Status == "PENDING" || run.Status == "RUNNING" {
			fmt.Fprintf(stderr, "\r%s %s: %d PG rows read…", run.RunID, run.Status, run.PGRows)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			r, _, err := c.reconShow(ctx, run.RunID, false)
			if err != nil {
				return err
			}
			run = r
		}
		fmt.Fprintln(stderr)
		_, items, err := c.reconShow(ctx, run.RunID, false)
		if err != nil {
			return err
		}
		c.printRecon(run, items)
		if run.Status != "SUCCEEDED" {
			return fmt.Errorf("run %s %s: %s", run.RunID, run.Status, run.Error)
		}
		if run.Counts.Flagged > 0 {
			return fmt.Errorf("run %s: %d items need attention", run.RunID, run.Counts.Flagged)
		}
		return nil
	case "show":
		fs := flag.NewFlagSet("recon show", flag.ContinueOnError)
		attention := fs.Bool("attention", false, "only the items that need attention")
		pos, err := parseInterspersed(fs, args[1:])
		if err != nil || len(pos) != 1 {
			return errors.New(use)
		}
		run, items, err := c.reconShow(ctx, pos[0], *attention)
		if err != nil {
			return err
		}
		c.printRecon(run, items)
		return nil
	case "list":
		_, body, err := c.adminCall(ctx, "GET", "/admin/recon", nil, http.StatusOK)
		if err != nil {
			return err
		}
		var out struct{ Runs []ctlReconRun }
		if err := json.Unmarshal(body, &out); err != nil {
			return fmt.Errorf("recon answer: %w", err)
		}
		tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN\tWINDOW\tTRIGGER\tSTATUS\tPG ROWS\tMATCHED\tREPAIRED\tFLAGGED")
		for _, r := range out.Runs {
			fmt.Fprintf(tw, "%s\t%s – %s\t%s\t%s\t%d\t%d\t%d\t%d\n", r.RunID, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339),
				r.Trigger, r.Status, r.PGRows, r.Counts.Matched, r.Counts.Repaired, r.Counts.Flagged)
		}
		return tw.Flush()
	}
	return errors.New(use)
}

func (c *cli) reconShow(ctx context.Context, runID string, attention bool) (ctlReconRun, []ctlReconItem, error) {
	path := "/admin/recon/" + runID
	if attention {
		path += "?attention=1"
	}
	_, body, err := c.adminCall(ctx, "GET", path, nil, http.StatusOK)
	if err != nil {
		return ctlReconRun{}, nil, err
	}
	var out struct {
		Run   ctlReconRun    `json:"run"`
		Items []ctlReconItem `json:"items"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return ctlReconRun{}, nil, fmt.Errorf("recon answer: %w", err)
	}
	return out.Run, out.Items, nil
}

func (c *cli) printRecon(r ctlReconRun, items []ctlReconItem) {
	fmt.Fprintf(c.out, "run %s  %s – %s  %s  %d PG rows\n", r.RunID, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), r.Status, r.PGRows)
	k := r.Counts
	fmt.Fprintf(c.out, "matched %d · missing here %d · missing at PG %d · amount mismatch %d · cancel mismatch %d · repaired %d · flagged %d\n",
		k.Matched, k.MissingHere, k.MissingAtPG, k.AmountMismatch, k.CancelMismatch, k.Repaired, k.Flagged)
	if len(items) == 0 {
		return
	}
	tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tORDER\tPAYMENT KEY\tACTION\tATTENTION\tDETAIL")
	for _, it := range items {
		att := ""
		if it.NeedsAttention {
			att = "YES"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.Class, it.OrderID, it.PaymentKey, it.Action, att, it.Detail)
	}
	_ = tw.Flush()
}
