//go:build chaos

package chaos

import "testing"

// TestChaos is the full suite (`make chaos`): all eleven scenarios, a few
// hundred payments each, one fresh system per scenario.
func TestChaos(t *testing.T) {
	runAll(t, workerKills(fullSize), redisFaults(fullSize), postgresRestart(fullSize), workerFreeze(fullSize),
		flakyPG(fullSize), merchantDown(fullSize), network(fullSize), hungNeighbour(fullSize),
		sentinelFailover(fullSize), clusterFailover(fullSize), postgresPromote(fullSize))
}
