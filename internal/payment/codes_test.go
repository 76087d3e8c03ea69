package payment

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Every code payrail can answer with is declared in codes.go, listed in
// AllCodes once, mapped to a 4xx/5xx with a title in the one table, and
// documented in api/openapi.yaml's ErrorCode enum; the table maps nothing
// else.
func TestEveryCodeHasAStatusATitleAndADocEntry(t *testing.T) {
	declared := map[string]bool{}
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if strings.HasPrefix(name.Name, "Code") && i < len(vs.Values) {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					declared[v] = true
				}
			}
		}
		return true
	})
	if len(declared) < 40 {
		t.Fatalf("found only %d declared codes in codes.go", len(declared))
	}
	spec, err := os.ReadFile("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	enum := regexp.MustCompile(`(?s)ErrorCode:\n.*?enum:\n((?:\s+- [A-Z_]+\n)+)`).FindSubmatch(spec)
	if enum == nil {
		t.Fatal("api/openapi.yaml has no ErrorCode enum")
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`- ([A-Z_]+)`).FindAllSubmatch(enum[1], -1) {
		documented[string(m[1])] = true
	}
	seen := map[string]bool{}
	for _, c := range AllCodes {
		if seen[c] {
			t.Errorf("%s listed twice in AllCodes", c)
		}
		seen[c] = true
		if !declared[c] {
			t.Errorf("%s in AllCodes is not a constant of codes.go", c)
		}
		status, known := HTTPStatus(c)
		if !known || status < 400 || status > 599 {
			t.Errorf("%s: status %d (known %v), want a 4xx or 5xx", c, status, known)
		}
		if http.StatusText(status) == "" && status != StatusClientClosedRequest {
			t.Errorf("%s: status %d has no title", c, status)
		}
		if !documented[c] {
			t.Errorf("%s is not in api/openapi.yaml's ErrorCode enum", c)
		}
	}
	for c := range declared {
		if !seen[c] {
			t.Errorf("%s is declared but not in AllCodes", c)
		}
	}
	for c := range httpStatus {
		if !seen[c] {
			t.Errorf("the status table maps %s, which is not in AllCodes", c)
		}
	}
	for c := range documented {
		if !seen[c] {
			t.Errorf("api/openapi.yaml documents %s, which payrail never answers", c)
		}
	}
}
