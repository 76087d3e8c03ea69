#!/usr/bin/env bash
# down.sh (make down): stop what `make up` started and nothing else: the processes in
# .run/pids, then the services recorded in .run/started. A PostgreSQL or Redis that was
# already running when `make up` found it is left alone.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start=$(now_ns)
for ((i = ${#PROCS[@]} - 1; i >= 0; i--)); do stop_proc "${PROCS[i]}"; done
# Anything else someone left a pidfile for (a binary added later).
for f in "$RUN"/pids/*.pid; do
  [[ -e $f ]] || continue
  stop_proc "$(basename "$f" .pid)"
done
"$ROOT/scripts/services.sh" down
say "down ($(elapsed "$start"))"
