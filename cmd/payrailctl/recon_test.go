package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/systest"
)

// `payrailctl recon run` against a whole payrail: a console cancel the
// webhook never told of is found and repaired, the run and its item are
// printed, and `recon list` shows the run.
func TestReconCommands(t *testing.T) {
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("")
	o := m.CreateOrder(5000)
	key := sys.Session(o)
	if r := m.Confirm(o, key, "Prefer", "wait=10"); r.Status != 200 {
		t.Fatalf("pay: %d", r.Status)
	}
	sys.PG.SetWebhookURL("")
	if r := sys.PGClient().Cancel(context.Background(), "console", key, "console", 0, nil); r.Outcome != pgclient.Approved {
		t.Fatalf("console cancel: %+v", r)
	}
	env := map[string]string{"PAYRAIL_API_URL": sys.URL, "PAYRAIL_ADMIN_TOKEN": systest.AdminToken}
	run1 := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), args, func(k string) string { return env[k] }, &out)
		return out.String(), err
	}
	from := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	to := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	out, err := run1("recon", "run", "--from", from, "--to", to)
	if err != nil || !strings.Contains(out, "SUCCEEDED") || !strings.Contains(out, "CANCEL_MISMATCH") || !strings.Contains(out, o.OrderID) {
		t.Fatalf("recon run: %v\n%s", err, out)
	}
	m.WaitStatus(o.OrderID, "CANCELED", 5*time.Second)
	if out, err := run1("recon", "list"); err != nil || strings.Count(out, "SUCCEEDED") != 1 {
		t.Fatalf("recon list: %v\n%s", err, out)
	}
	if _, err := run1("recon", "run", "--from", "yesterday"); err == nil {
		t.Fatal("a malformed window was accepted")
	}
}
