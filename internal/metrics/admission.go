package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/payrail/payrail/internal/admit"
)

// Admission exports an api process's overload control (internal/admit):
// what it judged last, how many merchants have a lowered new-order rate and
// how many new orders those rates refused.
func Admission(reg prometheus.Registerer, c *admit.Controller) {
	if c == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "payrail_admission_service_seconds",
			Help: "Median time to serve an admitted merchant request in the last judged window."},
			func() float64 { return c.Stats().Median.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "payrail_admission_baseline_seconds",
			Help: "The lowest window median of recent minutes: what serving costs unloaded."},
			func() float64 { return c.Stats().Baseline.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "payrail_admission_overloaded",
			Help: "1 while the last judged window was overload."},
			func() float64 {
				if c.Stats().Overloaded {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "payrail_admission_lowered_merchants",
			Help: "Merchants whose new-order rate this process has lowered."},
			func() float64 { return float64(c.Stats().Lowered) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "payrail_admission_refused_total",
			Help: "New orders refused 429 by a lowered rate."},
			func() float64 { return float64(c.Stats().Refused) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "payrail_admission_slow_starts_total",
			Help: "Merchants that started a flood of new orders beside others and were ramped up from their fair share."},
			func() float64 { return float64(c.Stats().SlowStarts) }),
	)
}
