package httpapi

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/payrail/payrail/internal/mockpg"
	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/pgclient"
	"github.com/payrail/payrail/internal/store"
)

// MaxWebhookBody caps a PG event: the door is unauthenticated, and a real
// PAYMENT_STATUS_CHANGED is a few KiB.
const MaxWebhookBody = 64 << 10

// pgWebhook is either event payrail reads: PAYMENT_STATUS_CHANGED
// ({eventType, data}) or a virtual account's DEPOSIT_CALLBACK (flat:
// {createdAt, secret, status, transactionKey, orderId}).
type pgWebhook struct {
	EventType string           `json:"eventType"`
	Data      pgclient.Payment `json:"data"`

	CreatedAt      string          `json:"createdAt"`
	Secret         string          `json:"secret"`
	Status         pgclient.Status `json:"status"`
	TransactionKey string          `json:"transactionKey"`
	OrderID        string          `json:"orderId"`
}

func (ev pgWebhook) deposit() pgclient.DepositEvent {
	return pgclient.DepositEvent{EventType: ev.EventType, CreatedAt: ev.CreatedAt, Secret: ev.Secret, Status: ev.Status,
		TransactionKey: ev.TransactionKey, OrderID: ev.OrderID}
}

// Outcomes of a PG webhook at the door, for Server.PGEvent.
const (
	PGEventStored       = "stored"
	PGEventReflected    = "reflected" // 200, stored IGNORED: the order already shows it, no task
	PGEventDuplicate    = "duplicate"
	PGEventInvalid      = "invalid"       // 400: fields no PG sends
	PGEventBadSignature = "bad_signature" // 401: mockpg signature missing, wrong or stale
	PGEventBadSecret    = "bad_secret"    // 401: a DEPOSIT_CALLBACK whose secret is not the order's
	PGEventOtherType    = "other_type"    // 200, not stored: not a payment status event
	PGEventUnknownOrder = "unknown_order" // 200, not stored: names nothing payrail knows
	PGEventRateLimited  = "rate_limited"  // 429: the source address is over its limit
	PGEventNotAllowed   = "not_allowed"   // 403: the source is outside PAYRAIL_PG_WEBHOOK_ALLOW_CIDRS
)

// admitWebhook applies the door's source checks before the body is read:
// the allow-list, then the per-source-address rate limit. It writes the
// refusal and returns false when the request goes no further. A Redis
// outage lets events in (logged): the PG retries anything refused for
// days, but an outage must not stop real approvals either, and every
// other bound (size, validation, known orders) still holds.
func (s *Server) admitWebhook(w http.ResponseWriter, r *http.Request, provider string) bool {
	ctx := r.Context()
	src := s.sourceAddr(r)
	if len(s.WebhookAllow) > 0 && !inAny(s.WebhookAllow, src) {
		s.countPGEvent(provider, PGEventNotAllowed)
		writeError(ctx, w, payment.Errorf(payment.CodeForbidden, "this source may not post PG webhooks"))
		return false
	}
	if s.Limiter == nil || s.WebhookLimit.PerSecond <= 0 {
		return true
	}
	d, err := s.Limiter.Allow(ctx, "pgwebhook:"+src.String(), s.WebhookLimit)
	if err != nil {
		logger(ctx).Warn("webhook rate limiter unavailable; admitting", "err", err)
		return true
	}
	d.SetHeaders(w.Header(), "pg-webhook")
	if !d.Allowed {
		s.countPGEvent(provider, PGEventRateLimited)
		writeError(ctx, w, payment.Errorf(payment.CodeRateLimited, "too many PG webhooks from this address; retry after %s s", w.Header().Get("Retry-After")))
		return false
	}
	return true
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) countPGEvent(provider, outcome string) {
	if s.PGEvent != nil {
		s.PGEvent(provider, outcome)
	}
}

// pgWebhook stores a PG event once and answers at once; a worker applies it
// after a lookup at the PG agrees. Nothing an event says is believed here:
// the door only keeps out what no PG sends (bad fields, unknown orders), so
// that a stranger's posts cost a 4xx or a counter, never a stored row, a
// lock or a line in an order's history.
func (s *Server) pgWebhook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	provider := r.PathValue("provider")
	// The mockpg door exists only in sandbox mode: next to the real PG it
	// would be a second, weaker way to say "paid".
	if provider != "toss" && (provider != "mockpg" || !s.Sandbox) {
		writeError(ctx, w, payment.Errorf(payment.CodeNotFound, "unknown provider %.40q", provider))
		return
	}
	if !s.admitWebhook(w, r, provider) {
		return
	}
	body, err := readBodyLimit(r, MaxWebhookBody)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	eventKey := ""
	if provider == "mockpg" {
		id := r.Header.Get(mockpg.EventIDHeader)
		if err := mockpg.Verify(s.PGWebhookSecret, r.Header.Get(mockpg.SignatureHeader), r.Header.Get(mockpg.TimestampHeader), id, body, s.now()); err != nil {
			s.countPGEvent(provider, PGEventBadSignature)
			writeError(ctx, w, payment.Errorf(payment.CodeInvalidSignature, "%s", err.Error()))
			return
		}
		if len(id) > 200 || !payment.ValidID(id) {
			s.countPGEvent(provider, PGEventInvalid)
			writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "X-MockPG-Event-Id must be 6-200 of [A-Za-z0-9_-]"))
			return
		}
		eventKey = id
	}
	var ev pgWebhook
	if err := decodeStrictLoose(body, &ev); err != nil {
		s.countPGEvent(provider, PGEventInvalid)
		writeError(ctx, w, err)
		return
	}
	if pgclient.IsDepositEvent(ev.Data.PaymentKey != "", ev.deposit()) {
		s.depositWebhook(w, r, provider, eventKey, body, ev.deposit())
		return
	}
	if ev.EventType != pgclient.EventPaymentStatusChanged {
		// Toss sends other types too (payouts, methods, …); answering 200
		// stops its retries. Nothing payrail reads, so nothing is stored.
		s.countPGEvent(provider, PGEventOtherType)
		writeJSON(w, http.StatusOK, map[string]any{"received": true, "stored": false})
		return
	}
	if err := pgclient.CheckEvent(ev.Data); err != nil {
		s.countPGEvent(provider, PGEventInvalid)
		writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "%s", err.Error()))
		return
	}
	keep := body
	if ev.Data.Secret != "" {
		// A virtual account's Payment carries its deposit secret: kept only
		// as its hash, like a DEPOSIT_CALLBACK's.
		var err error
		if keep, err = sealDataSecret(body); err != nil {
			writeError(ctx, w, err)
			return
		}
	}
	// The lookup of the order and the insert are one statement: the PG
	// announcing what the order already shows (every approval's DONE
	// arrives after the confirm applied it) is stored settled, IGNORED,
	// with no task, lock or lookup — what the worker decides for such an
	// event too (payment.SettlesUnlocked).
	e := store.PGEvent{Provider: provider, EventKey: eventKeyOf(eventKey, body), PaymentKey: nonEmpty(ev.Data.PaymentKey),
		OrderID: nonEmpty(ev.Data.OrderID), PGStatus: nonEmpty(string(ev.Data.Status)), Body: keep}
	res, err := s.Store.StoreStatusEvent(ctx, e)
	if s.unknownOrFailed(w, r, provider, err) {
		return
	}
	s.answerPGEvent(w, r, res.MerchantID, e, res.State)
}

// unknownOrFailed answers an event whose order lookup failed: 200 and
// not stored for an order payrail does not know, the error otherwise. It
// returns false, writing nothing, when err is nil.
func (s *Server) unknownOrFailed(w http.ResponseWriter, r *http.Request, provider string, err error) bool {
	switch {
	case err == nil:
		return false
	case payment.ErrorCode(err) == payment.CodeOrderNotFound:
		s.countPGEvent(provider, PGEventUnknownOrder)
		writeJSON(w, http.StatusOK, map[string]any{"received": true, "stored": false})
	default:
		writeError(r.Context(), w, err)
	}
	return true
}

// sealDataSecret replaces data.secret in a PAYMENT_STATUS_CHANGED body
// with its hash (pgclient.SealedSecret), keeping everything else.
func sealDataSecret(body []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, payment.Errorf(payment.CodeInvalidRequest, "body is not a JSON object")
	}
	var data map[string]any
	if err := json.Unmarshal(m["data"], &data); err != nil {
		return nil, payment.Errorf(payment.CodeInvalidRequest, "data is not a JSON object")
	}
	if s, ok := data["secret"].(string); ok {
		data["secret"] = pgclient.SealedSecret(s)
	}
	d, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	m["data"] = d
	return json.Marshal(m)
}

// depositWebhook takes a virtual account's DEPOSIT_CALLBACK. Its secret is
// compared, in constant time, with the one the PG issued for the order; a
// mismatch (or an order that has no account to deposit into) is a 401, a
// security event in the order's history, and nothing stored. Before the
// confirm's answer has been applied payrail has no secret yet: the event
// is stored and the worker checks it against the PG's own record. Either
// way its status is believed only after a lookup agrees. The secret is
// stored only as its SHA-256.
func (s *Server) depositWebhook(w http.ResponseWriter, r *http.Request, provider, eventKey string, raw []byte, ev pgclient.DepositEvent) {
	ctx := r.Context()
	if err := pgclient.CheckDepositEvent(ev); err != nil {
		s.countPGEvent(provider, PGEventInvalid)
		writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "%s", err.Error()))
		return
	}
	row, err := s.Store.OrderRowForEvent(ctx, "", ev.OrderID)
	if s.unknownOrFailed(w, r, provider, err) {
		return
	}
	want, known, err := s.Store.VASecret(row)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	// Only a secret in clear is taken at the door; the hashed form is what
	// payrail itself stores.
	match := known && !strings.HasPrefix(ev.Secret, "sha256:") && pgclient.SecretMatches(ev.Secret, want)
	if !match && (known || row.Status != payment.Confirming) {
		s.countPGEvent(provider, PGEventBadSecret)
		src := s.sourceAddr(r).String()
		logger(ctx).Warn("DEPOSIT_CALLBACK with a secret that is not the order's; refused", "order_id", row.OrderID, "source", src, "account_issued", known)
		if err := s.Store.RecordDepositSecretMismatch(ctx, row.OrderID, src); err != nil {
			logger(ctx).Error("recording the deposit secret mismatch failed", "order_id", row.OrderID, "err", err)
		}
		writeError(ctx, w, payment.Errorf(payment.CodeInvalidDepositSecret, "the secret is not this payment's"))
		return
	}
	stored := ev
	stored.EventType, stored.Secret = pgclient.EventDepositCallback, pgclient.SealedSecret(ev.Secret)
	body, err := json.Marshal(stored)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	s.storePGEvent(w, r, row.MerchantID, store.PGEvent{Provider: provider, EventKey: eventKey, PaymentKey: row.PaymentKey,
		OrderID: nonEmpty(ev.OrderID), PGStatus: nonEmpty(string(ev.Status)), Body: body}, raw)
}

// eventKeyOf is an event's key: the provider's event id, else the
// SHA-256 of the raw body.
func eventKeyOf(id string, raw []byte) string {
	if id != "" {
		return id
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// storePGEvent stores e once (its key: eventKeyOf), enqueues its
// application and answers 200.
func (s *Server) storePGEvent(w http.ResponseWriter, r *http.Request, merchantID string, e store.PGEvent, raw []byte) {
	ctx := r.Context()
	e.EventKey = eventKeyOf(e.EventKey, raw)
	stored, err := s.Store.InsertPGEvent(ctx, e)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	state := payment.PGEventState("")
	if stored {
		state = cmp.Or(e.State, payment.EventReceived)
	}
	s.answerPGEvent(w, r, merchantID, e, state)
}

// answerPGEvent counts a stored event (state "" for a duplicate),
// enqueues the application of one RECEIVED, and answers 200.
func (s *Server) answerPGEvent(w http.ResponseWriter, r *http.Request, merchantID string, e store.PGEvent, state payment.PGEventState) {
	ctx := r.Context()
	switch state {
	case payment.EventIgnored:
		s.countPGEvent(e.Provider, PGEventReflected)
	case payment.EventReceived:
		s.countPGEvent(e.Provider, PGEventStored)
		if err := s.Queue.Webhook(ctx, merchantID, e.Provider, e.EventKey); err != nil {
			logger(ctx).Warn("enqueue webhook failed; the sweep will re-enqueue", "err", err)
		}
	default:
		s.countPGEvent(e.Provider, PGEventDuplicate)
	}
	writeJSON(w, http.StatusOK, map[string]any{"received": true, "duplicate": state == ""})
}

// decodeStrictLoose decodes a PG's JSON: valid UTF-8 and one object, but
// unknown fields are expected (the PG sends far more than payrail reads).
func decodeStrictLoose(body []byte, dst any) error {
	if !json.Valid(body) {
		return payment.Errorf(payment.CodeInvalidRequest, "body is not valid JSON")
	}
	if err := storableText(body); err != nil {
		return err
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return payment.Errorf(payment.CodeInvalidRequest, "body is not a PG event: %s", describeJSONError(err))
	}
	return nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
