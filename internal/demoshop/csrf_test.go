package demoshop

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestSameSiteRequiresOwnOrigin: a state-changing request runs only when its
// Origin (or, without one, its Referer) is demoshop's public URL.
func TestSameSiteRequiresOwnOrigin(t *testing.T) {
	s := &Server{cfg: Config{PublicURL: "http://127.0.0.1:8090"}}
	ran := false
	h := s.sameSite(func(w http.ResponseWriter, r *http.Request) { ran = true })
	cases := []struct {
		name string
		hdr  map[string]string
		ok   bool
	}{
		{"own origin", map[string]string{"Origin": "http://127.0.0.1:8090", "Sec-Fetch-Site": "same-origin"}, true},
		{"own origin, no fetch metadata", map[string]string{"Origin": "http://127.0.0.1:8090"}, true},
		{"own referer without origin", map[string]string{"Referer": "http://127.0.0.1:8090/orders/x"}, true},
		{"no origin, no referer", map[string]string{}, false},
		{"other origin", map[string]string{"Origin": "http://evil.example"}, false},
		{"other port", map[string]string{"Origin": "http://127.0.0.1:8091"}, false},
		{"other scheme", map[string]string{"Origin": "https://127.0.0.1:8090"}, false},
		{"null origin", map[string]string{"Origin": "null", "Referer": "http://127.0.0.1:8090/"}, false},
		{"origin wins over referer", map[string]string{"Origin": "http://evil.example", "Referer": "http://127.0.0.1:8090/"}, false},
		{"other referer", map[string]string{"Referer": "http://evil.example/http://127.0.0.1:8090/"}, false},
		{"cross-site even with own origin", map[string]string{"Origin": "http://127.0.0.1:8090", "Sec-Fetch-Site": "cross-site"}, false},
		{"same-site sibling", map[string]string{"Origin": "http://127.0.0.1:8090", "Sec-Fetch-Site": "same-site"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ran = false
			r := httptest.NewRequest("POST", "http://127.0.0.1:8090/pay", nil)
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h(w, r)
			if tc.ok && (!ran || w.Code != 200) {
				t.Fatalf("refused (%d %s), want it to run", w.Code, w.Body)
			}
			if !tc.ok && (ran || w.Code != http.StatusForbidden) {
				t.Fatalf("ran=%v code=%d, want 403 and not run", ran, w.Code)
			}
		})
	}
}

func TestOriginOf(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8090":        "http://127.0.0.1:8090",
		"HTTP://Shop.Example:80/x?y=1": "http://shop.example",
		"https://shop.example:443/":    "https://shop.example",
		"http://[::1]:80/":             "http://[::1]",
		"null":                         "",
		"javascript:alert(1)":          "",
	} {
		if got := originOf(in); got != want {
			t.Errorf("originOf(%q) = %q, want %q", in, got, want)
		}
	}
}
