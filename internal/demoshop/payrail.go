package demoshop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/envfile"
)

// Credentials are what payrail gave demoshop when it registered as a
// merchant. Secrets are shown once by the admin API, so they are kept in
// memory and, when a credentials file is configured, on disk.
type Credentials struct {
	MerchantID     string `json:"merchantId"`
	ClientID       string `json:"clientId"`
	ClientSecret   string `json:"clientSecret"`
	CallbackSecret string `json:"callbackSecret"`
}

// apiResponse is one answer from payrail, with how long it took.
type apiResponse struct {
	Status  int
	Header  http.Header
	Body    []byte
	Elapsed time.Duration
}

func (r apiResponse) json() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// maxAnswer caps what demoshop reads of any payrail answer.
const maxAnswer = 1 << 20

// do sends one merchant request, signed with the client secret (or with
// signAs, when a demo wants a wrong signature), and reads the answer.
func (s *Server) do(ctx context.Context, method, path string, body []byte, hdr http.Header, secret string) (apiResponse, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.cfg.APIURL+path, rd)
	if err != nil {
		return apiResponse{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if secret == "" {
		secret = s.creds.ClientSecret
	}
	if err := auth.SignRequest(req, s.creds.ClientID, secret, s.now()); err != nil {
		return apiResponse{}, err
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return apiResponse{Elapsed: time.Since(start)}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return apiResponse{Status: resp.StatusCode, Header: resp.Header, Body: b, Elapsed: time.Since(start)}, err
}

func (s *Server) doJSON(ctx context.Context, method, path string, v any, hdr http.Header) (apiResponse, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return apiResponse{}, err
	}
	return s.do(ctx, method, path, b, hdr, "")
}

// admin sends an admin request with the bearer token.
func (s *Server) admin(ctx context.Context, method, path string, v any) (apiResponse, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return apiResponse{}, err
	}
	req, err := http.NewRequestWithContext(ctx, method, s.cfg.APIURL+path, bytes.NewReader(b))
	if err != nil {
		return apiResponse{}, err
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return apiResponse{}, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return apiResponse{Status: resp.StatusCode, Header: resp.Header, Body: rb}, err
}

// ensureMerchant settles which merchant demoshop is: the configured
// credentials, else the saved ones if they still authenticate, else a new
// merchant created through the admin API.
func (s *Server) ensureMerchant(ctx context.Context) error {
	if s.cfg.ClientID != "" && s.cfg.ClientSecret != "" {
		s.creds = Credentials{ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret, CallbackSecret: s.cfg.CallbackSecret}
		return nil
	}
	if c, ok := s.loadCredentials(); ok {
		s.creds = c
		if s.authenticates(ctx) {
			s.log.Info("demoshop: reusing saved merchant credentials", "file", s.cfg.CredentialsFile, "clientId", c.ClientID)
			s.updateURLs(ctx)
			return nil
		}
		s.log.Info("demoshop: saved merchant credentials no longer authenticate; creating a new merchant", "file", s.cfg.CredentialsFile)
	}
	if s.cfg.AdminToken == "" {
		return errors.New("no DEMOSHOP_CLIENT_ID/DEMOSHOP_CLIENT_SECRET and no PAYRAIL_ADMIN_TOKEN to create a merchant with")
	}
	r, err := s.admin(ctx, http.MethodPost, "/admin/merchants", map[string]any{
		"name":        "demoshop",
		"callbackUrl": s.cfg.PublicURL + "/callbacks",
		"returnUrl":   s.cfg.PublicURL + "/return",
	})
	if err != nil {
		return fmt.Errorf("create merchant: %w", err)
	}
	if r.Status != http.StatusCreated {
		return fmt.Errorf("create merchant: %d %s", r.Status, bytes.TrimSpace(r.Body))
	}
	var c Credentials
	if err := json.Unmarshal(r.Body, &c); err != nil {
		return fmt.Errorf("create merchant: decode answer: %w", err)
	}
	s.creds = c
	s.log.Info("demoshop: created merchant", "merchantId", c.MerchantID, "clientId", c.ClientID)
	s.saveCredentials()
	return nil
}

// authenticates reports whether the current credentials are accepted, by
// listing one order.
func (s *Server) authenticates(ctx context.Context) bool {
	r, err := s.do(ctx, http.MethodGet, "/v1/orders?limit=1", nil, nil, "")
	return err == nil && r.Status == http.StatusOK
}

// updateURLs points the saved merchant's callback and return URLs at this
// run's public URL, which may have changed since it was created.
func (s *Server) updateURLs(ctx context.Context) {
	if s.cfg.AdminToken == "" || s.creds.MerchantID == "" {
		return
	}
	r, err := s.admin(ctx, http.MethodPatch, "/admin/merchants/"+s.creds.MerchantID, map[string]any{
		"callbackUrl": s.cfg.PublicURL + "/callbacks",
		"returnUrl":   s.cfg.PublicURL + "/return",
	})
	if err != nil || r.Status >= 300 {
		s.log.Warn("demoshop: could not update the merchant's URLs", "status", r.Status, "err", err)
	}
}

const (
	credMerchantID     = "DEMOSHOP_MERCHANT_ID"
	credClientID       = "DEMOSHOP_CLIENT_ID"
	credClientSecret   = "DEMOSHOP_CLIENT_SECRET"
	credCallbackSecret = "DEMOSHOP_CALLBACK_SECRET"
)

func (s *Server) loadCredentials() (Credentials, bool) {
	if s.cfg.CredentialsFile == "" {
		return Credentials{}, false
	}
	m, err := envfile.Parse(s.cfg.CredentialsFile)
	if err != nil {
		return Credentials{}, false
	}
	c := Credentials{MerchantID: m[credMerchantID], ClientID: m[credClientID], ClientSecret: m[credClientSecret], CallbackSecret: m[credCallbackSecret]}
	return c, c.ClientID != "" && c.ClientSecret != ""
}

// saveCredentials writes the credentials, owner-readable only, for the next
// start. A failure costs only a new merchant next time, so it is logged.
func (s *Server) saveCredentials() {
	if s.cfg.CredentialsFile == "" {
		return
	}
	var b strings.Builder
	b.WriteString("# demoshop's merchant credentials, written by demoshop; delete to make it register anew.\n")
	for _, kv := range [][2]string{{credMerchantID, s.creds.MerchantID}, {credClientID, s.creds.ClientID}, {credClientSecret, s.creds.ClientSecret}, {credCallbackSecret, s.creds.CallbackSecret}} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	tmp := s.cfg.CredentialsFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		s.log.Warn("demoshop: could not save credentials", "err", err)
		return
	}
	if err := os.Rename(tmp, s.cfg.CredentialsFile); err != nil {
		s.log.Warn("demoshop: could not save credentials", "err", err)
	}
}
