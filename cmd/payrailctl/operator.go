package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// operator runs `payrailctl operator create NAME [--password P]`. Without
// --password the password is the first line of stdin, so it stays out of
// the shell history and the process list.
func (c *cli) operator(ctx context.Context, args []string) error {
	const use = "usage: payrailctl operator create NAME [--password P]  (password from stdin when omitted)"
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
