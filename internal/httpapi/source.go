package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// sourceAddr is the address a request came from: its peer, or, when the
// peer is one of TrustedProxies, the rightmost X-Forwarded-For entry that
// is not (a client can prepend anything; only what our proxies appended is
// believed). The zero Addr when nothing parses.
func (s *Server) sourceAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap()
	if !inAny(s.TrustedProxies, peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer // a garbled chain: trust only what we saw
		}
		if a = a.Unmap(); !inAny(s.TrustedProxies, a) {
			return a
		}
	}
	return peer
}

func inAny(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}
