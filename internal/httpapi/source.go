package httpapi

import (
	"net/http"
	"net/netip"

	"github.com/payrail/payrail/internal/clientip"
)

// sourceAddr is the address a request came from (clientip.Of with
// TrustedProxies). The zero Addr when nothing parses.
func (s *Server) sourceAddr(r *http.Request) netip.Addr { return clientip.Of(r, s.TrustedProxies) }

func inAny(nets []netip.Prefix, a netip.Addr) bool { return clientip.In(nets, a) }
