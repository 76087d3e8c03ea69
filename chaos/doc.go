// Package chaos runs payrail's real binaries (2 api and 3 worker processes)
// under load while it breaks things one scenario at a time — workers killed
// and frozen, Redis restarted and flushed, PostgreSQL restarted, a flaky PG,
// a merchant endpoint that is down, a bad network — and then checks that
// nothing was lost, charged twice or left silently stuck.
//
// The package holds tests only. `make chaos` runs the full suite (build tag
// chaos, every scenario, a few hundred payments each); `make test` runs a
// reduced version (scenarios 1, 2 with a flush only, 4 and 5; ~60 payments
// each) that skips under -short. docs/chaos.md describes the scenarios, the
// invariants and the results.
package chaos
