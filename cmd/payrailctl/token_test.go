package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPaymentTokenSources: the paymentToken of `pay` and `order confirm`
// comes from the argument, from stdin ("-") or from PAYRAIL_PAYMENT_TOKEN,
// and only the argument form (visible in ps) prints a note.
func TestPaymentTokenSources(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && r.URL.Path == "/sandbox/sessions":
			io.WriteString(w, `{"paymentKey":"pk_1"}`)
		case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/confirm"):
			var b struct{ PaymentToken string }
			_ = json.NewDecoder(r.Body).Decode(&b)
			got = append(got, b.PaymentToken)
			io.WriteString(w, `{"result":"SUCCESS"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	cases := []struct {
		name, stdin, env, wantNote string
		args                       []string
		want                       string
	}{
		{name: "pay arg", args: []string{"pay", "ord_1", "100", "pt_arg"}, want: "pt_arg", wantNote: "visible"},
		{name: "pay stdin", args: []string{"pay", "ord_1", "100", "-", "--wait", "1"}, stdin: "pt_stdin\n", want: "pt_stdin"},
		{name: "pay env", args: []string{"pay", "ord_1", "100"}, env: "pt_env", want: "pt_env"},
		{name: "confirm stdin", args: []string{"order", "confirm", "ord_1", "--payment-key", "k", "--amount", "100", "--token", "-"}, stdin: "pt_c_stdin", want: "pt_c_stdin"},
		{name: "confirm env", args: []string{"order", "confirm", "ord_1", "--payment-key", "k", "--amount", "100"}, env: "pt_c_env", want: "pt_c_env"},
		{name: "confirm arg", args: []string{"order", "confirm", "ord_1", "--payment-key", "k", "--amount", "100", "--token", "pt_c_arg"}, want: "pt_c_arg", wantNote: "visible"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got = nil
			env := map[string]string{"PAYRAIL_API_URL": srv.URL, "MOCKPG_URL": srv.URL, "PAYRAIL_CLIENT_ID": "ck_1", "PAYRAIL_CLIENT_SECRET": "cs_1", "PAYRAIL_PAYMENT_TOKEN": tc.env}
			var errBuf bytes.Buffer
			oldIn, oldErr := stdin, stderr
			stdin, stderr = strings.NewReader(tc.stdin), &errBuf
			defer func() { stdin, stderr = oldIn, oldErr }()
			var out bytes.Buffer
			if err := run(context.Background(), tc.args, func(k string) string { return env[k] }, &out); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("confirm bodies carried paymentToken %q, want [%q]", got, tc.want)
			}
			if note := errBuf.String(); (tc.wantNote == "") != (note == "") || !strings.Contains(note, tc.wantNote) {
				t.Fatalf("stderr = %q, want a note containing %q only for the argument form", note, tc.wantNote)
			}
		})
	}

	t.Run("none", func(t *testing.T) {
		env := map[string]string{"PAYRAIL_API_URL": srv.URL, "MOCKPG_URL": srv.URL, "PAYRAIL_CLIENT_ID": "ck_1", "PAYRAIL_CLIENT_SECRET": "cs_1"}
		oldIn, oldErr := stdin, stderr
		stdin, stderr = strings.NewReader(""), io.Discard
		defer func() { stdin, stderr = oldIn, oldErr }()
		for _, args := range [][]string{{"pay", "ord_1", "100"}, {"pay", "ord_1", "100", "-"}} {
			if err := run(context.Background(), args, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "paymentToken") {
				t.Fatalf("%v: err = %v, want a missing paymentToken error", args, err)
			}
		}
	})
}
