package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// operator runs `payrailctl operator create NAME [--password P]`. Without
// --password the password is the first line of stdin, so it stays out of
// the shell history and the process list.
func (c *cli) operator(ctx context.Context, args []string) error {
	const use = "usage: payrailctl operator create NAME [--password P]  (password from stdin when omitted)\n" +
		"       payrailctl operator suspend|reinstate|delete|reset-2fa NAME"
	if len(args) == 2 && (args[0] == "suspend" || args[0] == "reinstate" || args[0] == "delete" || args[0] == "reset-2fa") {
		return c.operatorStatus(ctx, args[0], args[1])
	}
	if len(args) < 2 || args[0] != "create" {
		return errors.New(use)
	}
	fs := flag.NewFlagSet("operator create", flag.ContinueOnError)
	password := fs.String("password", "", "the operator's password (≥ 12 characters); read from stdin when empty")
	var name string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		rest = fs.Args()
		if len(rest) > 0 {
			if name != "" {
				return errors.New(use)
			}
			name, rest = rest[0], rest[1:]
		}
	}
	if name == "" {
		return errors.New(use)
	}
	if *password == "" {
		var err error
		if *password, err = readPassword(stdin); err != nil {
			return err
		}
	}
	api, _, err := c.adminCall(ctx, "POST", "/admin/operators", map[string]string{"name": name, "password": *password}, http.StatusCreated)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "operator %q created; sign in at %s/ops/login\n", name, api)
	return nil
}

// operatorStatus suspends, reinstates or deletes an operator; a suspended
// or deleted operator's console sessions end at their next request.
func (c *cli) operatorStatus(ctx context.Context, verb, name string) error {
	path := "/admin/operators/" + url.PathEscape(name)
	var err error
	switch verb {
	case "reset-2fa":
		_, _, err = c.adminCall(ctx, "POST", path+"/reset-2fa", nil, http.StatusNoContent)
	case "delete":
		_, _, err = c.adminCall(ctx, "DELETE", path, nil, http.StatusNoContent)
	case "suspend":
		_, _, err = c.adminCall(ctx, "PATCH", path, map[string]string{"status": "SUSPENDED"}, http.StatusOK)
	default:
		_, _, err = c.adminCall(ctx, "PATCH", path, map[string]string{"status": "ACTIVE"}, http.StatusOK)
	}
	if err != nil {
		return err
	}
	done := map[string]string{"suspend": "suspended", "reinstate": "reinstated", "delete": "deleted",
		"reset-2fa": "second factor reset; the next sign-in enrols a new authenticator"}[verb]
	fmt.Fprintf(c.out, "operator %q: %s\n", name, done)
	return nil
}

// stdin is where `operator create` reads the password; tests replace it.
var stdin io.Reader = os.Stdin

// readPassword reads the first line of r.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password: pass --password or write it on stdin")
	}
	return line, nil
}
