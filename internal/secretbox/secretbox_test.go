package secretbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func mustKey(t *testing.T, id string) string {
	t.Helper()
	s, err := GenerateKeyString(id)
	if err != nil {
		t.Fatalf("GenerateKeyString(%q): %v", id, err)
	}
	return s
}

func mustParse(t *testing.T, s string) *Keyring {
	t.Helper()
	k, err := ParseKeys(s)
	if err != nil {
		t.Fatalf("ParseKeys: %v", err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	k := mustParse(t, mustKey(t, "k1"))
	for _, pt := range [][]byte{nil, {}, []byte("s3cr3t"), bytes.Repeat([]byte{0xAB}, 4096)} {
		id, ct, err := k.Encrypt(pt, []byte("merchant_secrets:42"))
		if err != nil {
			t.Fatalf("Encrypt: %v", err)
		}
		if id != "k1" || k.PrimaryID() != "k1" {
			t.Fatalf("key id = %q, primary = %q, want k1", id, k.PrimaryID())
		}
		if len(pt) > 0 && bytes.Contains(ct, pt) {
			t.Fatal("ciphertext contains the plaintext")
		}
		got, err := k.Decrypt(id, ct, []byte("merchant_secrets:42"))
		if err != nil {
			t.Fatalf("Decrypt: %v", err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("Decrypt = %q, want %q", got, pt)
		}
	}
}

func TestEncryptUsesFreshNonces(t *testing.T) {
	t.Parallel()
	k := mustParse(t, mustKey(t, "k1"))
	_, a, _ := k.Encrypt([]byte("same"), nil)
	_, b, _ := k.Encrypt([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Fatal("two encryptions of the same plaintext are identical")
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := mustKey(t, "old"), mustKey(t, "new")
	oldRing := mustParse(t, oldKey)
	id, ct, err := oldRing.Encrypt([]byte("client-secret"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}

	newRing := mustParse(t, newKey+" , "+oldKey)
	if newRing.PrimaryID() != "new" {
		t.Fatalf("PrimaryID = %q, want new", newRing.PrimaryID())
	}
	got, err := newRing.Decrypt(id, ct, []byte("aad"))
	if err != nil || string(got) != "client-secret" {
		t.Fatalf("new ring Decrypt(old ciphertext) = %q, %v", got, err)
	}
	id2, ct2, err := newRing.Encrypt([]byte("client-secret"), []byte("aad"))
	if err != nil || id2 != "new" {
		t.Fatalf("new ring Encrypt: id %q, %v", id2, err)
	}
	if _, err := oldRing.Decrypt(id2, ct2, []byte("aad")); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old ring Decrypt(new ciphertext) err = %v, want ErrUnknownKey", err)
	}
	// A ciphertext labelled with the wrong key id must not open.
	if _, err := newRing.Decrypt("new", ct, []byte("aad")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Decrypt under the wrong key err = %v, want ErrDecrypt", err)
	}
}

func TestTamperAndWrongAAD(t *testing.T) {
	t.Parallel()
	k := mustParse(t, mustKey(t, "k1"))
	id, ct, err := k.Encrypt([]byte("payload"), []byte("row:1"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		if _, err := k.Decrypt(id, bad, []byte("row:1")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("flipping byte %d: err = %v, want ErrDecrypt", i, err)
		}
	}
	for _, bad := range [][]byte{nil, ct[:5], ct[:len(ct)-1], append(bytes.Clone(ct), 0)} {
		if _, err := k.Decrypt(id, bad, []byte("row:1")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("len %d: err = %v, want ErrDecrypt", len(bad), err)
		}
	}
	for _, aad := range [][]byte{nil, []byte("row:2"), []byte("row:1 ")} {
		if _, err := k.Decrypt(id, ct, aad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("aad %q: err = %v, want ErrDecrypt", aad, err)
		}
	}
}

func TestParseKeysAccepts(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{7}, KeySize)
	std := base64.StdEncoding.EncodeToString(raw)
	rawStd := base64.RawStdEncoding.EncodeToString(raw)
	for _, s := range []string{
		"a:" + std,
		"a:" + rawStd,
		"A-z_09:" + std + ",b:" + rawStd,
		" a:" + std + " ,\tb:" + std + " ",
		strings.Repeat("x", 32) + ":" + std,
	} {
		if _, err := ParseKeys(s); err != nil {
			t.Errorf("ParseKeys(%q) = %v, want nil", s, err)
		}
	}
}

func TestParseKeysRejects(t *testing.T) {
	t.Parallel()
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, KeySize))
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	long := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 33))
	urlSafe := base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, KeySize))
	tests := map[string]string{
		"empty":            "",
		"blank":            "  ",
		"empty entry":      "a:" + good + ",",
		"no colon":         good,
		"empty id":         ":" + good,
		"empty key":        "a:",
		"id too long":      strings.Repeat("x", 33) + ":" + good,
		"id bad char":      "a.b:" + good,
		"16 bytes":         "a:" + short,
		"33 bytes":         "a:" + long,
		"bad base64":       "a:!!!not-base64!!!",
		"url alphabet":     "a:" + urlSafe,
		"duplicate id":     "a:" + good + ",a:" + good,
		"extra colon":      "a:" + good + ":x",
		"second key short": "a:" + good + ",b:" + short,
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			k, err := ParseKeys(s)
			if err == nil {
				t.Fatalf("ParseKeys(%q) = %v, nil; want an error", s, k)
			}
			// Errors must never echo key material.
			for _, secret := range []string{good, short, long, urlSafe, "!!!not-base64!!!"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q echoes key material", err)
				}
			}
		})
	}
}

func TestGenerateKeyString(t *testing.T) {
	t.Parallel()
	s := mustKey(t, "2026-01")
	k := mustParse(t, s)
	if k.PrimaryID() != "2026-01" {
		t.Fatalf("PrimaryID = %q", k.PrimaryID())
	}
	if s == mustKey(t, "2026-01") {
		t.Fatal("two generated keys are equal")
	}
	for _, id := range []string{"", "a b", strings.Repeat("x", 33)} {
		if _, err := GenerateKeyString(id); err == nil {
			t.Errorf("GenerateKeyString(%q): want an error", id)
		}
	}
}

func FuzzParseKeys(f *testing.F) {
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, KeySize))
	f.Add("a:" + good)
	f.Add("a:" + good + ",b:" + good)
	f.Add("a:" + good + ",a:" + good)
	f.Add(":,:")
	f.Add("a:====")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeys(s)
		if err != nil {
			return
		}
		id, ct, err := k.Encrypt([]byte("x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := k.Decrypt(id, ct, nil); err != nil || string(pt) != "x" {
			t.Fatalf("round trip failed: %q, %v", pt, err)
		}
	})
}
