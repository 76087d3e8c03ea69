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
	"strings"
)

const rateLimitUsage = "usage: payrailctl merchant rate-limit MERCHANT_ID (--per-second N --burst M | --default)"

// merchantRateLimit sets (or resets to the default) a merchant's ingress
// rate limit through PATCH /admin/merchants/{id}.
func (c *cli) merchantRateLimit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("merchant rate-limit", flag.ContinueOnError)
	per := fs.Int("per-second", 0, "requests per second (confirms get twice this)")
	burst := fs.Int("burst", 0, "burst")
	def := fs.Bool("default", false, "return to PAYRAIL_RATE_LIMIT / PAYRAIL_RATE_BURST")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (*def == (*per > 0 || *burst > 0)) || (!*def && (*per <= 0 || *burst <= 0)) {
		return errors.New(rateLimitUsage)
	}
	var rl any // null: the default
	if !*def {
		rl = map[string]int{"perSecond": *per, "burst": *burst}
	}
	_, rb, err := c.adminCall(ctx, "PATCH", "/admin/merchants/"+pos[0], map[string]any{"rateLimit": rl}, http.StatusOK)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s\n", rb)
	return nil
}

// adminCall sends body as JSON to the admin API with the admin token and
// returns the answer's body when its status is want (0: any 2xx).
func (c *cli) adminCall(ctx context.Context, method, path string, body any, want int) (api string, answer []byte, err error) {
	if api, err = c.need("PAYRAIL_API_URL"); err != nil {
		return "", nil, err
	}
	api = strings.TrimRight(api, "/")
	token, err := c.need("PAYRAIL_ADMIN_TOKEN")
	if err != nil {
		return api, nil, err
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, api+path, rd)
	if err != nil {
		return api, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return api, nil, err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if (want != 0 && resp.StatusCode != want) || (want == 0 && resp.StatusCode/100 != 2) {
		return api, nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(rb))
	}
	return api, rb, nil
}
