package httpapi

import (
	"net/http"
	"strings"

	"github.com/payrail/payrail/internal/ops"
	"github.com/payrail/payrail/internal/payment"
)

type createOperatorRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// createOperator creates an ops console account. The password is only ever
// stored as a bcrypt hash and never echoed.
func (s *Server) createOperator(w http.ResponseWriter, r *http.Request) {
	var req createOperatorRequest
	if err := decodeJSON(r, body(r), &req); err != nil {
		writeError(r.Context(), w, err)
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	if err := ops.CheckOperator(req.Name, req.Password); err != nil {
		writeError(r.Context(), w, err)
		return
	}
	hash, err := ops.HashPassword(req.Password)
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	op, err := s.Store.CreateOperator(r.Context(), req.Name, hash)
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	logger(r.Context()).Info("operator created", "operator", op.Name, "operator_id", op.OperatorID)
	writeJSON(w, http.StatusCreated, op)
}

type patchOperatorRequest struct {
	Status *string `json:"status"`
}

// patchOperator suspends (SUSPENDED) or reinstates (ACTIVE) an operator. A
// suspended operator's open sessions are refused on their next request.
func (s *Server) patchOperator(w http.ResponseWriter, r *http.Request) {
	var req patchOperatorRequest
	if err := decodeJSON(r, body(r), &req); err != nil {
		writeError(r.Context(), w, err)
		return
	}
	if req.Status == nil || (*req.Status != "ACTIVE" && *req.Status != "SUSPENDED") {
		writeError(r.Context(), w, payment.Errorf(payment.CodeInvalidRequest, "status must be ACTIVE or SUSPENDED"))
		return
	}
	op, err := s.Store.SetOperatorStatus(r.Context(), r.PathValue("name"), *req.Status)
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	logger(r.Context()).Info("operator status changed", "operator", op.Name, "status", op.Status)
	writeJSON(w, http.StatusOK, op)
}

// deleteOperator removes an operator; their sessions end at once.
func (s *Server) deleteOperator(w http.ResponseWriter, r *http.Request) {
	if err := s.Store.DeleteOperator(r.Context(), r.PathValue("name")); err != nil {
		writeError(r.Context(), w, err)
		return
	}
	logger(r.Context()).Info("operator deleted", "operator", r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
}
