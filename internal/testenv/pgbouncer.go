package testenv

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PgBouncer is a real pgbouncer in transaction pooling mode in front of one
// PostgreSQL (issue 17: docs/scaling.md says how payrail runs behind one,
// and the tests that use this check it).
type PgBouncer struct {
	Port     int
	PoolSize int
	dir      string
	ini      string
	cmd      *exec.Cmd
	done     chan struct{}
	user     string
	password string
}

// StartPgBouncer starts pgbouncer on a free loopback port, pooling every
// database of upstream (a postgres:// URL whose user logs in to the
// server) with at most poolSize server connections per database. As root it
// runs as the postgres user (pgbouncer refuses root).
func StartPgBouncer(tb testing.TB, upstream string, poolSize int) *PgBouncer {
	tb.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/pgbouncer"); err != nil {
			tb.Fatal("pgbouncer is not installed (make test installs it): the PgBouncer test needs a real one")
		}
	}
	u, err := url.Parse(upstream)
	if err != nil {
		tb.Fatal(err)
	}
	pw, _ := u.User.Password()
	b := &PgBouncer{PoolSize: poolSize, user: u.User.Username(), password: pw}
	b.dir, err = os.MkdirTemp("", "payrail-pgbouncer-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(b.dir) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b.Port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	b.ini = filepath.Join(b.dir, "pgbouncer.ini")
	if err := b.write(u.Host); err != nil {
		tb.Fatal(err)
	}
	var uid, gid int
	if os.Geteuid() == 0 {
		pu, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatal("running as root without a postgres user to run pgbouncer as")
		}
		uid, _ = strconv.Atoi(pu.Uid)
		gid, _ = strconv.Atoi(pu.Gid)
		if err := os.Chown(b.dir, uid, gid); err != nil {
			tb.Fatal(err)
		}
	}
	b.cmd = exec.Command(bin, b.ini)
	if os.Geteuid() == 0 {
		b.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, Setpgid: true}
	}
	if err := b.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	b.done = make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	tb.Cleanup(func() {
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(5 * time.Second):
			_ = b.cmd.Process.Kill()
			<-b.done
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(b.Port)); err == nil {
			c.Close()
			return b
		}
		select {
		case <-b.done:
			tb.Fatalf("pgbouncer exited at start:\n%s", b.Tail(10))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgbouncer did not listen:\n%s", b.Tail(10))
		}
	}
}

// write renders the configuration for the server at hostport. auth_type
// any: clients are not checked (loopback only), and every pool logs in to
// the server as the upstream URL's user. server_login_retry 1: pgbouncer's
// 15 s default held every request for 15 s after the primary died (chaos
// scenario 11), promoted replica or not.
func (b *PgBouncer) write(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	login := "user=" + b.user
	if b.password != "" {
		login += " password=" + b.password
	}
	conf := fmt.Sprintf(`[databases]
* = host=%s port=%s %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = %d
max_client_conn = 1000
server_reset_query =
server_login_retry = 1
ignore_startup_parameters = extra_float_digits
logfile = %s
pidfile = %s
`, host, port, login, b.Port, b.PoolSize, filepath.Join(b.dir, "pgbouncer.log"), filepath.Join(b.dir, "pgbouncer.pid"))
	if err := os.WriteFile(b.ini, []byte(conf), 0o644); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if pu, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(pu.Uid)
			gid, _ := strconv.Atoi(pu.Gid)
			_ = os.Chown(b.ini, uid, gid)
		}
	}
	return nil
}

// Retarget points every pool at another server (a promoted replica) and
// reloads: pgbouncer is the stable address the processes keep using.
func (b *PgBouncer) Retarget(hostport string) error {
	if err := b.write(hostport); err != nil {
		return err
	}
	return b.cmd.Process.Signal(syscall.SIGHUP)
}

// URL is raw (a postgres:// URL) pointed at pgbouncer instead.
func (b *PgBouncer) URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	u.Host = "127.0.0.1:" + strconv.Itoa(b.Port)
	return u.String()
}

// Tail is the last n lines of pgbouncer's log.
func (b *PgBouncer) Tail(n int) string {
	raw, _ := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log"))
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
