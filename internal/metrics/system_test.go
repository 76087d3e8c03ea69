package metrics

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/payrail/payrail/internal/store"
)

type fakeAttempts []store.DeliveryAttempt

func (f fakeAttempts) LastCallbackAttemptID(context.Context) (int64, error) { return 0, nil }

func (f fakeAttempts) CallbackAttemptsAfter(_ context.Context, after int64, limit int) ([]store.DeliveryAttempt, error) {
	var out []store.DeliveryAttempt
	for _, a := range f {
		if a.ID > after && len(out) < limit {
			out = append(out, a)
		}
	}
	return out, nil
}

func TestDeliveriesObserveApprovalToAck(t *testing.T) {
	t.Parallel()
	approved := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	code := func(c int) *int { return &c }
	src := fakeAttempts{
		{ID: 1, StatusCode: code(500), StartedAt: approved.Add(time.Second), LatencyMS: 10, EventType: "payment.paid", ApprovedAt: &approved},
		{ID: 2, StatusCode: nil, StartedAt: approved.Add(5 * time.Second), LatencyMS: 10, EventType: "payment.paid", ApprovedAt: &approved},
		{ID: 3, StatusCode: code(204), StartedAt: approved.Add(30 * time.Second), LatencyMS: 500, EventType: "payment.paid", ApprovedAt: &approved},
		{ID: 4, StatusCode: code(200), StartedAt: approved, LatencyMS: 1, EventType: "payment.expired"}, // never approved
	}
	reg := prometheus.NewRegistry()
	d := NewDeliveries(reg, src, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ch := make(chan prometheus.Metric, 10)
	d.e2e.Collect(ch)
	close(ch)
	if n := len(ch); n != 1 {
		t.Fatalf("%d series, want one (payment.paid)", n)
	}
	h := d.e2e.WithLabelValues("payment.paid").(prometheus.Histogram)
	m := &dtoMetric{}
	m.read(t, h)
	if m.count != 1 || m.sum != 30.5 {
		t.Errorf("count %d sum %v, want 1 and 30.5 s", m.count, m.sum)
	}
	// A second poll sees nothing new.
	if err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.read(t, h)
	if m.count != 1 {
		t.Errorf("count %d after a second poll", m.count)
	}
}
