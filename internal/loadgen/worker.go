package loadgen

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/envfile"
)

// RestartWorker stops the worker make up started (by its pidfile, only if
// it is .run/bin/worker) and starts it again as scripts/up.sh does, with
// .run/env plus extra as its environment. It returns once the new process
// has registered with asynq in Redis (redisOpt), i.e. is taking tasks.
func RestartWorker(ctx context.Context, runDir string, extra map[string]string, redisOpt *redis.Options) error {
	abs, err := filepath.Abs(runDir)
	if err != nil {
		return err
	}
	bin := filepath.Join(abs, "bin", "worker")
	pidFile := filepath.Join(abs, "pids", "worker.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if pid > 0 && strings.TrimSuffix(exe, " (deleted)") == bin {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 300; i++ {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
					break
				}
				if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(st), ") Z ") {
					break // our own exited child, not yet reaped
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	env, err := envfile.Parse(filepath.Join(abs, "env"))
	if err != nil {
		return err
	}
	for k, v := range extra {
		env[k] = v
	}
	vars := os.Environ()
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	logFile, err := os.OpenFile(filepath.Join(abs, "logs", "worker.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "\n===== %s: loadgen starts worker %v =====\n", time.Now().Format(time.RFC3339), extra)
	cmd := exec.Command(bin)
	cmd.Env, cmd.Stdout, cmd.Stderr = vars, logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() // reap it if it exits while we run
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	return waitWorkerServing(ctx, redisOpt, cmd.Process.Pid, 30*time.Second)
}

// waitWorkerServing polls asynq's server list until pid is in it.
func waitWorkerServing(ctx context.Context, opt *redis.Options, pid int, timeout time.Duration) error {
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DB: opt.DB, TLSConfig: opt.TLSConfig})
	defer insp.Close()
	deadline := time.Now().Add(timeout)
	for {
		servers, err := insp.Servers()
		if err == nil {
			for _, s := range servers {
				if s.PID == pid {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("worker pid %d not serving after %s (last error: %v)", pid, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
