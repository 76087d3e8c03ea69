package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

type pgWebhook struct {
	EventType string `json:"eventType"`
	Data      struct {
		PaymentKey string `json:"paymentKey"`
		OrderID    string `json:"orderId"`
		Status     string `json:"status"`
	} `json:"data"`
}

// verifyMockPG checks X-MockPG-Signature: v1=<hex HMAC-SHA256(secret, body)>.
func verifyMockPG(secret, header string, body []byte) bool {
	got, ok := strings.CutPrefix(header, "v1=")
	if secret == "" || !ok {
		return false
	}
	sig, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(sig, m.Sum(nil))
}

// pgWebhook stores a PG event once and answers at once; a worker applies it.
func (s *Server) pgWebhook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	provider := r.PathValue("provider")
	if provider != "mockpg" && provider != "toss" {
		writeError(ctx, w, payment.Errorf(payment.CodeNotFound, "unknown provider %q", provider))
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	eventKey := ""
	if provider == "mockpg" {
		if !verifyMockPG(s.PGWebhookSecret, r.Header.Get("X-MockPG-Signature"), body) {
			writeError(ctx, w, payment.Errorf(payment.CodeInvalidSignature, "X-MockPG-Signature does not verify"))
			return
		}
		eventKey = r.Header.Get("X-MockPG-Event-Id")
	}
	// Toss payment events are unsigned: stored here, believed only after a
	// worker's lookup agrees.
	var ev pgWebhook
	if err := decodeStrictLoose(body, &ev); err != nil {
		writeError(ctx, w, err)
		return
	}
	if eventKey == "" || len(eventKey) > 200 || !payment.ValidID(eventKey) {
		sum := sha256.Sum256(body)
		eventKey = hex.EncodeToString(sum[:])
	}
	stored, err := s.Store.InsertPGEvent(ctx, store.PGEvent{Provider: provider, EventKey: eventKey, PaymentKey: nonEmpty(ev.Data.PaymentKey),
		OrderID: nonEmpty(ev.Data.OrderID), PGStatus: nonEmpty(ev.Data.Status), Body: body})
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	if stored {
		if err := s.Queue.Webhook(ctx, provider, eventKey); err != nil {
			logger(ctx).Warn("enqueue webhook failed; the sweep will re-enqueue", "err", err)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"received": true, "duplicate": !stored})
}

// decodeStrictLoose decodes a PG's JSON: valid UTF-8 and one object, but
// unknown fields are expected (the PG sends far more than payrail reads).
func decodeStrictLoose(body []byte, dst any) error {
	if !json.Valid(body) {
		return payment.Errorf(payment.CodeInvalidRequest, "body is not valid JSON")
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
