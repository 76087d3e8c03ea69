package httpapi

import (
	"net/http"
	"strings"

	"github.com/payrail/payrail/internal/ops"
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
