// Package node_test runs the TypeScript SDK's tests (node --test) from go
// test, the last of them against a real payrail started here: so make
// test covers both SDKs, on the same signing vectors.
package node_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/systest"
)

func TestTypeScriptSDK(t *testing.T) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: make test installs Node.js (scripts/test.sh); the TypeScript SDK cannot be tested without it", tool)
		}
	}
	run := func(env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// node_modules from the lock file, once (npm ci is a clean install).
	if _, err := os.Stat(filepath.Join("node_modules", "standardwebhooks")); err != nil {
		run(nil, "npm", "ci", "--no-audit", "--no-fund")
	}
	run(nil, "npm", "run", "build")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sys := systest.Start(t, systest.Options{Worker: true})
	m := sys.NewMerchant("http://127.0.0.1:" + strconv.Itoa(port) + "/callbacks")
	out := run([]string{
		"PAYRAIL_E2E_API_URL=" + sys.URL, "PAYRAIL_E2E_MOCKPG_URL=" + sys.PGURL,
		"PAYRAIL_E2E_CLIENT_ID=" + m.ClientID, "PAYRAIL_E2E_CLIENT_SECRET=" + m.ClientSecret,
		"PAYRAIL_E2E_CALLBACK_SECRET=" + m.CallbackSecret, "PAYRAIL_E2E_CALLBACK_PORT=" + strconv.Itoa(port),
	}, "node", "--test", "dist/test/")
	if !strings.Contains(out, "# fail 0") || !strings.Contains(out, "# skipped 0") || !strings.Contains(out, "# pass 5") {
		t.Fatalf("node --test:\n%s", out)
	}
	t.Logf("node --test: all 5 passed, none skipped")
}
