package metrics

import "github.com/prometheus/client_golang/prometheus"

// PGEvents counts PG webhooks at the door by provider and outcome (stored,
// duplicate, invalid, bad_signature, other_type, unknown_order): what the
// unsigned door refused or dropped is a number here, never a stored row.
type PGEvents struct{ c *prometheus.CounterVec }

// NewPGEvents registers payrail_pg_webhooks_total{provider,outcome}.
func NewPGEvents(reg prometheus.Registerer) *PGEvents {
	p := &PGEvents{c: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payrail_pg_webhooks_total",
		Help: "PG webhooks received, by provider and what the door did with them.",
	}, []string{"provider", "outcome"})}
	reg.MustRegister(p.c)
	return p
}

// Count records one event; it fits httpapi.Server.PGEvent. Both labels come
// from fixed sets (the route accepts two providers).
func (p *PGEvents) Count(provider, outcome string) { p.c.WithLabelValues(provider, outcome).Inc() }
