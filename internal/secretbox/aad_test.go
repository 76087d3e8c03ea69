package secretbox

import (
	"errors"
	"testing"
)

func TestAssociatedDataFormat(t *testing.T) {
	t.Parallel()
	got := string(AssociatedData("merchant_secrets.client", "mer_abc", "sec_def"))
	if want := "v2|merchant_secrets.client|mer_abc|sec_def"; got != want {
		t.Fatalf("AssociatedData = %q, want %q", got, want)
	}
}

// Different inputs must never give the same associated data, or a
// ciphertext could be moved between the rows they name.
func TestAssociatedDataIsInjective(t *testing.T) {
	t.Parallel()
	inputs := [][]string{
		{"k", "a|b", "c"},
		{"k", "a", "b|c"},
		{"k", "a%7Cb", "c"},
		{"k", "a%7C", "b", "c"},
		{"k|a", "b", "c"},
		{"k", "a", "b", "c"},
		{"k", "", "a"},
		{"k", "a", ""},
		{"k", "a"},
		{"k"},
	}
	seen := map[string][]string{}
	for _, in := range inputs {
		s := string(AssociatedData(in[0], in[1:]...))
		if prev, dup := seen[s]; dup {
			t.Fatalf("%q and %q both give %q", prev, in, s)
		}
		seen[s] = in
	}
}

func TestAssociatedDataBindsEveryPart(t *testing.T) {
	t.Parallel()
	k := mustParse(t, mustKey(t, "a"))
	id, ct, err := k.Encrypt([]byte("sk_1"), AssociatedData("merchant_secrets.client", "mer_1", "sec_1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, aad := range [][]byte{
		AssociatedData("merchant_secrets.callback", "mer_1", "sec_1"), // another kind
		AssociatedData("merchant_secrets.client", "mer_2", "sec_1"),   // another merchant
		AssociatedData("merchant_secrets.client", "mer_1", "sec_2"),   // another row
		[]byte("sec_1"), // the version-1 format of the same row
	} {
		if _, err := k.Decrypt(id, ct, aad); !errors.Is(err, ErrDecrypt) {
			t.Errorf("Decrypt with %q: err = %v, want ErrDecrypt", aad, err)
		}
	}
	if pt, err := k.Decrypt(id, ct, AssociatedData("merchant_secrets.client", "mer_1", "sec_1")); err != nil || string(pt) != "sk_1" {
		t.Fatalf("Decrypt = %q, %v", pt, err)
	}
}
