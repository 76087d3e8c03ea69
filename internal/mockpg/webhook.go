package mockpg

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Sign returns the X-MockPG-Signature value for a webhook body:
// "v1=" + lowercase hex HMAC-SHA256(secret, body). Receivers compute it over
// the raw body and compare in constant time (hmac.Equal).
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Webhook headers.
const (
	SignatureHeader = "X-MockPG-Signature"
	EventIDHeader   = "X-MockPG-Event-Id"
)

// WebhookEvent is the body mockpg POSTs: Toss's PAYMENT_STATUS_CHANGED.
type WebhookEvent struct {
	EventType string  `json:"eventType"`
	CreatedAt string  `json:"createdAt"` // yyyy-MM-ddTHH:mm:ss.SSS, no offset, like Toss
	Data      Payment `json:"data"`
}

// outEvent is one queued delivery.
type outEvent struct {
	id, url, what       string
	body                []byte
	duplicate, holdBack bool
}

// webhookSender delivers events one at a time, in order, from a queue, so
// that a slow or failing receiver never blocks the payment API. A "reorder"
// event is held back until the next event has gone out.
type webhookSender struct {
	s      *Server
	q      chan outEvent
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

const (
	webhookAttempts = 4
	webhookQueue    = 4096
	reorderMaxHold  = time.Second
)

func newWebhookSender(s *Server) *webhookSender {
	ctx, cancel := context.WithCancel(context.Background())
	ws := &webhookSender{s: s, q: make(chan outEvent, webhookQueue), ctx: ctx, cancel: cancel}
	ws.wg.Add(1)
	go ws.loop()
	return ws
}

func (ws *webhookSender) close() {
	ws.cancel()
	ws.wg.Wait()
}

// emitLocked queues a PAYMENT_STATUS_CHANGED event for p's current state.
func (s *Server) emitLocked(p *payment) {
	s.emitSnapshotLocked(s.toAPI(p))
}

func (s *Server) emitSnapshotLocked(data Payment) string {
	if s.webhookURL == "" {
		return ""
	}
	body, err := json.Marshal(WebhookEvent{
		EventType: "PAYMENT_STATUS_CHANGED",
		CreatedAt: s.cfg.Now().In(s.kst).Format("2006-01-02T15:04:05.000"),
		Data:      data,
	})
	if err != nil {
		return ""
	}
	ev := outEvent{
		id:        "evt_" + randomID(),
		url:       s.webhookURL,
		what:      data.Status + " " + data.PaymentKey,
		body:      body,
		duplicate: s.rollLocked(s.faults.WebhookDuplicateRate),
		holdBack:  s.rollLocked(s.faults.WebhookReorderRate),
	}
	select {
	case s.hooks.q <- ev:
	default:
		s.noteLocked("webhook", "queue full, dropped "+ev.id)
		s.log.Warn("webhook queue full, event dropped", slog.String("eventId", ev.id))
	}
	return ev.id
}

func (ws *webhookSender) loop() {
	defer ws.wg.Done()
	var held *outEvent
	var release <-chan time.Time
	for {
		select {
		case <-ws.ctx.Done():
			return
		case ev := <-ws.q:
			switch {
			case held != nil:
				ws.deliver(ev)
				ws.deliver(*held)
				held, release = nil, nil
			case ev.holdBack:
				held, release = &ev, time.After(reorderMaxHold)
				ws.s.note("fault", "webhook "+ev.id+" ("+ev.what+") held back to be overtaken")
			default:
				ws.deliver(ev)
			}
		case <-release:
			ws.deliver(*held)
			held, release = nil, nil
		}
	}
}

func (ws *webhookSender) deliver(ev outEvent) {
	ws.send(ev)
	if ev.duplicate {
		ws.s.note("fault", "webhook "+ev.id+" sent twice")
		ws.send(ev)
	}
}

// send POSTs one event, retrying a non-200 answer a few times with a short
// backoff (Toss counts only 200 as delivered).
func (ws *webhookSender) send(ev outEvent) {
	sig := Sign(ws.s.cfg.WebhookSecret, ev.body)
	backoff := 100 * time.Millisecond
	for attempt := 1; attempt <= webhookAttempts; attempt++ {
		status, err := ws.post(ev, sig)
		outcome := fmt.Sprint(status)
		if err != nil {
			outcome = err.Error()
		}
		ws.s.note("webhook", fmt.Sprintf("sent %s (%s) to %s, attempt %d: %s", ev.id, ev.what, ev.url, attempt, outcome))
		ws.s.log.Info("webhook", slog.String("eventId", ev.id), slog.String("event", ev.what),
			slog.Int("attempt", attempt), slog.String("outcome", outcome))
		if err == nil && status == http.StatusOK {
			return
		}
		if attempt == webhookAttempts {
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-ws.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff *= 3
	}
}

func (ws *webhookSender) post(ev outEvent, sig string) (int, error) {
	req, err := http.NewRequestWithContext(ws.ctx, http.MethodPost, ev.url, bytes.NewReader(ev.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mockpg-webhook/1")
	req.Header.Set(SignatureHeader, sig)
	req.Header.Set(EventIDHeader, ev.id)
	resp, err := ws.s.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

func randomID() string { return rand.Text() }
