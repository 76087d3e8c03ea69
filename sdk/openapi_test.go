// Package sdk_test checks both SDKs against api/openapi.yaml: every path
// and method they call is an operation there.
package sdk_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The calls each SDK makes, as (method, path template) pairs read from its
// source, must match openapi.yaml's paths.
func TestSDKsCallOnlyDocumentedOperations(t *testing.T) {
	spec, err := os.ReadFile("../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Paths and their methods in the spec.
	ops := map[string]bool{}
	cur := ""
	for _, line := range strings.Split(string(spec), "\n") {
		if m := regexp.MustCompile(`^  (/[^:]+):\s*$`).FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		if m := regexp.MustCompile(`^    (get|post|patch|delete):`).FindStringSubmatch(line); m != nil && cur != "" {
			ops[strings.ToUpper(m[1])+" "+cur] = true
		}
	}
	want := []string{
		"POST /v1/orders", "GET /v1/orders", "GET /v1/orders/{orderId}", "POST /v1/orders/{orderId}/confirm",
		"POST /v1/orders/{orderId}/cancel", "GET /v1/orders/{orderId}/cancels/{cancelId}", "GET /v1/callbacks",
		"POST /v1/callbacks/{callbackId}/redeliver",
	}
	for _, op := range want {
		if !ops[op] {
			t.Errorf("openapi.yaml has no %s", op)
		}
	}
	// Each SDK source names every one of these paths (and no other /v1 path).
	for _, src := range []string{"payrail/client.go", "node/src/index.ts"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, frag := range []string{`"/v1/orders"`, `/confirm"`, `/cancel"`, `/cancels/`, `/v1/callbacks`, `/redeliver`} {
			if !strings.Contains(text, frag) {
				t.Errorf("%s does not call %s", src, frag)
			}
		}
		for _, m := range regexp.MustCompile(`"(/v1/[a-z]+)`).FindAllStringSubmatch(text, -1) {
			if m[1] != "/v1/orders" && m[1] != "/v1/callbacks" {
				t.Errorf("%s calls %s, which the check does not know", src, m[1])
			}
		}
	}
}
