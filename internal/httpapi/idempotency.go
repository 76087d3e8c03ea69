package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"net/http"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

// reply is a rendered answer: status, headers and a JSON body.
type reply struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    json.RawMessage   `json:"body"`
}

func makeReply(status int, headers map[string]string, v any) (reply, error) {
	b, err := marshal(v)
	return reply{Status: status, Headers: headers, Body: bytes.TrimSpace(b)}, err
}

func (rp reply) write(w http.ResponseWriter) {
	for k, v := range rp.Headers {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(rp.Status)
	_, _ = w.Write(rp.Body)
	_, _ = w.Write([]byte("\n"))
}

// idempotent runs effect under the request's Idempotency-Key (DESIGN.md):
// same key and body replay the stored answer; another body is
// IDEMPOTENCY_KEY_REUSED; one still in flight is IDEMPOTENCY_KEY_IN_USE. The
// effect commits the key's answer (render of its result) in its own
// transaction through fin. On an error the key is released: nothing
// happened, so a retry may run. ok is false when the answer is already
// written (an error, or the stored answer replayed).
func idempotent[T any](s *Server, w http.ResponseWriter, r *http.Request, required bool,
	effect func(fin *store.IdemFinish[T]) (T, error), render func(result T) (reply, error)) (result T, ok bool) {
	ctx := r.Context()
	var zero T
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		if required {
			writeError(ctx, w, payment.Errorf(payment.CodeIdempotencyKeyMissing, "this endpoint requires an Idempotency-Key header"))
			return zero, false
		}
		res, err := effect(nil)
		if err != nil {
			writeError(ctx, w, err)
			return zero, false
		}
		return res, true
	}
	if len(key) > 255 {
		writeError(ctx, w, payment.Errorf(payment.CodeInvalidRequest, "Idempotency-Key must be at most 255 characters"))
		return zero, false
	}
	hash := sha256.Sum256(body(r))
	scope := store.IdemScope{MerchantID: merchantID(r), Method: r.Method, Path: r.URL.EscapedPath(), Key: key}
	claim, stored, err := s.Store.ClaimIdempotency(ctx, scope, hash[:])
	if err != nil {
		writeError(ctx, w, err)
		return zero, false
	}
	if stored != nil {
		var rp reply
		if err := json.Unmarshal(stored.Body, &rp); err != nil {
			writeError(ctx, w, err)
			return zero, false
		}
		w.Header().Set("Idempotent-Replayed", "true")
		rp.write(w)
		return zero, false
	}
	fin := &store.IdemFinish[T]{Claim: claim, Render: func(result T) (int, []byte, error) {
		rp, err := render(result)
		if err != nil {
			return 0, nil, err
		}
		b, err := marshal(rp)
		return rp.Status, b, err
	}}
	res, err := effect(fin)
	if err != nil {
		if rerr := s.Store.ReleaseIdempotency(ctx, claim); rerr != nil {
			logger(ctx).Warn("release idempotency key", "err", rerr)
		}
		writeError(ctx, w, err)
		return zero, false
	}
	return res, true
}
