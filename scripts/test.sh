#!/usr/bin/env bash
# test.sh (make test): every test, with the race detector, against a real PostgreSQL and
# Redis found or started the way `make up` does (scripts/services.sh). Works from a fresh
# clone on a fresh Debian machine with nothing running.
#
#   PKG        packages to test (default ./...)
#   TESTFLAGS  go test flags (default -race -count=1 -timeout 20m)
#   KEEP_SERVICES=1  leave a PostgreSQL/Redis this run started running afterwards
#
# Tests isolate themselves: each creates its own database from PAYRAIL_TEST_DATABASE_URL
# (a role that may create databases: the postgres superuser, with its generated password,
# on the private server) and picks its own Redis DB index on PAYRAIL_TEST_REDIS_URL (servers we
# start have 4096 of them).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

START=$(now_ns)
cd "$ROOT"
PKG=${PKG:-./...}
TESTFLAGS=${TESTFLAGS:--race -count=1 -timeout 20m}

command -v go >/dev/null || die "go is not on PATH (need the version in go.mod)"
if [[ " $TESTFLAGS " == *" -race "* ]] && ! command -v gcc >/dev/null; then
  say "the race detector needs cgo and gcc"
  apt_install gcc libc6-dev
fi

# The TypeScript SDK's tests (sdk/node, run by go test) need Node.js ≥ 20 and npm.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "node/npm not found; installing them for the TypeScript SDK's tests"
  apt_install nodejs npm || warn "Node.js could not be installed: the TypeScript SDK test will FAIL"
fi

# The scale-out tests run payrail behind a real PgBouncer (transaction mode); Sentinel and
# Cluster need only redis-server and redis-cli, which services.sh installs.
if ! command -v pgbouncer >/dev/null && [[ ! -x /usr/sbin/pgbouncer ]]; then
  say "pgbouncer not found; installing it for the PgBouncer test"
  apt_install pgbouncer 9>&- || warn "pgbouncer could not be installed: TestBehindPgBouncer will FAIL"
fi

# Browser tests drive a real headless Chromium; without one they skip (loudly).
if ! command -v chromium >/dev/null; then
  say "chromium not found; installing it for the browser tests"
  if ! apt_install chromium; then
    warn "************************************************************"
    warn "* chromium could not be installed: BROWSER TESTS WILL SKIP *"
    warn "************************************************************"
  fi
fi
# Korean text (가상계좌, bank names) in the screenshots needs a Hangul font;
# without one the tests still pass, the screenshots show boxes.
if command -v chromium >/dev/null && command -v fc-list >/dev/null && ! fc-list :lang=ko | grep -q .; then
  say "no Hangul font; installing fonts-nanum for legible screenshots"
  apt_install fonts-nanum || warn "fonts-nanum could not be installed: Korean text in screenshots shows as boxes"
fi
if command -v chromium >/dev/null; then
  export PAYRAIL_CHROMIUM=${PAYRAIL_CHROMIUM:-$(command -v chromium)}
fi

# Services: a server this run starts is in test mode (fsync off) and is stopped at the end
# unless KEEP_SERVICES=1 or `make up` has since claimed it.
"$ROOT/scripts/services.sh" up --fast --owner test
if [[ ${KEEP_SERVICES:-0} != 1 ]]; then
  trap '"$ROOT/scripts/services.sh" down --owner test || true' EXIT
fi
eval "$("$ROOT/scripts/services.sh" env)"
export PAYRAIL_TEST_DATABASE_URL PAYRAIL_TEST_REDIS_URL

say "go test $TESTFLAGS $PKG"
note "PAYRAIL_TEST_DATABASE_URL=$(mask_url "${PAYRAIL_TEST_DATABASE_URL%%\?*}")"
note "PAYRAIL_TEST_REDIS_URL=$(mask_url "$PAYRAIL_TEST_REDIS_URL")"
note "PAYRAIL_CHROMIUM=${PAYRAIL_CHROMIUM:-<none: browser tests skip>}"
rc=0
# shellcheck disable=SC2086 # TESTFLAGS and PKG are word lists on purpose
go test $TESTFLAGS $PKG || rc=$?
if ((rc == 0)); then say "tests passed ($(elapsed "$START"))"
else warn "tests FAILED (exit $rc) after $(elapsed "$START")"; fi
exit "$rc"
