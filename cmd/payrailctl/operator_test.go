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

func TestOperatorSuspendReinstateDelete(t *testing.T) {
	var calls []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls = append(calls, r.Method+" "+r.URL.Path+" "+strings.TrimSpace(string(b)))
		switch r.Method {
		case "DELETE":
			w.WriteHeader(http.StatusNoContent)
		case "PATCH":
			if strings.Contains(r.URL.Path, "nobody") {
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(`{"code":"OPERATOR_NOT_FOUND"}`))
				return
			}
			_, _ = w.Write([]byte(`{}`))
		}
	}))
	defer srv.Close()
	env := map[string]string{"PAYRAIL_API_URL": srv.URL, "PAYRAIL_ADMIN_TOKEN": "tok"}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	for _, verb := range []string{"suspend", "reinstate", "delete"} {
		if err := run(context.Background(), []string{"operator", verb, "alice"}, getenv, &out); err != nil {
			t.Fatalf("%s: %v", verb, err)
		}
	}
	want := []string{`PATCH /admin/operators/alice {"status":"SUSPENDED"}`, `PATCH /admin/operators/alice {"status":"ACTIVE"}`, `DELETE /admin/operators/alice `}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out.String(), `operator "alice": suspended`) || !strings.Contains(out.String(), `"alice": deleted`) {
		t.Fatalf("output: %s", out.String())
	}
	if err := run(context.Background(), []string{"operator", "suspend", "nobody"}, getenv, &out); err == nil || !strings.Contains(err.Error(), "OPERATOR_NOT_FOUND") {
		t.Fatalf("unknown operator: %v", err)
	}
}

func TestAuditList(t *testing.T) {
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/admin/audit" || r.Header.Get("Authorization") != "Bearer tok" {
			http.NotFound(w, r)
			return
		}
		query = r.URL.RawQuery
		_, _ = w.Write([]byte(`{"entries":[{"id":2,"at":"2026-12-03T09:00:00Z","actor":"operator:alice","action":"merchant.updated","target":"mer_1","before":{"status":"ACTIVE"},"after":{"status":"SUSPENDED"},"sourceAddr":"192.0.2.1"}]}`))
	}))
	defer srv.Close()
	env := map[string]string{"PAYRAIL_API_URL": srv.URL, "PAYRAIL_ADMIN_TOKEN": "tok"}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"audit", "list", "--actor", "operator:alice", "--limit", "5"}, func(k string) string { return env[k] }, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(query, "actor=operator%3Aalice") || !strings.Contains(query, "limit=5") {
		t.Errorf("query %q", query)
	}
	got := out.String()
	if !strings.Contains(got, "merchant.updated") || !strings.Contains(got, `{"status":"ACTIVE"} → {"status":"SUSPENDED"}`) || !strings.Contains(got, "192.0.2.1") {
		t.Errorf("output:\n%s", got)
	}
	if err := run(context.Background(), []string{"audit"}, func(k string) string { return env[k] }, &out); err == nil {
		t.Error("audit without list was accepted")
	}
}
