package callback

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Resolver looks host names up; *net.Resolver is one. Tests inject a fake
// to prove that DNS rebinding is caught without the internet.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Guard keeps callbacks away from payrail's own networks (SSRF): it vets a
// callback URL at registration (ValidateURL) and the address actually dialled
// at delivery (DialContext), so a name that resolved to a public address at
// registration and to 10.0.0.1 at delivery (DNS rebinding) is still refused.
type Guard struct {
	// AllowPrivate allows private targets and plain http (local development
	// and tests; PAYRAIL_CALLBACK_ALLOW_PRIVATE).
	AllowPrivate bool
	// Resolver defaults to net.DefaultResolver.
	Resolver Resolver
	// Dialer defaults to a 5 s connect timeout.
	Dialer *net.Dialer
}

// ErrForbiddenTarget is returned (wrapped) for a refused address.
var ErrForbiddenTarget = errors.New("callback target is not a public address")

func (g *Guard) resolver() Resolver {
	if g.Resolver != nil {
		return g.Resolver
	}
	return net.DefaultResolver
}

// ValidateURL vets a callback URL at registration: absolute https (http too
// when AllowPrivate), no credentials, no IP spelled in decimal, octal or hex,
// and (unless AllowPrivate) a host whose every address is public.
func (g *Guard) ValidateURL(raw string) error {
	if len(raw) > 2048 {
		return errors.New("longer than 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && g.AllowPrivate:
	default:
		return errors.New("must be an absolute https URL")
	}
	if u.User != nil {
		return errors.New("must not carry credentials")
	}
	host := u.Hostname()
	if host == "" || u.Opaque != "" {
		return errors.New("must be an absolute https URL")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errors.New("bad port")
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !g.AllowPrivate && Forbidden(ip) {
			return fmt.Errorf("%s: %w", ip, ErrForbiddenTarget)
		}
		return nil
	}
	if ip, ok := parseInetAton(host); ok {
		// A browser, curl and inet_aton read 2130706433, 0177.0.0.1 and
		// 0x7f.1 as 127.0.0.1; Go's parser does not. Refuse every such
		// spelling rather than guess which reading the dialler will use.
		return fmt.Errorf("host %q is an IP address in a non-standard spelling (%s)", host, ip)
	}
	if g.AllowPrivate {
		return nil
	}
	lh := strings.ToLower(strings.TrimSuffix(host, "."))
	if lh == "localhost" || strings.HasSuffix(lh, ".localhost") || strings.HasSuffix(lh, ".internal") || strings.HasSuffix(lh, ".local") {
		return fmt.Errorf("%s: %w", host, ErrForbiddenTarget)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := g.resolver().LookupIPAddr(ctx, host)
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("host %q does not resolve", host)
	}
	for _, a := range addrs {
		// net.IP holds IPv4 in 16 bytes; Unmap reads it as IPv4 (a mapped
		// answer then meets the IPv4 rules).
		if ip, ok := netip.AddrFromSlice(a.IP); !ok || Forbidden(ip.Unmap()) {
			return fmt.Errorf("%s resolves to %s: %w", host, a.IP, ErrForbiddenTarget)
		}
	}
	return nil
}

// DialContext dials addr ("host:port") after resolving it once and checking
// every address it resolved to; it dials the checked address itself, so no
// second lookup can rebind the name. The dialer's Control hook checks the
// socket's address again, whatever produced it.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if g.Dialer != nil {
		d = *g.Dialer
	}
	if g.AllowPrivate {
		return d.DialContext(ctx, network, addr)
	}
	d.Control = g.control
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		addrs, err := g.resolver().LookupIPAddr(ctx, host)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				return nil, fmt.Errorf("%s resolved to a bad address: %w", host, ErrForbiddenTarget)
			}
			ips = append(ips, ip.Unmap())
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s has no address", host)
	}
	for _, ip := range ips {
		if Forbidden(ip) {
			return nil, fmt.Errorf("dial %s (%s): %w", host, ip, ErrForbiddenTarget)
		}
	}
	var errs []error
	for _, ip := range ips {
		c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// control runs on the raw socket just before connect.
func (g *Guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, ErrForbiddenTarget)
	}
	if Forbidden(ap.Addr()) {
		return fmt.Errorf("dial %s: %w", address, ErrForbiddenTarget)
	}
	return nil
}

var forbiddenPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network", incl. 0.0.0.0
		"10.0.0.0/8",      // RFC 1918
		"100.64.0.0/10",   // CGNAT
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local, incl. 169.254.169.254 (cloud metadata)
		"172.16.0.0/12",   // RFC 1918
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // TEST-NET-1
		"192.88.99.0/24",  // 6to4 relay anycast
		"192.168.0.0/16",  // RFC 1918
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // TEST-NET-2
		"203.0.113.0/24",  // TEST-NET-3
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, incl. 255.255.255.255 broadcast
		"::/128",          // unspecified
		"::1/128",         // loopback
		"::ffff:0:0/96",   // IPv4-mapped
		"::/96",           // IPv4-compatible (deprecated)
		"64:ff9b:1::/48",  // local-use NAT64
		"100::/64",        // discard
		"2001::/32",       // Teredo
		"2001:db8::/32",   // documentation
		"fc00::/7",        // unique local
		"fe80::/10",       // link-local
		"fec0::/10",       // site-local (deprecated)
		"ff00::/8",        // multicast
		"2001:10::/28",    // ORCHID
		"2001:20::/28",    // ORCHIDv2
		"5f00::/16",       // SRv6 SIDs
		"3fff::/20",       // documentation
		"100:0:0:1::/64",  // dummy prefix
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// Forbidden reports whether ip is not a public unicast address: loopback,
// private, link-local, CGNAT, unspecified, multicast, broadcast, reserved,
// IPv4-mapped, or an IPv6 translation (NAT64, 6to4) of a forbidden IPv4.
func Forbidden(ip netip.Addr) bool {
	if !ip.IsValid() || ip.Zone() != "" {
		return true
	}
	ip = ip.WithZone("")
	for _, p := range forbiddenPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			return Forbidden(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		case sixToFour.Contains(ip):
			return Forbidden(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		}
	}
	return false
}

// parseInetAton reads host the way inet_aton(3) does: one to four parts,
// each decimal, octal (leading 0) or hex (0x), the last filling the remaining
// bytes. It reports false for anything that is not such a number.
func parseInetAton(host string) (netip.Addr, bool) {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(parts) > 4 || len(parts) == 0 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" {
			return netip.Addr{}, false
		}
		base, digits := 10, p
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base, digits = 16, p[2:]
			if digits == "" {
				digits = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	last := len(vals) - 1
	for i, v := range vals[:last] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n |= v << (8 * (3 - i))
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}
