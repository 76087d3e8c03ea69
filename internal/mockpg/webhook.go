package mockpg

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sign returns the X-MockPG-Signature value for a webhook:
// "v1=" + lowercase hex HMAC-SHA256(secret, timestamp + "." + eventID + "." + body).
// The event id and the timestamp are signed so that a captured event can be
// neither replayed under a new id nor replayed late.
func Sign(secret, timestamp, eventID string, body []byte) string {
	return "v1=" + hex.EncodeToString(mac(secret, timestamp, eventID, body))
}

func mac(secret, timestamp, eventID string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp + "." + eventID + "."))
	m.Write(body)
	return m.Sum(nil)
}

// Webhook headers. The timestamp is Unix seconds.
const (
	SignatureHeader = "X-MockPG-Signature"
	EventIDHeader   = "X-MockPG-Event-Id"
	TimestampHeader = "X-MockPG-Timestamp"
)

// SignatureTolerance is how far a webhook's timestamp may be from the
// receiver's clock; an older event is refused as stale (a replay).
const SignatureTolerance = 5 * time.Minute

// Verification errors, named so a receiver can count and report them.
var (
	ErrNoSignature  = errors.New("missing or malformed X-MockPG-Signature, X-MockPG-Timestamp or X-MockPG-Event-Id")
	ErrBadSignature = errors.New("X-MockPG-Signature does not verify")
	ErrStale        = errors.New("X-MockPG-Timestamp is outside the tolerance: stale or replayed event")
)

// Verify checks a webhook's signature headers against secret at time now:
// ErrNoSignature, ErrBadSignature or ErrStale when it must be refused. The
// comparison is constant-time; the timestamp is checked after the MAC so a
// forger learns nothing from the order of the checks.
func Verify(secret, signature, timestamp, eventID string, body []byte, now time.Time) error {
	hexSig, ok := strings.CutPrefix(signature, "v1=")
	if secret == "" || !ok || timestamp == "" || eventID == "" {
		return ErrNoSignature
	}
	sig, err := hex.DecodeString(hexSig)
	if err != nil {
		return ErrNoSignature
	}
	if !hmac.Equal(sig, mac(secret, timestamp, eventID, body)) {
		return ErrBadSignature
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrNoSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > SignatureTolerance || d < -SignatureTolerance {
		return ErrStale
	}
	return nil
}

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
	// pending counts events queued and not yet delivered (or given up).
	pending atomic.Int64
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
	body, err := json.Marshal(WebhookEvent{
		EventType: "PAYMENT_STATUS_CHANGED",
		CreatedAt: s.ledgerNow().In(s.kst).Format("2006-01-02T15:04:05.000"),
		Data:      data,
	})
	if err != nil {
		return ""
	}
	return s.emitBodyLocked(body, data.Status+" "+data.PaymentKey)
}

// DepositEvent is the DEPOSIT_CALLBACK mockpg sends for a virtual account,
// Toss-shaped: flat, with the payment's secret and no payment object.
type DepositEvent struct {
	CreatedAt      string `json:"createdAt"`
	Secret         string `json:"secret"`
	Status         string `json:"status"`
	TransactionKey string `json:"transactionKey"`
	OrderID        string `json:"orderId"`
}

// emitDepositLocked queues a DEPOSIT_CALLBACK for p's current status.
func (s *Server) emitDepositLocked(p *payment) string {
	body, err := json.Marshal(DepositEvent{
		CreatedAt: s.ledgerNow().In(s.kst).Format("2006-01-02T15:04:05.000"),
		Secret:    p.Secret, Status: p.Status, TransactionKey: "ttx_" + randomID(), OrderID: p.OrderID,
	})
	if err != nil {
		return ""
	}
	return s.emitBodyLocked(body, "DEPOSIT_CALLBACK "+p.Status+" "+p.OrderID)
}

func (s *Server) emitBodyLocked(body []byte, what string) string {
	if s.webhookURL == "" {
		return ""
	}
	ev := outEvent{
		id:        "evt_" + randomID(),
		url:       s.webhookURL,
		what:      what,
		body:      body,
		duplicate: s.rollLocked(s.faults.WebhookDuplicateRate),
		holdBack:  s.rollLocked(s.faults.WebhookReorderRate),
	}
	s.hooks.pending.Add(1)
	select {
	case s.hooks.q <- ev:
	default:
		s.hooks.pending.Add(-1)
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
	defer ws.pending.Add(-1)
	ws.send(ev)
	if ev.duplicate {
		ws.s.note("fault", "webhook "+ev.id+" sent twice")
		ws.send(ev)
	}
}

// WebhooksPending is how many webhook events are queued or being sent
// (their URL was taken when they were queued: SetWebhookURL("") does not
// stop them).
func (s *Server) WebhooksPending() int64 { return s.hooks.pending.Load() }

// send POSTs one event, retrying a non-200 answer a few times with a short
// backoff (Toss counts only 200 as delivered).
func (ws *webhookSender) send(ev outEvent) {
	backoff := 100 * time.Millisecond
	for attempt := 1; attempt <= webhookAttempts; attempt++ {
		status, err := ws.post(ev)
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

func (ws *webhookSender) post(ev outEvent) (int, error) {
	req, err := http.NewRequestWithContext(ws.ctx, http.MethodPost, ev.url, bytes.NewReader(ev.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mockpg-webhook/1")
	// Signed at each attempt: a retry carries a fresh timestamp, as
	// Standard Webhooks senders do.
	ts := strconv.FormatInt(ws.s.cfg.Now().Unix(), 10)
	req.Header.Set(SignatureHeader, Sign(ws.s.cfg.WebhookSecret, ts, ev.id, ev.body))
	req.Header.Set(TimestampHeader, ts)
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
