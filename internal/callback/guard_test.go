package callback

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeResolver answers from a table; a name with several answers gives them
// in turn (the last one repeats), which is how DNS rebinding looks.
type fakeResolver struct {
	mu    sync.Mutex
	names map[string][]string
	calls map[string]int
}

func (f *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	answers, ok := f.names[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	i := min(f.calls[host], len(answers)-1)
	f.calls[host]++
	var out []net.IPAddr
	for _, a := range strings.Split(answers[i], ",") {
		out = append(out, net.IPAddr{IP: net.ParseIP(a)})
	}
	return out, nil
}

func newResolver() *fakeResolver {
	return &fakeResolver{names: map[string][]string{
		"shop.example":    {"93.184.216.34"},
		"shop6.example":   {"2606:4700::6810:85e5"},
		"private.example": {"10.0.0.5"},
		"mixed.example":   {"93.184.216.34,127.0.0.1"},
		"meta.example":    {"169.254.169.254"},
		"rebind.example":  {"93.184.216.34", "127.0.0.1"},
		"localhost":       {"127.0.0.1"},
	}}
}

func TestValidateURL(t *testing.T) {
	g := &Guard{Resolver: newResolver()}
	refused := []string{
		"https://127.0.0.1/cb", "https://127.8.9.10/cb", "https://[::1]/cb", "https://localhost/cb", "https://app.localhost/cb",
		"https://10.1.2.3/cb", "https://172.16.0.1/cb", "https://172.31.255.255/cb", "https://192.168.1.1/cb", "https://[fc00::1]/cb", "https://[fd12:3456::1]/cb",
		"https://169.254.169.254/latest/meta-data/", "https://169.254.0.1/", "https://[fe80::1]/cb",
		"https://100.64.0.1/cb", "https://100.127.255.254/cb",
		"https://0.0.0.0/cb", "https://0.1.2.3/cb", "https://[::]/cb",
		"https://224.0.0.1/cb", "https://239.255.255.250/cb", "https://[ff02::1]/cb", "https://255.255.255.255/cb",
		"https://[::ffff:127.0.0.1]/cb", "https://[::ffff:10.0.0.1]/cb", "https://[::ffff:8.8.8.8]/cb",
		"https://[64:ff9b::10.0.0.1]/cb", "https://[64:ff9b::127.0.0.1]/cb", "https://[64:ff9b::169.254.169.254]/cb",
		"https://[2002:a00:1::1]/cb", // 6to4 of 10.0.0.1
		// Numeric spellings inet_aton reads as 127.0.0.1 (and friends).
		"https://2130706433/cb", "https://0177.0.0.1/cb", "https://0x7f.0.0.1/cb", "https://0x7f000001/cb",
		"https://127.1/cb", "https://0x7f.1/cb", "https://017700000001/cb", "https://3232235777/cb", "https://0xA9FEA9FE/cb",
		// Names that resolve inward.
		"https://private.example/cb", "https://mixed.example/cb", "https://meta.example/cb", "https://unknown.example/cb",
		// Shape.
		"http://shop.example/cb", "ftp://shop.example/cb", "https:///cb", "/cb", "shop.example/cb", "https://user:pw@shop.example/cb",
		"https://shop.example:0/cb", "https://shop.example:99999/cb", "javascript:alert(1)", "https://shop.example/" + strings.Repeat("a", 2100),
	}
	for _, u := range refused {
		if err := g.ValidateURL(u); err == nil {
			t.Errorf("ValidateURL(%q) = nil, want refused", u)
		}
	}
	allowed := []string{
		"https://shop.example/cb", "https://shop.example:8443/payrail/cb?x=1", "https://shop6.example/cb",
		"https://93.184.216.34/cb", "https://[2606:4700::1]/cb", "https://[64:ff9b::808:808]/cb",
	}
	for _, u := range allowed {
		if err := g.ValidateURL(u); err != nil {
			t.Errorf("ValidateURL(%q) = %v, want allowed", u, err)
		}
	}
	dev := &Guard{AllowPrivate: true, Resolver: newResolver()}
	for _, u := range []string{"http://127.0.0.1:8090/callbacks", "http://localhost:8090/cb", "https://10.0.0.1/cb"} {
		if err := dev.ValidateURL(u); err != nil {
			t.Errorf("AllowPrivate: ValidateURL(%q) = %v", u, err)
		}
	}
	for _, u := range []string{"http://2130706433/cb", "ftp://127.0.0.1/cb"} {
		if err := dev.ValidateURL(u); err == nil {
			t.Errorf("AllowPrivate: ValidateURL(%q) = nil, want refused", u)
		}
	}
}

func TestParseInetAton(t *testing.T) {
	for in, want := range map[string]string{
		"2130706433": "127.0.0.1", "0177.0.0.1": "127.0.0.1", "0x7f.0.0.1": "127.0.0.1", "127.1": "127.0.0.1",
		"0x7f.1": "127.0.0.1", "10.0.258": "10.0.1.2", "0": "0.0.0.0", "0xA9FEA9FE": "169.254.169.254",
	} {
		got, ok := parseInetAton(in)
		if !ok || got.String() != want {
			t.Errorf("parseInetAton(%q) = %v, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"shop.example", "1.2.3.4.5", "256.1.1.1", "4294967296", "09.1.1.1", "0x", "1..2", "", "1.2.3.256"} {
		if got, ok := parseInetAton(in); ok && in != "0x" {
			t.Errorf("parseInetAton(%q) = %v, want not a number", in, got)
		}
	}
}

func TestForbiddenEmbeddings(t *testing.T) {
	for s, want := range map[string]bool{
		"8.8.8.8": false, "64:ff9b::808:808": false, "2002:808:808::1": false,
		"64:ff9b::a00:1": true, "2002:7f00:1::": true, "::ffff:8.8.8.8": true, "fe80::1%eth0": true,
	} {
		if got := Forbidden(netip.MustParseAddr(s)); got != want {
			t.Errorf("Forbidden(%s) = %v, want %v", s, got, want)
		}
	}
}

// target is a local server that counts what reaches it.
func target(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func post(d *Deliverer, url string) Attempt {
	return d.Post(context.Background(), url, "msg_guardtest", []byte(`{}`), []string{vecSecret})
}

func TestDialRefusesPrivateTargets(t *testing.T) {
	srv, hits := target(t, nil)
	d := &Deliverer{Client: NewHTTPClient(&Guard{Resolver: newResolver()}), Timeout: 2 * time.Second}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	for _, u := range []string{srv.URL, "http://localhost:" + port, "http://[::ffff:127.0.0.1]:" + port, "http://private.example:" + port, "http://mixed.example:" + port} {
		a := post(d, u)
		if a.Err == nil || !errors.Is(a.Err, ErrForbiddenTarget) {
			t.Errorf("%s: err = %v, want ErrForbiddenTarget", u, a.Err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the private target", n)
	}
}

func TestDialCatchesRebinding(t *testing.T) {
	srv, hits := target(t, nil)
	res := newResolver()
	g := &Guard{Resolver: res}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	// Registration sees a public address…
	if err := g.ValidateURL("https://rebind.example:" + port + "/cb"); err != nil {
		t.Fatalf("registration: %v", err)
	}
	// …delivery resolves again and gets loopback, where srv listens.
	d := &Deliverer{Client: NewHTTPClient(g), Timeout: 2 * time.Second}
	a := post(d, "http://rebind.example:"+port+"/cb")
	if !errors.Is(a.Err, ErrForbiddenTarget) {
		t.Fatalf("err = %v, want ErrForbiddenTarget", a.Err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the rebound target", n)
	}
}

func TestControlChecksTheDialledAddress(t *testing.T) {
	g := &Guard{}
	for _, a := range []string{"127.0.0.1:80", "[::1]:443", "10.0.0.1:443", "169.254.169.254:80"} {
		if err := g.control("tcp", a, nil); !errors.Is(err, ErrForbiddenTarget) {
			t.Errorf("control(%s) = %v", a, err)
		}
	}
	if err := g.control("tcp", "93.184.216.34:443", nil); err != nil {
		t.Errorf("control(public) = %v", err)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	inner, innerHits := target(t, nil)
	outer, _ := target(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, inner.URL+"/latest/meta-data/", http.StatusFound)
	})
	d := &Deliverer{Client: NewHTTPClient(&Guard{AllowPrivate: true}), Timeout: 2 * time.Second, Schedule: []time.Duration{time.Second}}
	a := post(d, outer.URL)
	if a.Err != nil || a.StatusCode != http.StatusFound {
		t.Fatalf("attempt = %d %v, want the 302 itself", a.StatusCode, a.Err)
	}
	if n := innerHits.Load(); n != 0 {
		t.Fatalf("redirect followed %d times", n)
	}
	if o := d.outcome(cbAt(0), a); o.Status != "PENDING" || o.Error != "HTTP 302" {
		t.Fatalf("outcome = %s %q, want a failed attempt", o.Status, o.Error)
	}
}
