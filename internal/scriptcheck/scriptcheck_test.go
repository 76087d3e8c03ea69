package scriptcheck

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the directory holding go.mod, found from the test's directory up.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// trackedFiles lists the repository's files (git ls-files, else a walk).
func trackedFiles(t *testing.T, root string) []string {
	t.Helper()
	if out, err := exec.Command("git", "-C", root, "ls-files").Output(); err == nil && len(out) > 0 {
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	var files []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".run") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	return files
}

func isShellScript(root, rel string) bool {
	if strings.HasSuffix(rel, ".sh") || rel == "Makefile" || strings.HasPrefix(rel, ".ci/") {
		return true
	}
	f, err := os.Open(filepath.Join(root, rel))
	if err != nil {
		return false
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	return strings.HasPrefix(line, "#!") && (strings.Contains(line, "sh") || strings.Contains(line, "bash"))
}

var fixedTmp = regexp.MustCompile(`(^|[^A-Za-z0-9_.$-])/(var/)?tmp(/|["'\s;)]|$)`)

// TestNoFixedTmpPaths: no script, the Makefile, CI, chaos or the load generator
// names a fixed path in /tmp (a shared, world-writable directory where another
// local user can plant a symlink before root opens or chmods the path).
// Private temporary files come from mktemp, $TMPDIR or t.TempDir.
func TestNoFixedTmpPaths(t *testing.T) {
	root := repoRoot(t)
	checked := 0
	for _, rel := range trackedFiles(t, root) {
		goFile := strings.HasSuffix(rel, ".go") && (strings.HasPrefix(rel, "chaos/") || strings.HasPrefix(rel, "cmd/loadgen/"))
		if !goFile && !isShellScript(root, rel) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			continue // listed by git but deleted in the working tree
		}
		checked++
		for i, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "mktemp") || strings.Contains(line, "${TMPDIR") {
				continue
			}
			if fixedTmp.MatchString(line) {
				t.Errorf("%s:%d names a fixed /tmp path (use mktemp, $TMPDIR or .run/): %s", rel, i+1, strings.TrimSpace(line))
			}
		}
	}
	if checked < 4 {
		t.Fatalf("checked only %d files; the scripts were not found", checked)
	}
}

// sandbox copies scripts/ into a fresh directory that stands in for the
// repository, so its .run/ is a temporary directory and nothing the test runs
// can reach the real .run/ or the servers running there.
func sandbox(t *testing.T) (repo string) {
	t.Helper()
	for _, tool := range []string{"bash", "flock"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	src := filepath.Join(repoRoot(t), "scripts")
	repo = filepath.Join(t.TempDir(), "repo")
	if err := os.MkdirAll(filepath.Join(repo, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sh") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, "scripts", e.Name()), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return repo
}

// script runs a copied script with env added to a minimal environment.
func script(t *testing.T, repo string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(repo, "scripts", "services.sh")}, args...)...)
	cmd.Dir = repo
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestServicesLockIgnoresPlantedSymlink: the lock services.sh takes lives in
// the repository's .run/ (private to us), is created 0600 and never chmod-ed,
// and a symlink planted where the lock goes is refused, leaving its target
// untouched. (The old lock, /tmp/payrail-services.lock chmod 666 by root,
// made any file world-writable through such a symlink.)
func TestServicesLockIgnoresPlantedSymlink(t *testing.T) {
	t.Run("lock under .run", func(t *testing.T) {
		repo := sandbox(t)
		run := filepath.Join(repo, ".run")
		if err := os.Mkdir(run, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(run, 0o777) // as if made world-writable
		if out, err := script(t, repo, nil, "down"); err != nil {
			t.Fatalf("services.sh down: %v\n%s", err, out)
		}
		st, err := os.Lstat(filepath.Join(run, "services.lock"))
		if err != nil {
			t.Fatalf("no lock file in .run/ (it must not live in /tmp): %v", err)
		}
		if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 {
			t.Fatalf("lock file mode %v, want a regular file readable by its owner only", st.Mode())
		}
		rst, _ := os.Stat(run)
		if rst.Mode().Perm()&0o066 != 0 {
			t.Fatalf(".run/ mode %v: others must not be able to read it or plant files in it", rst.Mode().Perm())
		}
	})
	t.Run("planted symlink", func(t *testing.T) {
		repo := sandbox(t)
		run := filepath.Join(repo, ".run")
		if err := os.Mkdir(run, 0o700); err != nil {
			t.Fatal(err)
		}
		victim := filepath.Join(filepath.Dir(repo), "victim")
		if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(victim, 0o644)
		if err := os.Symlink(victim, filepath.Join(run, "services.lock")); err != nil {
			t.Fatal(err)
		}
		out, err := script(t, repo, nil, "down")
		if err == nil || !strings.Contains(out, "symlink") {
			t.Errorf("services.sh down with a planted lock symlink: err=%v, want a refusal naming the symlink\n%s", err, out)
		}
		st, err := os.Stat(victim)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Fatalf("the symlink's target changed mode to %v", st.Mode().Perm())
		}
		if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
			t.Fatalf("the symlink's target changed: %q", b)
		}
	})
}

// TestNoPasswordsOnCommandLines runs services.sh against a PostgreSQL and a
// Redis it finds at configured URLs, with psql, pg_isready and redis-cli
// replaced by fakes that record their arguments and environment: the
// passwords must travel in PGPASSWORD / REDISCLI_AUTH, never in an argument
// (which every local user sees in ps).
func TestNoPasswordsOnCommandLines(t *testing.T) {
	repo := sandbox(t)
	fake := filepath.Join(filepath.Dir(repo), "fakebin")
	if err := os.Mkdir(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(filepath.Dir(repo), "calls.log")
	const tool = `#!/bin/sh
{ printf 'ARGV %s' "$(basename "$0")"; for a in "$@"; do printf ' [%s]' "$a"; done; echo
  echo "ENV $(basename "$0") PGPASSWORD=${PGPASSWORD-} REDISCLI_AUTH=${REDISCLI_AUTH-}"; } >>"$FAKE_LOG"
case "$(basename "$0")" in
  redis-cli) echo PONG ;;
  psql) echo 1 ;;
esac
exit 0
`
	for _, name := range []string{"psql", "pg_isready", "redis-cli"} {
		if err := os.WriteFile(filepath.Join(fake, name), []byte(tool), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const pw = "s3cretPW"
	env := []string{
		"PATH=" + fake + string(os.PathListSeparator) + os.Getenv("PATH"),
		"PG_BINDIR=" + fake,
		"FAKE_LOG=" + log,
		"PAYRAIL_DATABASE_URL=postgres://app:" + pw + "@127.0.0.1:1/app?sslmode=disable",
		"PAYRAIL_REDIS_URL=redis://:" + pw + "@127.0.0.1:1/0",
	}
	for _, args := range [][]string{{"up", "--fast", "--owner", "test"}, {"status"}, {"psql", "-c", "select 1"}, {"redis-cli", "ping"}} {
		if out, err := script(t, repo, env, args...); err != nil {
			t.Errorf("services.sh %v: %v\n%s", args, err, out)
		}
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("the fake tools were never called: %v", err)
	}
	var psqlAuth, redisAuth bool
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "ARGV ") && strings.Contains(line, pw):
			t.Errorf("a password on a command line: %s", line)
		case strings.HasPrefix(line, "ENV psql PGPASSWORD="+pw+" "):
			psqlAuth = true
		case strings.HasPrefix(line, "ENV redis-cli ") && strings.HasSuffix(line, "REDISCLI_AUTH="+pw):
			redisAuth = true
		}
	}
	if !psqlAuth || !redisAuth {
		t.Errorf("psql got the password in PGPASSWORD: %v; redis-cli in REDISCLI_AUTH: %v\n%s", psqlAuth, redisAuth, b)
	}
}
