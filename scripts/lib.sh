# shellcheck shell=bash
# Shared helpers for payrail's scripts. Sourced, never executed.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# PAYRAIL_RUN_DIR moves .run/ (for tests of these scripts; payrailctl, the binaries and the
# Go tests look for .run/ in the working tree).
RUN="${PAYRAIL_RUN_DIR:-$ROOT/.run}"

# What a checkout before generated passwords used (and what an old .run/env still holds):
# treated as "not configured", so such a .run/ is upgraded in place.
# shellcheck disable=SC2034 # used by services.sh
LEGACY_DATABASE_URL='postgres://payrail:payrail@127.0.0.1:55432/payrail?sslmode=disable'
# shellcheck disable=SC2034
LEGACY_REDIS_URL='redis://127.0.0.1:56379/0'

say()  { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
warn() { printf '!!! %s\n' "$*" >&2; }
die()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# as_root runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $* (no sudo available)"
  fi
}

# apt_install installs Debian packages, waiting for a dpkg lock held by another apt run
# instead of failing, and refreshing the package lists once if the first try fails.
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found; install these yourself: $*"
  say "installing with apt-get: $* (waits for the dpkg lock if another apt is running)"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -y -q
             --no-install-recommends install "$@")
  if ! as_root "${apt[@]}" >&2; then
    note "install failed; running apt-get update and trying again"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -q update >&2 || true
    as_root "${apt[@]}" >&2
  fi
}

# ensure_run_dir creates .run/ private to us: 0700, or 0711 when we are root (the postgres
# user must pass through it to .run/pg and .run/logs/postgres.log; it can list nothing).
# Everything below it is created with umask 077 by the scripts that write there.
ensure_run_dir() {
  local mode=700
  [[ $EUID -eq 0 ]] && mode=711
  [[ -L $RUN ]] && die "$RUN is a symlink; refusing to use it"
  (umask 077 && mkdir -p "$RUN")
  [[ -O $RUN ]] || die "$RUN is not owned by $(id -un); refusing to use it"
  chmod "$mode" "$RUN"
}

# mask_url prints a URL with its password replaced by ***.
mask_url() {
  local re='^([a-z]+://[^:@/]*):[^@/]*@(.*)$'
  if [[ $1 =~ $re ]]; then printf '%s:***@%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"; else printf '%s\n' "$1"; fi
}

# elapsed prints seconds since the given epoch-with-nanoseconds start value.
now_ns() { date +%s%N; }
elapsed() { local s=$1 e; e=$(now_ns); awk -v d=$(( (e - s) / 1000000 )) 'BEGIN{printf "%.1fs", d/1000}'; }

# port_open reports whether something accepts TCP connections at host:port.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# ---- processes started by `make up` (pidfiles in .run/pids) -------------------------------

# proc_pid prints the pid recorded for a payrail process if that process is still one of
# our binaries from .run/bin (a pidfile may outlive its process and the pid be reused).
proc_pid() {
  local name=$1 pidf="$RUN/pids/$1.pid" pid exe
  [[ -f $pidf ]] || return 1
  pid=$(cat "$pidf" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [[ $exe == "$RUN/bin/$name" || $exe == "$RUN/bin/$name (deleted)" ]] || return 1
  echo "$pid"
}

# stop_proc stops one payrail process started by `make up`: TERM to its process group
# (it was started with setsid), then KILL after 15 s.
stop_proc() {
  local name=$1 pid i
  if ! pid=$(proc_pid "$name"); then rm -f "$RUN/pids/$name.pid"; return 0; fi
  say "stopping $name (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do
    [[ -e /proc/$pid ]] || break
    sleep 0.1
  done
  if [[ -e /proc/$pid ]]; then
    warn "$name (pid $pid) did not stop within 15 s; sending KILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/pids/$name.pid"
}

# The processes `make up` runs, in start order (mockpg first: api and worker call it).
PROCS=(mockpg api worker demoshop)
