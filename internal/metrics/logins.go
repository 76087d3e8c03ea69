package metrics

import "github.com/prometheus/client_golang/prometheus"

// Logins counts the ops console's sign-ins.
type Logins struct{ c *prometheus.CounterVec }

// NewLogins registers payrail_ops_logins_total{outcome}: success, failed,
// throttled (429: too many attempts for the name or from the address) and
// busy (503: the bcrypt bound was full).
func NewLogins(reg prometheus.Registerer) *Logins {
	l := &Logins{c: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payrail_ops_logins_total",
		Help: "Ops console sign-ins by outcome.",
	}, []string{"outcome"})}
	reg.MustRegister(l.c)
	return l
}

// Observe records one sign-in; it fits ops.Console.ObserveLogin.
func (l *Logins) Observe(outcome string) { l.c.WithLabelValues(outcome).Inc() }
