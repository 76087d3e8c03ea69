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

func TestOperatorCreate(t *testing.T) {
	var got map[string]string
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/admin/operators" {
			http.NotFound(w, r)
			return
		}
		auth = r.Header.Get("Authorization")
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &got)
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	env := map[string]string{"PAYRAIL_API_URL": srv.URL, "PAYRAIL_ADMIN_TOKEN": "tok"}
	getenv := func(k string) string { return env[k] }

	stdin = strings.NewReader("from stdin password\n")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"operator", "create", "alice"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	if got["name"] != "alice" || got["password"] != "from stdin password" || auth != "Bearer tok" {
		t.Errorf("sent %v with %q", got, auth)
	}
	if strings.Contains(out.String(), "from stdin password") {
		t.Error("the password is echoed")
	}

	if err := run(context.Background(), []string{"operator", "create", "--password", "flag password!", "bob"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	if got["name"] != "bob" || got["password"] != "flag password!" {
		t.Errorf("sent %v", got)
	}

	stdin = strings.NewReader("")
	if err := run(context.Background(), []string{"operator", "create", "carol"}, getenv, &out); err == nil {
		t.Error("an empty stdin was accepted as a password")
	}
	if err := run(context.Background(), []string{"operator", "create"}, getenv, &out); err == nil {
		t.Error("no name was accepted")
	}
}
