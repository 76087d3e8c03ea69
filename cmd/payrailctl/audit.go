package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
)

// audit runs `payrailctl audit list [--actor A] [--target T] [--action X]
// [--since RFC3339] [--limit N]`: the audit trail, newest first, from
// GET /admin/audit.
func (c *cli) audit(ctx context.Context, args []string) error {
	const use = "usage: payrailctl audit list [--actor A] [--target T] [--action X] [--since 2026-12-03T09:00:00Z] [--limit N] [--json]"
	if len(args) < 1 || args[0] != "list" {
		return errors.New(use)
	}
	fs := flag.NewFlagSet("audit list", flag.ContinueOnError)
	actor := fs.String("actor", "", "only this actor (operator:NAME, admin token)")
	target := fs.String("target", "", "only this target (a merchant, callback or operator:NAME)")
	action := fs.String("action", "", "only this action (merchant.updated, login.failed, …)")
	since := fs.String("since", "", "only entries at or after this RFC 3339 time")
	limit := fs.Int("limit", 50, "at most this many entries (1–500)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"actor": *actor, "target": *target, "action": *action, "since": *since} {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("limit", strconv.Itoa(*limit))
	_, body, err := c.adminCall(ctx, "GET", "/admin/audit?"+q.Encode(), nil, http.StatusOK)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := c.out.Write(append(body, '\n'))
		return err
	}
	var page struct {
		Entries []struct {
			At, Actor, Action, Target, SourceAddr string
			Before, After                         json.RawMessage
		} `json:"entries"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("audit answer: %w", err)
	}
	tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tACTOR\tACTION\tTARGET\tFROM\tCHANGE")
	for _, e := range page.Entries {
		change := string(e.After)
		if len(e.Before) > 0 {
			change = string(e.Before) + " → " + change
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.At, e.Actor, e.Action, e.Target, e.SourceAddr, change)
	}
	return tw.Flush()
}
