package worker_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/systest"
	"github.com/payrail/payrail/internal/testenv"
)

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "payrail-worker-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "worker")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/payrail/payrail/cmd/worker").CombinedOutput()
	if err != nil {
		return "", &buildError{out: string(out), err: err}
	}
	return bin, nil
})

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// startWorkerProcess runs the real worker binary against sys.
func startWorkerProcess(t *testing.T, sys *systest.System) *exec.Cmd {
	t.Helper()
	bin, err := buildOnce()
	testenv.Must(t, err)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ()[:0:0], "PATH="+os.Getenv("PATH"))
	for k, v := range sys.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "worker.log"))
	testenv.Must(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	testenv.Must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("worker log:\n%s", b)
		}
	})
	return cmd
}

func TestWorkerKilledMidConfirm(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{Faults: mockpg.Faults{LatencyMS: 1500},
		Env: map[string]string{"PAYRAIL_CONFIRM_STUCK_AFTER": "1s", "PAYRAIL_LOCK_TTL": "3s"}})
	m := sys.NewMerchant("")
	o := m.CreateOrder(13000)
	key := sys.Session(o)
	first := startWorkerProcess(t, sys)
	if r := m.Confirm(o, key); r.Status != 202 {
		t.Fatalf("confirm: %d", r.Status)
	}
	// The worker holds the order's lock while it waits on the slow PG.
	testenv.Poll(t, 15*time.Second, "the first worker to be mid-confirm", func() bool {
		n, _ := sys.Redis.Client.Exists(context.Background(), "payrail:lock:order:"+o.OrderID).Result()
		return n == 1
	})
	testenv.Must(t, first.Process.Signal(syscall.SIGKILL))
	_, _ = first.Process.Wait()
	startWorkerProcess(t, sys)
	m.WaitStatus(o.OrderID, "PAID", 30*time.Second)
	if got := sys.PG.Stats()[o.OrderID].Approvals; got != 1 {
		t.Fatalf("approvals = %d, want 1", got)
	}
	if got := transitions(sys, o.OrderID, "PAID"); got != 1 {
		t.Fatalf("PAID transitions = %d, want 1", got)
	}
}
