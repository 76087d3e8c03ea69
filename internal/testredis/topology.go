package testredis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The topologies below are real redis-server processes on loopback, for the
// tests that prove payrail on Sentinel and on Cluster (issue 17). Sentinels
// are `redis-server --sentinel`: the same binary Debian's redis-sentinel
// package links to, so redis-server is the only package they need.

// Server is one redis-server process the test may kill and start again.
type Server struct {
	Port int
	args []string
	dir  string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is 127.0.0.1:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// FreePort returns a loopback port nothing listens on now, and never one
// it returned before in this process: a port is picked, closed and bound
// later by a process, and meanwhile the kernel may hand it out again.
func FreePort(tb testing.TB) int {
	tb.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		portsMu.Lock()
		seen := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if !seen {
			return port
		}
	}
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

func needRedisServer(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatal("redis-server is not installed (make test installs it): the Sentinel and Cluster tests need real processes")
	}
}

func newServer(tb testing.TB, dir string, port int, extra ...string) *Server {
	s := &Server{Port: port, dir: dir, log: filepath.Join(dir, fmt.Sprintf("redis-%d.log", port))}
	s.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--dir", dir, "--logfile", s.log}, extra...)
	tb.Cleanup(func() { s.Kill() })
	return s
}

// Start starts the process and waits until it answers PING.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("redis %d already running", s.Port)
	}
	cmd := exec.Command("redis-server", s.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c.Ping(context.Background()).Err() == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis %d exited at start: %s", s.Port, s.Tail(5))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("redis %d did not answer PING: %s", s.Port, s.Tail(5))
}

// Kill SIGKILLs the process (a crash: nothing flushed, no goodbye to
// replicas or sentinels) and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Tail is the last n lines of the server's log.
func (s *Server) Tail(n int) string {
	b, _ := os.ReadFile(s.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Sentinel is one master, one replica and three sentinels watching them
// (quorum 2, a master is down after 1 s unanswered).
type Sentinel struct {
	MasterName string
	Master     *Server // the master at start; after a failover, see CurrentMaster
	Replica    *Server
	Sentinels  []*Server
}

// StartSentinel starts the five processes and waits until every sentinel
// sees the master and its replica.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	needRedisServer(tb)
	dir := tb.TempDir()
	s := &Sentinel{MasterName: "payrail"}
	s.Master = newServer(tb, dir, FreePort(tb))
	s.Replica = newServer(tb, dir, FreePort(tb), "--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port))
	for _, srv := range []*Server{s.Master, s.Replica} {
		if err := srv.Start(); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range 3 {
		port := FreePort(tb)
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		// Sentinel rewrites its file (known replicas, epochs), so each has its own.
		body := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2\nsentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 5000\nsentinel parallel-syncs %[1]s 1\n", s.MasterName, s.Master.Port)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
		sen := &Server{Port: port, dir: dir, log: filepath.Join(dir, fmt.Sprintf("sentinel-%d.log", port))}
		sen.args = []string{conf, "--sentinel", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--daemonize", "no", "--dir", dir, "--logfile", sen.log}
		tb.Cleanup(func() { sen.Kill() })
		if err := sen.Start(); err != nil {
			tb.Fatal(err)
		}
		s.Sentinels = append(s.Sentinels, sen)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, sen := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sen.Addr()})
		for {
			r, err := c.Replicas(context.Background(), s.MasterName).Result()
			if err == nil && len(r) == 1 {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				tb.Fatalf("sentinel %d does not see the replica: %v %v", sen.Port, r, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return s
}

// SentinelAddrs are the sentinels' addresses (PAYRAIL_REDIS_SENTINEL_ADDRS).
func (s *Sentinel) SentinelAddrs() []string {
	var out []string
	for _, sen := range s.Sentinels {
		out = append(out, sen.Addr())
	}
	return out
}

// CurrentMaster is the master the first sentinel that answers names.
func (s *Sentinel) CurrentMaster(ctx context.Context) (string, error) {
	var errs []error
	for _, sen := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sen.Addr()})
		a, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		c.Close()
		if err == nil && len(a) == 2 {
			return net.JoinHostPort(a[0], a[1]), nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// WaitMasterOtherThan polls the sentinels until they name a master other
// than old that answers as a master, and returns it.
func (s *Sentinel) WaitMasterOtherThan(ctx context.Context, old string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if a, err := s.CurrentMaster(ctx); err == nil && a != old {
			c := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1})
			role, err := c.Do(ctx, "ROLE").Slice()
			c.Close()
			if err == nil && len(role) > 0 && role[0] == "master" {
				return a, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no new master within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Cluster is a Redis Cluster of masters with replicas each.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts masters × (1 + replicas) cluster-enabled nodes, joins
// them with `redis-cli --cluster create` and waits until every node reports
// cluster_state:ok. A node missing for 1 s is failed over to its replica.
func StartCluster(tb testing.TB, masters, replicas int) *Cluster {
	tb.Helper()
	needRedisServer(tb)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		tb.Fatal("redis-cli is not installed (Debian: redis-tools, which redis-server depends on)")
	}
	dir := tb.TempDir()
	c := &Cluster{}
	for range masters * (1 + replicas) {
		port := FreePort(tb)
		// The bus port is chosen too: port+10000 may be taken or past 65535.
		srv := newServer(tb, dir, port, "--cluster-enabled", "yes", "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port),
			"--cluster-node-timeout", "1000", "--cluster-port", strconv.Itoa(FreePort(tb)))
		if err := srv.Start(); err != nil {
			tb.Fatal(err)
		}
		c.Nodes = append(c.Nodes, srv)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitOK(context.Background(), 30*time.Second); err != nil {
		tb.Fatal(err)
	}
	return c
}

// Addrs are every node's address (PAYRAIL_REDIS_CLUSTER_ADDRS).
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// Role is "master" or "slave" as the node itself answers ROLE.
func (c *Cluster) Role(ctx context.Context, n *Server) (string, error) {
	cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
	defer cl.Close()
	r, err := cl.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", err
	}
	if len(r) == 0 {
		return "", errors.New("empty ROLE answer")
	}
	return fmt.Sprint(r[0]), nil
}

// Masters are the running nodes that answer ROLE as master.
func (c *Cluster) Masters(ctx context.Context) []*Server {
	var out []*Server
	for _, n := range c.Nodes {
		if r, err := c.Role(ctx, n); err == nil && r == "master" {
			out = append(out, n)
		}
	}
	return out
}

// WaitOK polls until every running node answers cluster_state:ok and every
// slot is served by a running master (a killed master's slots only count
// once its replica has taken them: the others notice after the node
// timeout).
func (c *Cluster) WaitOK(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok := true
		for _, n := range c.Nodes {
			n.mu.Lock()
			running := n.cmd != nil
			n.mu.Unlock()
			if !running {
				continue
			}
			cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
			info, err := cl.ClusterInfo(ctx).Result()
			cl.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				ok, last = false, fmt.Sprintf("%s: %v %s", n.Addr(), err, firstLine(info))
				break
			}
		}
		if ok {
			if err := c.slotsOnRunningMasters(ctx); err != nil {
				ok, last = false, err.Error()
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ok within %s: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// slotsOnRunningMasters checks every running node's CLUSTER SLOTS names
// only running masters.
func (c *Cluster) slotsOnRunningMasters(ctx context.Context) error {
	running := map[string]bool{}
	for _, n := range c.Nodes {
		n.mu.Lock()
		running[n.Addr()] = n.cmd != nil
		n.mu.Unlock()
	}
	for _, n := range c.Nodes {
		if !running[n.Addr()] {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		slots, err := cl.ClusterSlots(ctx).Result()
		cl.Close()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER SLOTS: %v", n.Addr(), err)
		}
		for _, s := range slots {
			if len(s.Nodes) == 0 || !running[s.Nodes[0].Addr] {
				return fmt.Errorf("%s: slots %d-%d still on a stopped master", n.Addr(), s.Start, s.End)
			}
		}
	}
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}

// Client is a cluster client for the test's own checks.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	tb.Cleanup(func() { cl.Close() })
	return cl
}
