// Package loadgen drives payrail the way merchants do (signed order, PG
// session, confirm) and measures what it takes: throughput, latency of each
// leg, the SQL and asynq ceilings on the same servers, and the CPU and memory
// spent per payment. It owns a callback sink that verifies every Standard
// Webhooks signature it receives. It never reads or writes payrail's tables
// except its own scratch schema and the rows it seeds (and removes) for the
// growth run.
package loadgen

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Arrival is the first payment.paid callback the sink accepted for an order.
type Arrival struct {
	At time.Time
	// UpdatedAt is data.updatedAt of the payload: when the order became PAID.
	UpdatedAt time.Time
	WebhookID string
}

// SinkStats counts what the sink saw.
type SinkStats struct {
	Received     int64 `json:"received"`
	Paid         int64 `json:"paid"`
	OtherEvents  int64 `json:"otherEvents"`
	BadSignature int64 `json:"badSignature"`
	// Redelivered is a payment.paid with a webhook-id already seen (a retry
	// of one event); Duplicate is a second event for an order already paid.
	Redelivered int64 `json:"redelivered"`
	Duplicate   int64 `json:"duplicate"`
}

// Sink is the merchant's callback endpoint: an HTTP server on 127.0.0.1
// that verifies signatures, records arrival times and wakes waiters.
type Sink struct {
	srv *http.Server
	ln  net.Listener

	mu      sync.Mutex
	keys    [][]byte
	arrived map[string]Arrival
	ids     map[string]bool
	waiters map[string]chan struct{}
	stats   SinkStats
}

// NewSink listens on 127.0.0.1 (a random port) and serves until Close.
func NewSink() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{ln: ln, arrived: map[string]Arrival{}, ids: map[string]bool{}, waiters: map[string]chan struct{}{}}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// URL is where callbacks should go.
func (s *Sink) URL() string { return "http://" + s.ln.Addr().String() + "/callbacks" }

// Close stops the server.
func (s *Sink) Close() error { return s.srv.Close() }

// AddSecret adds a whsec_<base64> callback secret signatures may verify with.
func (s *Sink) AddSecret(secret string) error {
	raw, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return errors.New("callback secret is not whsec_<base64>")
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	return nil
}

// Stats returns the counters so far.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Arrived returns the first payment.paid arrival of an order.
func (s *Sink) Arrived(orderID string) (Arrival, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.arrived[orderID]
	return a, ok
}

// Wait returns a channel closed when the order's payment.paid has arrived.
func (s *Sink) Wait(orderID string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.waiters[orderID]
	if !ok {
		ch = make(chan struct{})
		s.waiters[orderID] = ch
		if _, done := s.arrived[orderID]; done {
			close(ch)
		}
	}
	return ch
}

type callbackBody struct {
	Type string `json:"type"`
	Data struct {
		OrderID   string    `json:"orderId"`
		Status    string    `json:"status"`
		UpdatedAt time.Time `json:"updatedAt"`
	} `json:"data"`
}

// ServeHTTP accepts one callback: 401 on a bad signature (payrail retries,
// and the sink counts it), 204 otherwise.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Received++
	if !verify(s.keys, id, ts, sig, body) {
		s.stats.BadSignature++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var cb callbackBody
	if err := json.Unmarshal(body, &cb); err != nil || cb.Data.OrderID == "" {
		s.stats.BadSignature++ // signed garbage is as bad as a bad signature
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if cb.Type != "payment.paid" {
		s.stats.OtherEvents++
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.stats.Paid++
	if s.ids[id] {
		s.stats.Redelivered++
	} else if _, seen := s.arrived[cb.Data.OrderID]; seen {
		s.stats.Duplicate++
	}
	s.ids[id] = true
	if _, seen := s.arrived[cb.Data.OrderID]; !seen {
		s.arrived[cb.Data.OrderID] = Arrival{At: at, UpdatedAt: cb.Data.UpdatedAt, WebhookID: id}
		if ch, ok := s.waiters[cb.Data.OrderID]; ok {
			close(ch)
		} else {
			ch = make(chan struct{})
			close(ch)
			s.waiters[cb.Data.OrderID] = ch
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// verify checks a Standard Webhooks signature header (space-separated
// "v1,<base64>" entries) against every key, in constant time per entry, and
// refuses timestamps more than 5 minutes away.
func verify(keys [][]byte, id, ts, header string, body []byte) bool {
	if id == "" || ts == "" || header == "" {
		return false
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(unix, 0)).Abs() > 5*time.Minute {
		return false
	}
	for _, key := range keys {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "."))
		m.Write(body)
		want := m.Sum(nil)
		for _, part := range strings.Fields(header) {
			v, b64, ok := strings.Cut(part, ",")
			if !ok || v != "v1" {
				continue
			}
			got, err := base64.StdEncoding.DecodeString(b64)
			if err == nil && hmac.Equal(got, want) {
				return true
			}
		}
	}
	return false
}
