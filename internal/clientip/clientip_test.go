package clientip

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestOf(t *testing.T) {
	proxy := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, c := range []struct {
		peer, xff string
		trusted   []netip.Prefix
		want      string
	}{
		{"192.0.2.1:5000", "", nil, "192.0.2.1"},
		{"192.0.2.1:5000", "203.0.113.9", nil, "192.0.2.1"},                            // XFF from an untrusted peer is the client's own claim
		{"10.0.0.2:5000", "203.0.113.9", proxy, "203.0.113.9"},                         // one trusted proxy
		{"10.0.0.2:5000", "198.51.100.7, 203.0.113.9, 10.0.0.3", proxy, "203.0.113.9"}, // a spoofed prefix is ignored
		{"10.0.0.2:5000", "garbage", proxy, "10.0.0.2"},                                // a garbled chain: the peer
		{"[::ffff:192.0.2.5]:5000", "", nil, "192.0.2.5"},                              // v4-mapped peers are unmapped
		{"not an address", "", nil, "invalid IP"},
	} {
		r := &http.Request{RemoteAddr: c.peer, Header: http.Header{}}
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := Of(r, c.trusted).String(); got != c.want {
			t.Errorf("peer %s xff %q: %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
}
