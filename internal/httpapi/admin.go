package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
)

type createMerchantRequest struct {
	Name        string  `json:"name"`
	CallbackURL string  `json:"callbackUrl"`
	ReturnURL   *string `json:"returnUrl"`
}

func (s *Server) checkCallbackURL(u string) error {
	if s.ValidateCallbackURL != nil {
		if err := s.ValidateCallbackURL(u); err != nil {
			return payment.Errorf(payment.CodeInvalidCallbackURL, "callbackUrl: %v", err)
		}
		return nil
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "https" || pu.Host == "" {
		return payment.Errorf(payment.CodeInvalidCallbackURL, "callbackUrl must be an absolute https URL")
	}
	return nil
}

func checkReturnURL(u *string) error {
	if u == nil {
		return nil
	}
	pu, err := url.Parse(*u)
	if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" || len(*u) > 2048 {
		return payment.Errorf(payment.CodeInvalidRequest, "returnUrl must be an absolute http(s) URL")
	}
	return nil
}

func (s *Server) createMerchant(w http.ResponseWriter, r *http.Request) {
	var req createMerchantRequest
	if err := decodeJSON(r, body(r), &req); err != nil {
		writeError(r.Context(), w, err)
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 200 {
		writeError(r.Context(), w, payment.Errorf(payment.CodeInvalidRequest, "name is required (1–200 characters)"))
		return
	}
	if err := s.checkCallbackURL(req.CallbackURL); err != nil {
		writeError(r.Context(), w, err)
		return
	}
	if err := checkReturnURL(req.ReturnURL); err != nil {
		writeError(r.Context(), w, err)
		return
	}
	m, err := s.audited(r).CreateMerchant(r.Context(), store.NewMerchant{Name: req.Name, CallbackURL: req.CallbackURL, ReturnURL: req.ReturnURL})
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	logger(r.Context()).Info("merchant created", "merchant_id", m.MerchantID)
	writeJSON(w, http.StatusCreated, m)
}

func (s *Server) getMerchant(w http.ResponseWriter, r *http.Request) {
	m, err := s.Store.Merchant(r.Context(), r.PathValue("merchantId"))
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

type patchMerchantRequest struct {
	Status          *string `json:"status"`
	CallbackURL     *string `json:"callbackUrl"`
	ReturnURL       *string `json:"returnUrl"`
	CallbackEnabled *bool   `json:"callbackEnabled"`
	// RateLimit is {perSecond, burst}, or null for the default; absent
	// leaves it alone.
	RateLimit json.RawMessage `json:"rateLimit"`
}

// Bounds of a merchant's own rate limit (the database checks them too).
const (
	maxRatePerSecond = 100_000
	maxRateBurst     = 200_000
)

// parseRateLimit reads a PATCH's rateLimit: set says it was present.
func parseRateLimit(raw json.RawMessage) (set bool, lim *store.RateLimit, err error) {
	if raw == nil {
		return false, nil, nil
	}
	if string(raw) == "null" {
		return true, nil, nil
	}
	var v struct {
		PerSecond *int `json:"perSecond"`
		Burst     *int `json:"burst"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.PerSecond == nil || v.Burst == nil ||
		*v.PerSecond < 1 || *v.PerSecond > maxRatePerSecond || *v.Burst < 1 || *v.Burst > maxRateBurst {
		return false, nil, payment.Errorf(payment.CodeInvalidRequest, "rateLimit must be null or {perSecond: 1–%d, burst: 1–%d}", maxRatePerSecond, maxRateBurst)
	}
	return true, &store.RateLimit{PerSecond: *v.PerSecond, Burst: *v.Burst}, nil
}

func (s *Server) patchMerchant(w http.ResponseWriter, r *http.Request) {
	var req patchMerchantRequest
	if err := decodeJSON(r, body(r), &req); err != nil {
		writeError(r.Context(), w, err)
		return
	}
	if req.Status != nil && *req.Status != "ACTIVE" && *req.Status != "SUSPENDED" {
		writeError(r.Context(), w, payment.Errorf(payment.CodeInvalidRequest, "status must be ACTIVE or SUSPENDED"))
		return
	}
	if req.CallbackURL != nil {
		if err := s.checkCallbackURL(*req.CallbackURL); err != nil {
			writeError(r.Context(), w, err)
			return
		}
	}
	if err := checkReturnURL(req.ReturnURL); err != nil {
		writeError(r.Context(), w, err)
		return
	}
	setRate, rate, err := parseRateLimit(req.RateLimit)
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	m, err := s.audited(r).UpdateMerchant(r.Context(), r.PathValue("merchantId"), store.MerchantPatch{
		Status: req.Status, CallbackURL: req.CallbackURL, ReturnURL: req.ReturnURL, CallbackEnabled: req.CallbackEnabled,
		SetRateLimit: setRate, RateLimit: rate,
	})
	s.credentialsChanged()
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) addSecret(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Kind string `json:"kind"`
	}
	if err := decodeJSON(r, body(r), &req); err != nil {
		writeError(r.Context(), w, err)
		return
	}
	if req.Kind != "client" && req.Kind != "callback" {
		writeError(r.Context(), w, payment.Errorf(payment.CodeInvalidRequest, `kind must be "client" or "callback"`))
		return
	}
	id, secret, err := s.audited(r).AddSecret(r.Context(), r.PathValue("merchantId"), req.Kind)
	s.credentialsChanged()
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"secretId": id, "secret": secret, "kind": req.Kind})
}

func (s *Server) revokeSecret(w http.ResponseWriter, r *http.Request) {
	err := s.audited(r).RevokeSecret(r.Context(), r.PathValue("merchantId"), r.PathValue("secretId"))
	s.credentialsChanged()
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) credentialsChanged() {
	if s.CredentialsChanged != nil {
		s.CredentialsChanged()
	}
	if s.MerchantLimits != nil {
		s.MerchantLimits.Forget()
	}
}
