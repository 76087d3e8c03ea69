package secretbox

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// An all-zero key is an example value (docker-compose's default was one):
// anyone who read the example could decrypt. Item 9 of issue #20.
func TestParseKeysRefusesAllZeroKeys(t *testing.T) {
	t.Parallel()
	zero := base64.StdEncoding.EncodeToString(make([]byte, KeySize))
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, KeySize))
	for _, s := range []string{"k1:" + zero, "k1:" + strings.TrimRight(zero, "="), "k1:" + good + ",k0:" + zero} {
		_, err := ParseKeys(s)
		if err == nil {
			t.Errorf("ParseKeys(%q) accepted an all-zero key", s)
			continue
		}
		if !strings.Contains(err.Error(), "all zero") {
			t.Errorf("ParseKeys(%q) = %v, want it to say the key is all zero", s, err)
		}
	}
}
