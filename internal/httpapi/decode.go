package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/payrail/payrail/internal/payment"
)

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

// readBody reads at most MaxBody bytes; BODY_TOO_LARGE beyond.
func readBody(r *http.Request) ([]byte, error) { return readBodyLimit(r, MaxBody) }

// readBodyLimit reads at most max bytes; BODY_TOO_LARGE beyond.
func readBodyLimit(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	if r.ContentLength > max {
		return nil, payment.Errorf(payment.CodeBodyTooLarge, "request body exceeds %d bytes", max)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, payment.Errorf(payment.CodeInvalidRequest, "could not read the request body")
	}
	if int64(len(b)) > max {
		return nil, payment.Errorf(payment.CodeBodyTooLarge, "request body exceeds %d bytes", max)
	}
	return b, nil
}

// decodeJSON strictly decodes body into dst: JSON content type, valid UTF-8,
// one object, no unknown fields, right types. Every failure is a 4xx.
func decodeJSON(r *http.Request, body []byte, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return payment.Errorf(payment.CodeUnsupportedMediaType, "Content-Type must be application/json")
		}
	} else if len(body) > 0 {
		return payment.Errorf(payment.CodeUnsupportedMediaType, "Content-Type must be application/json")
	}
	return decodeStrict(body, dst)
}

// decodeStrict is decodeJSON without the header check (fuzzed directly).
func decodeStrict(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return payment.Errorf(payment.CodeInvalidRequest, "request body is empty; a JSON object is required")
	}
	if err := storableText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		return payment.Errorf(payment.CodeInvalidRequest, "invalid JSON body: %s", describeJSONError(err))
	}
	if dec.More() {
		return payment.Errorf(payment.CodeInvalidRequest, "invalid JSON body: trailing data after the object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return payment.Errorf(payment.CodeInvalidRequest, "invalid JSON body: trailing data after the object")
	}
	return checkKeys(body, dst)
}

// checkKeys closes two gaps encoding/json leaves open: it matches field names
// case-insensitively ("AMOUNT" fills amount) and lets the last of duplicate
// keys win. Either lets two readers of one signed body see different
// requests, so a top-level key must be a field's exact name, once.
func checkKeys(body []byte, dst any) error {
	t := reflect.TypeOf(dst)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	fields := map[string]bool{}
	for f := range t.Elem().Fields() {
		if f.Anonymous {
			return nil // embedded fields: DisallowUnknownFields alone
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil // null: nothing to check
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return payment.Errorf(payment.CodeInvalidRequest, "invalid JSON body: malformed")
		}
		key, _ := tok.(string)
		if !fields[key] {
			return payment.Errorf(payment.CodeInvalidRequest, "invalid JSON body: unknown field %q", key)
		}
		if seen[key] {
			return payment.Errorf(payment.CodeInvalidRequest, "invalid JSON body: duplicate field %q", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return payment.Errorf(payment.CodeInvalidRequest, "invalid JSON body: malformed")
		}
	}
	return nil
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s", te.Field, jsonKind(te.Type.Kind().String()))
		}
		return "the body must be a JSON object"
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected end of body"
	}
	return "malformed"
}

func jsonKind(k string) string {
	switch k {
	case "int64", "int", "int32":
		return "an integer"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "ptr":
		return "of the documented type"
	}
	return "of the documented type"
}

// storableText refuses JSON that PostgreSQL's jsonb would refuse (and so
// turn into a 500): invalid UTF-8, and \u escapes for NUL or a lone
// surrogate. A literal U+FFFD is fine (jsonb stores it; an orderName may
// carry it). body must already be valid JSON, so a backslash only ever
// starts an escape inside a string.
func storableText(body []byte) error {
	if !utf8.Valid(body) {
		return payment.Errorf(payment.CodeInvalidRequest, "request body is not valid UTF-8")
	}
	bad := payment.Errorf(payment.CodeInvalidRequest, "request body has a \\u0000 (NUL) or a lone surrogate escape in a string; PostgreSQL cannot store either")
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
			return 0, false
		}
		var r rune
		for _, c := range body[i+2 : i+6] {
			switch {
			case c >= '0' && c <= '9':
				r = r<<4 | rune(c-'0')
			case c >= 'a' && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case c >= 'A' && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		r, isU := hex4(i)
		if !isU {
			i++ // a two-character escape such as \\ or \"
			continue
		}
		switch {
		case r == 0:
			return bad
		case r >= 0xD800 && r <= 0xDBFF:
			lo, ok := hex4(i + 6)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return bad
			}
			i += 11
		case r >= 0xDC00 && r <= 0xDFFF:
			return bad
		default:
			i += 5
		}
	}
	return nil
}
