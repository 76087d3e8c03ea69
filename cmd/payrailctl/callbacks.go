package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// callbacks runs `payrailctl callbacks list [--order ID]` and
// `payrailctl callbacks redeliver ID`.
func (c *cli) callbacks(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: payrailctl callbacks list [--order ID] | callbacks redeliver CALLBACK_ID")
	}
	switch args[0] {
	case "list":
		fs := flag.NewFlagSet("callbacks list", flag.ContinueOnError)
		order := fs.String("order", "", "only this order's callbacks")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		path := "/v1/callbacks"
		if *order != "" {
			path += "?orderId=" + url.QueryEscape(*order)
		}
		return c.send(ctx, "GET", path, nil, nil)
	case "redeliver":
		if len(args) != 2 {
			return errors.New("usage: payrailctl callbacks redeliver CALLBACK_ID")
		}
		return c.send(ctx, "POST", "/v1/callbacks/"+url.PathEscape(args[1])+"/redeliver", nil, nil)
	}
	return fmt.Errorf("unknown callbacks command %q", args[0])
}

// listen runs `payrailctl listen [ADDR] [--status CODE]`: a callback
// receiver that prints each callback and whether its signature verifies with
// PAYRAIL_CALLBACK_SECRET (comma-separated during a rotation).
func (c *cli) listen(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("listen", flag.ContinueOnError)
	status := fs.Int("status", 200, "status to answer verified callbacks with (e.g. 500 to watch retries, 410 to disable)")
	addr := ":8099"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		addr, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "listening on http://%s (answering %d); register it as the merchant's callbackUrl\n", ln.Addr(), *status)
	srv := &http.Server{Handler: c.receiver(*status), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// receiver prints every callback; an unverifiable one is answered 401.
func (c *cli) receiver(status int) http.Handler {
	var mu sync.Mutex
	var hooks []*standardwebhooks.Webhook
	for _, s := range strings.Split(c.getenv("PAYRAIL_CALLBACK_SECRET"), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if wh, err := standardwebhooks.NewWebhook(s); err == nil {
			hooks = append(hooks, wh)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var p struct {
			Type string `json:"type"`
			Data struct {
				OrderID        string `json:"orderId"`
				Status         string `json:"status"`
				PreviousStatus string `json:"previousStatus"`
				Amount         int64  `json:"amount"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &p)
		verdict, code := "UNVERIFIED (PAYRAIL_CALLBACK_SECRET is not set)", status
		if len(hooks) > 0 {
			verdict, code = "INVALID", http.StatusUnauthorized
			for _, wh := range hooks {
				if err := wh.Verify(body, r.Header); err == nil {
					verdict, code = "ok", status
					break
				} else {
					verdict = "INVALID (" + err.Error() + ")"
				}
			}
		}
		mu.Lock()
		fmt.Fprintf(c.out, "%s %s %s order=%s %s→%s amount=%d signature=%s → %d\n", time.Now().Format("15:04:05.000"),
			r.Header.Get("webhook-id"), p.Type, p.Data.OrderID, p.Data.PreviousStatus, p.Data.Status, p.Data.Amount, verdict, code)
		mu.Unlock()
		w.WriteHeader(code)
	})
}
