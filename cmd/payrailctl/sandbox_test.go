package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/pgclient"
)

// The sandbox commands against a real mockpg: a 가상계좌 session, its
// confirm issuing an account, the deposit, and the clock.
func TestSandboxVirtualAccountCommands(t *testing.T) {
	pg := mockpg.New(mockpg.Config{SecretKey: "test_sk_ctl"})
	srv := httptest.NewServer(pg)
	defer srv.Close()
	defer pg.Close()
	env := map[string]string{"MOCKPG_URL": srv.URL}
	run1 := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), args, func(k string) string { return env[k] }, &out)
		return out.String(), err
	}
	out, err := run1("sandbox", "session", "ord_ctl_va_1", "15000", "--method", "가상계좌")
	if err != nil {
		t.Fatalf("session: %v %s", err, out)
	}
	key := strings.TrimSpace(out)
	if out, err := run1("sandbox", "deposit", key); err == nil {
		t.Fatalf("deposit before the account was issued succeeded: %s", out)
	}
	res := pgclient.New(srv.URL, "test_sk_ctl", nil).Confirm(context.Background(), "k1", key, "ord_ctl_va_1", 15000)
	if res.Payment == nil || res.Payment.Status != pgclient.StatusWaitingForDeposit || res.Payment.VirtualAccount == nil {
		t.Fatalf("confirm of a 가상계좌 session: %+v", res)
	}
	if out, err := run1("sandbox", "deposit", key); err != nil || !strings.Contains(out, `"status":"DONE"`) {
		t.Fatalf("deposit: %v %s", err, out)
	}
	if st := pg.Stats()["ord_ctl_va_1"]; st.Deposits != 1 {
		t.Fatalf("deposits = %d", st.Deposits)
	}
	if out, err := run1("sandbox", "clock", "72h"); err != nil || !strings.Contains(out, "72h") {
		t.Fatalf("clock: %v %s", err, out)
	}
	if _, err := run1("sandbox", "clock", "-1h"); err == nil {
		t.Fatal("a negative advance was accepted")
	}
	if _, err := run1("sandbox", "session", "ord_ctl_va_2", "100", "--method", "cash"); err == nil {
		t.Fatal("an unknown method was accepted")
	}
}
