// Package envfile reads the shell KEY=value files `make up` writes under
// .run/, so payrailctl, demoshop and tests find the running system without
// the caller sourcing anything.
package envfile

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// Parse reads KEY=value lines (optionally prefixed by "export ", values
// optionally quoted); comments and blank lines are skipped.
func Parse(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	return out, sc.Err()
}

// Find walks up from dir looking for names under each ancestor and merges
// what it finds; earlier names and nearer directories win.
func Find(dir string, names ...string) map[string]string {
	out := map[string]string{}
	for i := 0; i < 8; i++ {
		for _, name := range names {
			m, err := Parse(filepath.Join(dir, name))
			if err != nil {
				continue
			}
			for k, v := range m {
				if _, seen := out[k]; !seen {
					out[k] = v
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return out
}

// Getenv returns a getenv that prefers the process environment and falls
// back to the .run files found from the working directory up.
func Getenv(names ...string) func(string) string {
	dir, _ := os.Getwd()
	files := Find(dir, names...)
	return func(k string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return files[k]
	}
}
