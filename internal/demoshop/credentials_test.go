package demoshop_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/payrail/payrail/internal/demoshop"
	"github.com/payrail/payrail/internal/systest"
)

// A restarted demoshop reuses the merchant it registered, and registers anew
// when the saved credentials no longer authenticate.
func TestCredentialsFileIsReused(t *testing.T) {
	t.Parallel()
	sys := systest.Start(t, systest.Options{})
	file := filepath.Join(t.TempDir(), "demoshop.env")
	cfg := demoshop.Config{PublicURL: "http://127.0.0.1:9", APIURL: sys.URL, AdminToken: systest.AdminToken, CredentialsFile: file, Logger: sys.Log}

	first, err := demoshop.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, mode %v", err, fi.Mode())
	}
	second, err := demoshop.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := first.Credentials(), second.Credentials(); a != b {
		t.Fatalf("second start registered anew: %s then %s", a.ClientID, b.ClientID)
	}

	if err := os.WriteFile(file, []byte("DEMOSHOP_CLIENT_ID=ck_gone\nDEMOSHOP_CLIENT_SECRET=nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	third, err := demoshop.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c := third.Credentials(); c.ClientID == "ck_gone" || c.ClientID == first.Credentials().ClientID {
		t.Fatalf("stale credentials were not replaced: %s", c.ClientID)
	}
}
