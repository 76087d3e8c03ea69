// Command payrailctl is the command line for people: it migrates the
// database, creates merchants, and signs and sends merchant requests — the
// reference client of payrail's signature scheme.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/payrail/payrail/internal/auth"
	"github.com/payrail/payrail/internal/envfile"
	"github.com/payrail/payrail/internal/process"
	"github.com/payrail/payrail/internal/store"
)

const usage = `payrailctl — payrail's command line

Credentials come from the environment or, when unset, from .run/env and
.run/merchant.env (written by 'make up' and 'payrailctl merchant create').

  payrailctl migrate up                          apply database migrations (PAYRAIL_DATABASE_URL)
  payrailctl merchant create --name N --callback-url URL [--return-url URL] [--save]
                                                 create a merchant (admin API); --save writes .run/merchant.env
  payrailctl merchant rate-limit ID (--per-second N --burst M | --default)
                                                 a merchant's ingress rate limit (confirms get twice it)
  payrailctl operator create NAME [--password P] create an ops console operator (admin API); password from stdin by default
  payrailctl operator suspend|reinstate|delete NAME  end an operator's access (their sessions end at once)
  payrailctl operator reset-2fa NAME             remove an operator's TOTP; their next sign-in enrols again
  payrailctl audit list [--actor A] [--target T] [--action X] [--since T] [--limit N]
                                                 the audit trail of admin changes, console actions and sign-ins
  payrailctl recon run --from 2026-12-02 [--to 2026-12-02]
                                                 reconcile those UTC days (or RFC 3339 times) with the PG's
                                                 books; waits, with a progress line, and prints the findings
  payrailctl recon show RUN_ID [--attention]     a run and its items
  payrailctl recon list                          the newest runs
  payrailctl keys status                         rows per encryption key id and AAD version (which old key may go)
  payrailctl keys reencrypt [--batch N]          re-encrypt every row not under the primary key (docs/ops.md)
  payrailctl call METHOD PATH [BODY] [-H 'K: V'] [--idempotency-key K]
                                                 sign and send a merchant request; prints status and body
  payrailctl order create --amount N --name NAME [--merchant-order-id ID]
  payrailctl order get ORDER_ID
  payrailctl order confirm ORDER_ID --payment-key K --amount N [--token T|-] [--wait N]
  payrailctl sandbox session ORDER_ID AMOUNT [--method 가상계좌]
                                                 open a mockpg payment session (no browser); prints the paymentKey
  payrailctl sandbox deposit PAYMENT_KEY         the buyer's transfer into a mockpg virtual account
  payrailctl sandbox clock ADVANCE               move mockpg's ledger clock forward (e.g. 72h: due dates pass)
  payrailctl pay ORDER_ID AMOUNT [TOKEN|-] [--wait N] [--method 가상계좌 | --virtual-account]
                                                 open a mockpg session and confirm it in one go; a virtual
                                                 account answers AWAITING_DEPOSIT with the account to pay into
    The paymentToken (order confirm --token, pay TOKEN): "-" reads it from stdin; omitted,
    it is read from PAYRAIL_PAYMENT_TOKEN. On the command line it works, but other local
    users can see it in the process list (ps), so payrailctl notes that on stderr.
  payrailctl callbacks list [--order ID]         the merchant's callbacks with their attempts
  payrailctl callbacks redeliver CALLBACK_ID     send a callback again (202; a DEAD one gets a fresh schedule)
  payrailctl listen [ADDR] [--status CODE]       receive callbacks (default :8099), print them and check their
                                                 signatures with PAYRAIL_CALLBACK_SECRET
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], envfile.Getenv(".run/merchant.env", ".run/env"), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "payrailctl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(out, usage)
		return nil
	}
	c := &cli{getenv: getenv, out: out, http: &http.Client{Timeout: 40 * time.Second}}
	switch args[0] {
	case "migrate":
		return c.migrate(ctx, args[1:])
	case "merchant":
		if len(args) > 1 && args[1] == "create" {
			return c.merchantCreate(ctx, args[2:])
		}
		if len(args) > 1 && args[1] == "rate-limit" {
			return c.merchantRateLimit(ctx, args[2:])
		}
	case "call":
		return c.call(ctx, args[1:])
	case "operator":
		return c.operator(ctx, args[1:])
	case "recon":
		return c.recon(ctx, args[1:])
	case "audit":
		return c.audit(ctx, args[1:])
	case "keys":
		return c.keys(ctx, args[1:])
	case "order":
		if len(args) > 1 {
			switch args[1] {
			case "get":
				if len(args) != 3 {
					return errors.New("usage: payrailctl order get ORDER_ID")
				}
				return c.send(ctx, "GET", "/v1/orders/"+args[2], nil, nil)
			case "create":
				return c.orderCreate(ctx, args[2:])
			case "confirm":
				return c.orderConfirm(ctx, args[2:])
			}
		}
	case "sandbox":
		switch {
		case len(args) >= 4 && args[1] == "session":
			fs := flag.NewFlagSet("sandbox session", flag.ContinueOnError)
			method := fs.String("method", "카드", "카드 or 가상계좌")
			pos, err := parseInterspersed(fs, args[2:])
			if err != nil || len(pos) != 2 {
				return errors.New("usage: payrailctl sandbox session ORDER_ID AMOUNT [--method 가상계좌]")
			}
			key, err := c.session(ctx, pos[0], pos[1], *method)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, key)
			return nil
		case len(args) == 3 && args[1] == "deposit":
			return c.sandboxPost(ctx, "/sandbox/deposits", map[string]string{"paymentKey": args[2]})
		case len(args) == 3 && args[1] == "clock":
			return c.sandboxPost(ctx, "/sandbox/clock", map[string]string{"advance": args[2]})
		}
	case "pay":
		return c.pay(ctx, args[1:])
	case "callbacks":
		return c.callbacks(ctx, args[1:])
	case "listen":
		return c.listen(ctx, args[1:])
	}
	return fmt.Errorf("unknown command %q; run 'payrailctl help'", strings.Join(args, " "))
}

type cli struct {
	getenv func(string) string
	out    io.Writer
	http   *http.Client
}

func (c *cli) need(key string) (string, error) {
	v := c.getenv(key)
	if v == "" {
		return "", fmt.Errorf("%s is not set (run 'make up' or export it)", key)
	}
	return v, nil
}

func (c *cli) migrate(ctx context.Context, args []string) error {
	if len(args) != 1 || args[0] != "up" {
		return errors.New("usage: payrailctl migrate up")
	}
	url, err := c.need("PAYRAIL_DATABASE_URL")
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, url, store.Pool{MaxConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := store.Migrate(ctx, db.DB, process.NewLogger("info", os.Stderr)); err != nil {
		return err
	}
	fmt.Fprintln(c.out, "migrations are up to date")
	return nil
}

func (c *cli) merchantCreate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("merchant create", flag.ContinueOnError)
	name := fs.String("name", "", "merchant name")
	cb := fs.String("callback-url", "", "where callbacks go")
	ret := fs.String("return-url", "", "default success/fail URL")
	save := fs.Bool("save", false, "write the credentials to .run/merchant.env")
	if err := fs.Parse(args); err != nil {
		return err
	}
	api, err := c.need("PAYRAIL_API_URL")
	if err != nil {
		return err
	}
	token, err := c.need("PAYRAIL_ADMIN_TOKEN")
	if err != nil {
		return err
	}
	body := map[string]any{"name": *name, "callbackUrl": *cb}
	if *ret != "" {
		body["returnUrl"] = *ret
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "POST", api+"/admin/merchants", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 {
		return fmt.Errorf("%s: %s", resp.Status, rb)
	}
	var m struct {
		MerchantID, ClientID, ClientSecret, CallbackSecret string
	}
	_ = json.Unmarshal(rb, &m)
	fmt.Fprintf(c.out, "%s\n", rb)
	env := fmt.Sprintf("PAYRAIL_MERCHANT_ID=%s\nPAYRAIL_CLIENT_ID=%s\nPAYRAIL_CLIENT_SECRET=%s\nPAYRAIL_CALLBACK_SECRET=%s\n", m.MerchantID, m.ClientID, m.ClientSecret, m.CallbackSecret)
	if *save {
		if err := os.MkdirAll(".run", 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(".run", "merchant.env"), []byte(env), 0o600); err != nil {
			return err
		}
		fmt.Fprintln(c.out, "# saved to .run/merchant.env; 'payrailctl call' now signs as this merchant")
	} else {
		fmt.Fprint(c.out, "# to sign as this merchant:\n"+strings.ReplaceAll("export "+env, "\nP", "\nexport P"))
	}
	return nil
}

// headerFlags collects repeated -H flags.
type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

func (c *cli) call(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	var hdrs headerFlags
	fs.Var(&hdrs, "H", "extra header 'Name: value' (repeatable)")
	idem := fs.String("idempotency-key", "", "Idempotency-Key header")
	// Flags may follow the positional arguments.
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || len(pos) > 3 {
		return errors.New("usage: payrailctl call METHOD PATH [BODY]")
	}
	var body []byte
	if len(pos) == 3 {
		body = []byte(pos[2])
		if pos[2] == "-" {
			var err error
			if body, err = io.ReadAll(os.Stdin); err != nil {
				return err
			}
		}
	}
	h := http.Header{}
	for _, kv := range hdrs {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return fmt.Errorf("header %q: want 'Name: value'", kv)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if *idem != "" {
		h.Set("Idempotency-Key", *idem)
	}
	return c.send(ctx, strings.ToUpper(pos[0]), pos[1], body, h)
}

// do signs and sends a merchant request and returns the status and body.
func (c *cli) do(ctx context.Context, method, path string, body []byte, h http.Header) (int, []byte, error) {
	api, err := c.need("PAYRAIL_API_URL")
	if err != nil {
		return 0, nil, err
	}
	clientID, err := c.need("PAYRAIL_CLIENT_ID")
	if err != nil {
		return 0, nil, err
	}
	secret, err := c.need("PAYRAIL_CLIENT_SECRET")
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(api, "/")+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := auth.SignRequest(req, clientID, secret, time.Now()); err != nil {
		return 0, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	return resp.StatusCode, rb, err
}

func (c *cli) send(ctx context.Context, method, path string, body []byte, h http.Header) error {
	status, rb, err := c.do(ctx, method, path, body, h)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "HTTP %d\n", status)
	var pretty bytes.Buffer
	if json.Indent(&pretty, rb, "", "  ") == nil {
		rb = pretty.Bytes()
	}
	fmt.Fprintf(c.out, "%s\n", bytes.TrimSpace(rb))
	if status >= 400 {
		return fmt.Errorf("request failed with HTTP %d", status)
	}
	return nil
}

func (c *cli) orderCreate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("order create", flag.ContinueOnError)
	amount := fs.Int64("amount", 0, "amount in minor units (KRW: won)")
	name := fs.String("name", "", "order name")
	moid := fs.String("merchant-order-id", "", "your own reference")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body := map[string]any{"amount": *amount, "orderName": *name}
	if *moid != "" {
		body["merchantOrderId"] = *moid
	}
	b, _ := json.Marshal(body)
	return c.send(ctx, "POST", "/v1/orders", b, nil)
}

func (c *cli) orderConfirm(ctx context.Context, args []string) error {
	if len(args) < 1 {
		return errors.New("usage: payrailctl order confirm ORDER_ID --payment-key K --amount N [--token T|-] [--wait N]")
	}
	orderID := args[0]
	fs := flag.NewFlagSet("order confirm", flag.ContinueOnError)
	key := fs.String("payment-key", "", "paymentKey from the PG")
	amount := fs.Int64("amount", 0, "amount")
	token := fs.String("token", "", "the order's paymentToken; - reads it from stdin, empty reads "+paymentTokenEnv)
	wait := fs.Int("wait", 0, "Prefer: wait=N seconds")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	tok, err := c.paymentToken(*token)
	if err != nil {
		return err
	}
	return c.confirm(ctx, orderID, *key, *amount, tok, *wait)
}

func (c *cli) confirm(ctx context.Context, orderID, key string, amount int64, token string, wait int) error {
	b, _ := json.Marshal(map[string]any{"paymentKey": key, "amount": amount, "paymentToken": token})
	h := http.Header{}
	if wait > 0 {
		h.Set("Prefer", fmt.Sprintf("wait=%d", wait))
	}
	return c.send(ctx, "POST", "/v1/orders/"+orderID+"/confirm", b, h)
}

// sandboxPost sends a JSON body to a mockpg sandbox endpoint and prints
// the answer; a non-2xx answer is an error.
func (c *cli) sandboxPost(ctx context.Context, path string, body any) error {
	pg, err := c.need("MOCKPG_URL")
	if err != nil {
		return err
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(pg, "/")+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	fmt.Fprintf(c.out, "%d\n%s\n", resp.StatusCode, rb)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("mockpg %s: %d", path, resp.StatusCode)
	}
	return nil
}

func (c *cli) session(ctx context.Context, orderID, amount, method string) (string, error) {
	pg, err := c.need("MOCKPG_URL")
	if err != nil {
		return "", err
	}
	if _, err := strconv.ParseInt(amount, 10, 64); err != nil {
		return "", fmt.Errorf("amount %q is not an integer", amount)
	}
	b := fmt.Sprintf(`{"orderId":%q,"amount":%s,"method":%q}`, orderID, amount, method)
	resp, err := c.http.Post(strings.TrimRight(pg, "/")+"/sandbox/sessions", "application/json", strings.NewReader(b))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		PaymentKey string `json:"paymentKey"`
	}
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 || json.Unmarshal(rb, &out) != nil || out.PaymentKey == "" {
		return "", fmt.Errorf("mockpg session: %d %s", resp.StatusCode, rb)
	}
	return out.PaymentKey, nil
}

func (c *cli) pay(ctx context.Context, args []string) error {
	const use = "usage: payrailctl pay ORDER_ID AMOUNT [TOKEN|-] [--wait N]  (TOKEN - reads stdin; omitted, " + paymentTokenEnv + ")"
	fs := flag.NewFlagSet("pay", flag.ContinueOnError)
	wait := fs.Int("wait", 10, "Prefer: wait=N seconds")
	method := fs.String("method", "카드", "the payment window's method: 카드 or 가상계좌")
	va := fs.Bool("virtual-account", false, "short for --method 가상계좌")
	// Flags may come anywhere; "-" (the token from stdin) is a positional argument.
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || len(pos) > 3 {
		return errors.New(use)
	}
	tokArg := ""
	if len(pos) == 3 {
		tokArg = pos[2]
	}
	token, err := c.paymentToken(tokArg)
	if err != nil {
		return err
	}
	args = pos
	if *va {
		*method = "가상계좌"
	}
	key, err := c.session(ctx, args[0], args[1], *method)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "# mockpg session paymentKey=%s method=%s\n", key, *method)
	if *method == "가상계좌" {
		fmt.Fprintf(c.out, "# deposit with: payrailctl sandbox deposit %s\n", key)
	}
	var amount int64
	if _, err := fmt.Sscan(args[1], &amount); err != nil {
		return fmt.Errorf("amount: %w", err)
	}
	return c.confirm(ctx, args[0], key, amount, token, *wait)
}

// parseInterspersed parses fs's flags wherever they stand among the
// positional arguments, which it returns in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) > 0 {
			pos = append(pos, args[0])
			args = args[1:]
		}
	}
	return pos, nil
}
