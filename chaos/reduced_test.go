//go:build !chaos

package chaos

import "testing"

// TestChaosReduced is the part of the chaos suite `make test` runs: worker
// kills, a Redis flush, a frozen worker, a flaky PG and a neighbour whose
// endpoint hangs, ~60 payments each.
// `make chaos` runs everything (build tag chaos).
func TestChaosReduced(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: heavy (real processes under load); skipped with -short")
	}
	runAll(t, workerKills(reducedSize), redisFaults(reducedSize), workerFreeze(reducedSize), flakyPG(reducedSize), hungNeighbour(reducedSize))
}
