package secretbox

import "strings"

// AADVersion is the version of the associated data AssociatedData builds.
// Stored ciphertexts record the version they were sealed with, so a reader
// rebuilds exactly that associated data instead of trying one format after
// another. Version 1 (the row's own id alone) is the format of rows written
// before version 2 existed; its callers keep building it themselves until
// `payrailctl keys reencrypt` has upgraded every such row.
const AADVersion = 2

// AssociatedData returns version-2 associated data,
// "v2|kind|part|part…": kind names what is sealed (table and kind, e.g.
// "merchant_secrets.client"), the parts name the row (its merchant, then
// its own id). A ciphertext copied to another row, or a row moved to
// another merchant or kind, then no longer decrypts.
//
// '%' and '|' inside kind and parts are escaped ("%25", "%7C"), so two
// different inputs never give the same bytes.
func AssociatedData(kind string, parts ...string) []byte {
	var b strings.Builder
	b.WriteString("v2|")
	aadEscaper.WriteString(&b, kind) //nolint:errcheck // a Builder does not fail
	for _, p := range parts {
		b.WriteByte('|')
		aadEscaper.WriteString(&b, p) //nolint:errcheck
	}
	return []byte(b.String())
}

var aadEscaper = strings.NewReplacer("%", "%25", "|", "%7C")
