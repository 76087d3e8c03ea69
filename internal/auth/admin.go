package auth

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// AdminTokenOK reports whether r carries "Authorization: Bearer T" for one
// of tokens (two during a rotation: PAYRAIL_ADMIN_TOKENS). Every token is
// compared, in constant time, so the answer's timing says nothing about
// which one matched or how much of one did. No tokens: nothing is accepted.
func AdminTokenOK(tokens []string, r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	match := 0
	for _, t := range tokens {
		if t != "" {
			match |= subtle.ConstantTimeCompare([]byte(got), []byte(t))
		}
	}
	return ok && got != "" && match == 1
}
