// Package demoshop is a tiny merchant that shows payrail working the way a
// person meets it: a product page, the PG's payment window, a confirm whose
// outcome is one of three badges, the signed callbacks arriving live, and a
// playground that signs any merchant request.
//
// It is a merchant, not part of payrail: it talks to payrail only over the
// public HTTP API, signs with the reference signer (auth.SignRequest) and
// verifies callbacks the way the Standard Webhooks spec says a merchant
// should. It must never decide a payment on what the browser says: the
// amount it confirms is the one it stored when it created the order, and the
// badge comes from payrail's answer. It keeps everything in memory.
package demoshop

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Config is demoshop's configuration. PublicURL and APIURL are required;
// AdminToken is needed only when ClientID/ClientSecret are not given.
type Config struct {
	// PublicURL is where browsers (and payrail's callbacks) reach demoshop,
	// without a trailing slash.
	PublicURL string
	// APIURL is payrail's api.
	APIURL string
	// AdminToken lets demoshop register itself as a merchant.
	AdminToken string
	// ClientID, ClientSecret and CallbackSecret are existing merchant
	// credentials; when ClientID or ClientSecret is empty demoshop registers.
	ClientID       string
	ClientSecret   string
	CallbackSecret string
	// CredentialsFile, when set, keeps registered credentials across
	// restarts (KEY=value lines, mode 0600).
	CredentialsFile string
	// PGConsoleURL, when set, is linked from the header (mockpg's console);
	// its /sandbox/deposits is what the "simulate deposit" button posts to.
	PGConsoleURL string
	// HTTPClient talks to payrail; nil means one with a 20 s timeout (a
	// confirm may wait up to 10 s for the outcome).
	HTTPClient *http.Client
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now; it stamps signed requests and checks
	// callback timestamps.
	Now func() time.Time
}

// Product is what the shop sells. Amount is in minor units (KRW has none).
type Product struct {
	Name        string
	Description string
	Amount      int64
}

// DefaultProduct is the one product on the demo page.
var DefaultProduct = Product{
	Name:        "Jeju hallabong tea, 20 sachets",
	Description: "Citrus tea from Jeju island. One product, one price, one button: enough to watch a payment travel from the buyer through payrail to the PG and back.",
	Amount:      15000,
}

// Server is demoshop's http.Handler.
type Server struct {
	cfg     Config
	client  *http.Client
	log     *slog.Logger
	now     func() time.Time
	creds   Credentials
	mux     *http.ServeMux
	pages   map[string]*template.Template
	events  *events
	product Product

	mu        sync.Mutex
	orders    map[string]*order // by payrail orderId
	callbacks map[string]int    // deliveries seen, by webhook-id
}

// order is demoshop's record of one order it created.
type order struct {
	OrderID         string
	MerchantOrderID string
	PaymentToken    string
	CheckoutURL     string
	Amount          int64
	Name            string
	PaymentKey      string
	CreatedAt       time.Time
	Attempts        []attempt
}

// Badges: the outcome of a confirm as the buyer is told it.
const (
	BadgeSuccess   = "SUCCESS"
	BadgeDuplicate = "DUPLICATE DETECTED"
	BadgeFailure   = "FAILURE"
	// BadgePending is for a confirm payrail accepted but whose outcome did
	// not arrive within the wait: neither a success nor a failure yet.
	BadgePending = "PENDING"
	// BadgeAwaitingDeposit: the PG issued a virtual account; the buyer
	// pays by bank transfer and the page turns SUCCESS when it lands.
	BadgeAwaitingDeposit = "AWAITING DEPOSIT"
)

// virtualAccount is the account a 가상계좌 buyer transfers to, as payrail
// answered it.
type virtualAccount struct {
	Bank, BankCode, AccountNumber, CustomerName string
	DueDate                                     time.Time
}

// attempt is one confirm (or PG failure) and what came of it.
type attempt struct {
	Action     string
	Badge      string
	Message    string
	Code       string
	HTTPStatus int
	Elapsed    time.Duration
	Body       string
	At         time.Time
	// VA is set when the PG issued a virtual account.
	VA *virtualAccount
}

//go:embed templates/*.html
var templateFS embed.FS

// New builds a Server, registering demoshop as a merchant when it has no
// credentials (see Config). It calls payrail, so payrail must be up.
func New(cfg Config) (*Server, error) {
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	cfg.APIURL = strings.TrimRight(cfg.APIURL, "/")
	for name, v := range map[string]string{"public URL": cfg.PublicURL, "payrail API URL": cfg.APIURL} {
		u, err := url.Parse(v)
		if v == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("demoshop: %s %q is not an absolute http(s) URL", name, v)
		}
	}
	s := &Server{
		cfg:       cfg,
		client:    cfg.HTTPClient,
		log:       cfg.Logger,
		now:       cfg.Now,
		events:    newEvents(),
		product:   DefaultProduct,
		orders:    map[string]*order{},
		callbacks: map[string]int{},
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: 20 * time.Second}
	}
	// payrail's callbacks must not follow redirects, and neither does
	// demoshop: a redirect from the api would be a misconfiguration to see.
	if s.client.CheckRedirect == nil {
		c := *s.client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		s.client = &c
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.ensureMerchant(ctx); err != nil {
		return nil, fmt.Errorf("demoshop: %w", err)
	}
	s.routes()
	return s, nil
}

// Credentials returns the merchant credentials demoshop uses.
func (s *Server) Credentials() Credentials { return s.creds }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	s.mux.ServeHTTP(w, r)
}

// Close ends the open /events streams; call it before shutting the HTTP
// server down, which otherwise waits for them.
func (s *Server) Close() { s.events.close() }

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.handleProduct)
	m.HandleFunc("POST /pay", s.sameSite(s.handlePay))
	m.HandleFunc("GET /return", s.handleReturn)
	m.HandleFunc("GET /return/success", s.handleReturnSuccess)
	m.HandleFunc("GET /return/fail", s.handleReturnFail)
	m.HandleFunc("GET /orders/{orderId}", s.handleResult)
	m.HandleFunc("POST /orders/{orderId}/confirm-again", s.sameSite(s.handleConfirmAgain))
	m.HandleFunc("POST /orders/{orderId}/force-failure", s.sameSite(s.handleForceFailure))
	m.HandleFunc("POST /orders/{orderId}/simulate-deposit", s.sameSite(s.handleSimulateDeposit))
	m.HandleFunc("GET /orders/{orderId}/status", s.handleOrderStatus)
	m.HandleFunc("POST /callbacks", s.handleCallback)
	m.HandleFunc("GET /events", s.events.serve)
	m.HandleFunc("GET /playground", s.handlePlayground)
	m.HandleFunc("POST /playground", s.sameSite(s.handlePlayground))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	s.mux = m
}

// sameSite refuses form posts that do not come from the shop's own pages:
// every POST of the shop's pages makes demoshop send a signed request as the
// merchant, which another site must not be able to trigger. The request's
// Origin (or, when a browser sends none, its Referer) must be the origin of
// PublicURL; a request with neither, or with Origin "null", is refused, and
// so is one a browser marks Sec-Fetch-Site: cross-site or same-site.
func (s *Server) sameSite(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if reason := s.foreignRequest(r); reason != "" {
			http.Error(w, "refused: "+reason, http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// foreignRequest says why r does not come from demoshop's own pages, or ""
// when it does.
func (s *Server) foreignRequest(r *http.Request) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return site + " request"
	}
	want := originOf(s.cfg.PublicURL)
	if o := r.Header.Get("Origin"); o != "" {
		if got := originOf(o); want == "" || got == "" || got != want {
			return fmt.Sprintf("Origin %q is not demoshop's public URL %q", o, want)
		}
		return ""
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return "no Origin or Referer header (a state-changing request must come from demoshop's own pages)"
	}
	if got := originOf(ref); want == "" || got == "" || got != want {
		return fmt.Sprintf("Referer is not on demoshop's public URL %q", want)
	}
	return ""
}

// originOf returns scheme://host[:port] of an absolute http(s) URL, or "".
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	host := u.Host
	if p := u.Port(); (u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443") {
		host = u.Hostname()
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(host)
}

func (s *Server) order(orderID string) (*order, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[orderID]
	return o, ok
}

// record appends an attempt to an order and returns a copy of the order to
// render.
func (s *Server) record(o *order, a attempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.At = s.now()
	o.Attempts = append(o.Attempts, a)
}

func (s *Server) snapshot(o *order) order {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *o
	c.Attempts = append([]attempt(nil), o.Attempts...)
	return c
}

func newMerchantOrderID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "shop-" + hex.EncodeToString(b[:])
}

// won formats an amount in KRW: 15000 → ₩15,000.
func won(amount int64) string {
	neg := amount < 0
	if neg {
		amount = -amount
	}
	digits := fmt.Sprint(amount)
	var b strings.Builder
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-₩" + b.String()
	}
	return "₩" + b.String()
}

var errUnknownOrder = errors.New("demoshop does not know this order (it keeps orders in memory; was it restarted?)")
