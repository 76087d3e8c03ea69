package demoshop

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Event is one line of the live panel: a step of a payment's flow as
// demoshop saw it, or a callback it received.
type Event struct {
	Seq     int64     `json:"seq"`
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"` // "step" or "callback"
	OrderID string    `json:"orderId,omitempty"`
	Text    string    `json:"text"`
	// OK colours the line: true green, false red, nil neutral.
	OK *bool `json:"ok,omitempty"`
	// Callback fields, set when Kind is "callback".
	Type      string `json:"type,omitempty"`
	Status    string `json:"status,omitempty"`
	Verified  *bool  `json:"verified,omitempty"`
	WebhookID string `json:"webhookId,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// events keeps the recent events and fans new ones out to the open /events
// streams. It is memory only: the demo forgets on restart, which is fine for
// a demo and keeps it free of any store.
type events struct {
	mu     sync.Mutex
	seq    int64
	recent []Event
	subs   map[chan Event]struct{}
	closed chan struct{}
}

const keepEvents = 200

func newEvents() *events {
	return &events{subs: map[chan Event]struct{}{}, closed: make(chan struct{})}
}

func (e *events) add(ev Event) Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	ev.Seq = e.seq
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	e.recent = append(e.recent, ev)
	if len(e.recent) > keepEvents {
		e.recent = e.recent[len(e.recent)-keepEvents:]
	}
	for ch := range e.subs {
		select {
		case ch <- ev:
		default: // a stalled viewer misses lines rather than stalling the shop
		}
	}
	return ev
}

func (e *events) step(orderID, format string, args ...any) {
	e.add(Event{Kind: "step", OrderID: orderID, Text: fmt.Sprintf(format, args...)})
}

func (e *events) stepOK(orderID string, ok bool, format string, args ...any) {
	e.add(Event{Kind: "step", OrderID: orderID, Text: fmt.Sprintf(format, args...), OK: &ok})
}

// subscribe returns the backlog and a channel of what comes after it.
func (e *events) subscribe() ([]Event, chan Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := make(chan Event, 64)
	e.subs[ch] = struct{}{}
	return append([]Event(nil), e.recent...), ch
}

func (e *events) unsubscribe(ch chan Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.subs, ch)
}

// close ends every open stream, so a server shutting down is not held open
// by browsers watching the panel.
func (e *events) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case <-e.closed:
	default:
		close(e.closed)
	}
}

// serve streams events as Server-Sent Events, the backlog first. With
// ?order= it streams only that order's events.
func (e *events) serve(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// The stream outlives any write timeout the server has.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	order := r.URL.Query().Get("order")
	backlog, ch := e.subscribe()
	defer e.unsubscribe(ch)

	send := func(ev Event) error {
		if order != "" && ev.OrderID != order {
			return nil
		}
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", ev.Seq, b); err != nil {
			return err
		}
		return nil
	}
	fmt.Fprint(w, "retry: 2000\n\n")
	for _, ev := range backlog {
		if err := send(ev); err != nil {
			return
		}
	}
	if err := rc.Flush(); err != nil {
		return
	}
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-e.closed:
			return
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
		case ev := <-ch:
			if err := send(ev); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
