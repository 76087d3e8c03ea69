// Package clientip says where a request came from when proxies may sit in
// front: the peer, or, when the peer is a trusted proxy, the rightmost
// X-Forwarded-For hop that is not one (a client can prepend anything; only
// what our own proxies appended is believed). The api (rate limits, the PG
// webhook door, the audit trail) and the ops console (sign-in throttling)
// share it, so one request is one address everywhere.
package clientip

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Of is r's client address; the zero Addr when the peer does not parse.
func Of(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := Peer(r)
	if !peer.IsValid() || !In(trusted, peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer // a garbled chain: trust only what we saw
		}
		if a = a.Unmap(); !In(trusted, a) {
			return a
		}
	}
	return peer
}

// Peer is the address of r's TCP peer; the zero Addr when it does not parse.
func Peer(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// In reports whether a is in any of nets.
func In(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}
