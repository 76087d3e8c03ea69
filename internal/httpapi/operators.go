package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/payrail/payrail/internal/ops"
	"github.com/payrail/payrail/internal/payment"
	"github.com/payrail/payrail/internal/store"
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
	op, err := s.audited(r).CreateOperator(r.Context(), req.Name, hash)
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
	op, err := s.audited(r).SetOperatorStatus(r.Context(), r.PathValue("name"), *req.Status)
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	logger(r.Context()).Info("operator status changed", "operator", op.Name, "status", op.Status)
	writeJSON(w, http.StatusOK, op)
}

// deleteOperator removes an operator; their sessions end at once.
func (s *Server) deleteOperator(w http.ResponseWriter, r *http.Request) {
	s.operatorAction(w, r, "operator deleted", s.audited(r).DeleteOperator)
}

// resetOperator2FA removes an operator's TOTP secret and recovery codes:
// their next sign-in enrols a new authenticator.
func (s *Server) resetOperator2FA(w http.ResponseWriter, r *http.Request) {
	s.operatorAction(w, r, "operator second factor reset", s.audited(r).ResetTOTP)
}

// operatorAction runs act on the operator the path names and answers 204.
func (s *Server) operatorAction(w http.ResponseWriter, r *http.Request, done string, act func(ctx context.Context, name string) error) {
	if err := act(r.Context(), r.PathValue("name")); err != nil {
		writeError(r.Context(), w, err)
		return
	}
	logger(r.Context()).Info(done, "operator", r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
}

// audited is the store as the admin token: its privileged changes write
// an audit_log row (who, from where, which request) in their transaction.
// A Store without As (a test fake) is used as it is.
func (s *Server) audited(r *http.Request) Store {
	if as, ok := s.Store.(interface {
		As(store.Audit) *store.Store
	}); ok {
		return as.As(store.Audit{Actor: "admin token", Addr: s.sourceAddr(r).String(), RequestID: requestID(r.Context())})
	}
	return s.Store
}

// listAudit is GET /admin/audit?actor=&target=&action=&since=&before=&limit=:
// the audit trail newest first; nextBefore pages on.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	f, err := store.ParseAuditFilter(r.URL.Query())
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	entries, err := s.Store.AuditLog(r.Context(), f)
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	out := map[string]any{"entries": entries}
	if len(entries) == f.Limit {
		out["nextBefore"] = entries[len(entries)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}
