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
	api, err := c.need("PAYRAIL_API_URL")
	if err != nil {
		return err
	}
	token, err := c.need("PAYRAIL_ADMIN_TOKEN")
	if err != nil {
		return err
	}
	var rl any // null: the default
	if !*def {
		rl = map[string]int{"perSecond": *per, "burst": *burst}
	}
	b, _ := json.Marshal(map[string]any{"rateLimit": rl})
	req, _ := http.NewRequestWithContext(ctx, "PATCH", api+"/admin/merchants/"+pos[0], bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, rb)
	}
	fmt.Fprintf(c.out, "%s\n", rb)
	return nil
}
