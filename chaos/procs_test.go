package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/payrail/payrail/internal/store"
	"github.com/payrail/payrail/internal/testredis"
)

// binDir holds the api and worker binaries, built once per test process
// without -race: the processes under test are what production runs, and five
// race-instrumented binaries would not fit on a 2-core CI machine.
var binDir string

var buildOnce = sync.OnceValue(func() error {
	dir, err := os.MkdirTemp("", "payrail-chaos-bin-")
	if err != nil {
		return err
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/payrail/payrail/cmd/api", "github.com/payrail/payrail/cmd/worker")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// freePort returns a TCP port that was free a moment ago on 127.0.0.1.
func freePort(tb testing.TB) int { return testredis.FreePort(tb) }

// proc is one supervised child process (an api or a worker). An exit the
// test did not cause is counted and the process restarted, as a process
// manager would; the scenario that kills one restarts it itself.
type proc struct {
	name    string
	bin     string
	env     []string
	logPath string

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{}
	expectExit bool
	stopping   bool
	stopped    bool // SIGSTOPped
	starts     int
	unexpected []string
}

func newProc(name, bin, logDir string, env map[string]string) *proc {
	p := &proc{name: name, bin: bin, logPath: filepath.Join(logDir, name+".log")}
	p.env = []string{"PATH=" + os.Getenv("PATH")}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.env = append(p.env, k+"="+env[k])
	}
	return p
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startLocked()
}

func (p *proc) startLocked() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "----- start %d at %s\n", p.starts+1, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	p.starts++
	done := make(chan struct{})
	p.cmd, p.done, p.expectExit, p.stopped = cmd, done, false, false
	go func() {
		err := cmd.Wait()
		f.Close()
		close(done)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cmd != cmd || p.expectExit || p.stopping {
			return
		}
		p.unexpected = append(p.unexpected, fmt.Sprintf("%s exited by itself at %s: %v", p.name, time.Now().Format("15:04:05.000"), err))
		time.Sleep(500 * time.Millisecond)
		if !p.stopping {
			_ = p.startLocked()
		}
	}()
	return nil
}

// kill sends SIGKILL, waits for the exit and starts the process again after
// pause.
func (p *proc) kill(pause time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.expectExit = true
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	time.Sleep(pause)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return nil
	}
	return p.startLocked()
}

// signal sends SIGSTOP or SIGCONT.
func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = sig == syscall.SIGSTOP
	_ = p.cmd.Process.Signal(sig)
}

// stop ends the process for good: SIGTERM, then SIGKILL after 15 s.
func (p *proc) stop() {
	p.mu.Lock()
	p.stopping = true
	cmd, done, frozen := p.cmd, p.done, p.stopped
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	if frozen {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

func (p *proc) unexpectedExits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.unexpected...)
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// redisServer is a private redis-server the chaos run may restart.
type redisServer struct {
	port int
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedis(tb testing.TB) *redisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Skip("redis-server not installed: the chaos run needs a private Redis it can restart")
	}
	r := &redisServer{port: freePort(tb), dir: tb.TempDir()}
	if err := r.start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.stop)
	return r
}

func (r *redisServer) url() string { return "redis://127.0.0.1:" + strconv.Itoa(r.port) + "/0" }

func (r *redisServer) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", r.dir,
		"--logfile", filepath.Join(r.dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(r.port)})
	defer c.Close()
	for i := 0; i < 100; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %d did not answer", r.port)
}

func (r *redisServer) stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// pgServer is a private PostgreSQL cluster the chaos run may restart. As
// root it runs as the postgres user, the way scripts/services.sh does.
type pgServer struct {
	bindir, dir, data string
	port              int
	// extra are more server options (scenario 11's primary commits
	// synchronously to its replica); later -c options win.
	extra string
}

func startPostgres(tb testing.TB) (*pgServer, string) {
	tb.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		tb.Skip("PostgreSQL server binaries not found: skipping the PostgreSQL restart scenario")
	}
	sort.Strings(dirs)
	s := &pgServer{bindir: filepath.Dir(dirs[len(dirs)-1]), port: freePort(tb)}
	dir, err := os.MkdirTemp("", "payrail-chaos-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	s.dir, s.data = dir, filepath.Join(dir, "data")
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Skip("running as root without a postgres user: skipping the PostgreSQL restart scenario")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatal(err)
		}
	}
	if out, err := s.run("initdb", "-D", s.data, "-U", "postgres", "-E", "UTF8", "--no-locale",
		"--auth-local=trust", "--auth-host=trust"); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	if err := s.start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _, _ = s.run("pg_ctl", "stop", "-D", s.data, "-m", "immediate", "-w") })
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	db, err := sqlx.Open("postgres", admin)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE DATABASE payrail`); err != nil {
		tb.Fatal(err)
	}
	u := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/payrail?sslmode=disable", s.port)
	mdb, err := sqlx.Open("postgres", u)
	if err != nil {
		tb.Fatal(err)
	}
	defer mdb.Close()
	if err := store.Migrate(context.Background(), mdb.DB, nil); err != nil {
		tb.Fatalf("migrate private PostgreSQL: %v", err)
	}
	return s, u
}

func (s *pgServer) run(tool string, args ...string) ([]byte, error) {
	name := filepath.Join(s.bindir, tool)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	} else {
		cmd = exec.Command(name, args...)
	}
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}

func (s *pgServer) start() error {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 %s", s.port, s.extra)
	out, err := s.run("pg_ctl", "start", "-D", s.data, "-l", filepath.Join(s.dir, filepath.Base(s.data)+".log"), "-w", "-t", "60", "-o", opts)
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	return nil
}

func (s *pgServer) stop() error {
	out, err := s.run("pg_ctl", "stop", "-D", s.data, "-m", "fast", "-w", "-t", "60")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// startReplica makes a streaming replica of primary (pg_basebackup -R) on
// its own port, then restarts primary committing synchronously to it, so a
// promote loses no commit payrail was told of. fsync stays off: the faults
// are process crashes, which the OS page cache survives.
func startReplica(tb testing.TB, primary *pgServer) *pgServer {
	tb.Helper()
	r := &pgServer{bindir: primary.bindir, dir: primary.dir, data: filepath.Join(primary.dir, "replica"), port: freePort(tb)}
	if out, err := primary.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
		"-D", r.data, "-R", "-X", "stream", "-c", "fast"); err != nil {
		tb.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	if err := r.start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _, _ = r.run("pg_ctl", "stop", "-D", r.data, "-m", "immediate", "-w") })
	primary.extra = "-c synchronous_commit=on -c synchronous_standby_names='*'"
	if err := primary.stop(); err != nil {
		tb.Fatal(err)
	}
	if err := primary.start(); err != nil {
		tb.Fatal(err)
	}
	db, err := sqlx.Open("postgres", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", primary.port))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var state string
		if err := db.Get(&state, `SELECT sync_state FROM pg_stat_replication LIMIT 1`); err == nil && state == "sync" {
			return r
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the replica on %d never became a synchronous standby", r.port)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promote makes a standby the primary and waits until it accepts writes.
func (s *pgServer) promote() error {
	out, err := s.run("pg_ctl", "promote", "-D", s.data, "-w", "-t", "60")
	if err != nil {
		return fmt.Errorf("pg_ctl promote: %v\n%s", err, out)
	}
	return nil
}

// crash stops the server the way a lost machine does (no shutdown checkpoint).
func (s *pgServer) crash() error {
	out, err := s.run("pg_ctl", "stop", "-D", s.data, "-m", "immediate", "-w", "-t", "60")
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m immediate: %v\n%s", err, out)
	}
	return nil
}

func (s *pgServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// toxi is an in-process toxiproxy: one proxy per upstream, toxics added and
// removed through its Go API (no HTTP API).
type toxi struct {
	srv     *toxiproxy.ApiServer
	proxies map[string]*toxiproxy.Proxy
}

func newToxi(tb testing.TB) *toxi {
	x := &toxi{srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()), proxies: map[string]*toxiproxy.Proxy{}}
	tb.Cleanup(func() {
		for _, p := range x.proxies {
			p.Stop()
		}
	})
	return x
}

// add starts a proxy to upstream (host:port) and returns its listen address.
func (x *toxi) add(tb testing.TB, name, upstream string) string {
	tb.Helper()
	p := toxiproxy.NewProxy(x.srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		tb.Fatal(err)
	}
	x.proxies[name] = p
	return p.Listen
}

// toxic adds a toxic to a proxy; spec is toxiproxy's JSON toxic.
func (x *toxi) toxic(name, spec string) error {
	_, err := x.proxies[name].Toxics.AddToxicJson(strings.NewReader(spec))
	return err
}

// clear removes every toxic of every proxy.
func (x *toxi) clear() {
	for _, p := range x.proxies {
		p.Toxics.ResetToxics(context.Background())
	}
}
