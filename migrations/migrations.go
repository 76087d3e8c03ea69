// Package migrations holds payrail's PostgreSQL schema as goose SQL files,
// embedded so every binary and test applies the same schema.
package migrations

import "embed"

// FS is the embedded migration set.
//
//go:embed *.sql
var FS embed.FS
