package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// stderr is where payrailctl writes notes; tests replace it.
var stderr io.Writer = os.Stderr

// paymentTokenEnv names the variable a paymentToken is read from when the
// command line does not give one.
const paymentTokenEnv = "PAYRAIL_PAYMENT_TOKEN"

// paymentToken resolves the paymentToken of `order confirm --token` and
// `pay … TOKEN`: "-" reads the first line of stdin, an empty value reads
// PAYRAIL_PAYMENT_TOKEN, anything else is the token itself (which works, but
// any local user can read it in the process list, so a note says so).
func (c *cli) paymentToken(arg string) (string, error) {
	switch arg {
	case "-":
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read paymentToken from stdin: %w", err)
		}
		if tok := strings.TrimSpace(line); tok != "" {
			return tok, nil
		}
		return "", errors.New("no paymentToken on stdin")
	case "":
		if tok := c.getenv(paymentTokenEnv); tok != "" {
			return tok, nil
		}
		return "", fmt.Errorf("no paymentToken: give it as an argument, as - to read it from stdin, or in %s", paymentTokenEnv)
	default:
		fmt.Fprintf(stderr, "payrailctl: note: a paymentToken on the command line is visible to other local users (ps); use - (stdin) or %s instead\n", paymentTokenEnv)
		return arg, nil
	}
}
