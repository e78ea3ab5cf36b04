# shellcheck shell=bash
# Helpers shared by the scripts in scripts/ and by tests/e2e/run. Source it; it sets nothing on its own
# beyond ROOT (the clone's top directory) and a default CARGO_TARGET_DIR outside the clone.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/carto_fdw/target}
PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
[ -x "$PG_CONFIG" ] || PG_CONFIG=$(command -v pg_config || echo /usr/bin/pg_config)
PGBIN=${PGBIN:-$("$PG_CONFIG" --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
export PGBIN

# Messages go to stderr so that stdout stays usable (carto-sim-up prints shell variables there).
say()  { printf '%s\n' "$*" >&2; }
warn() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die()  { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# A TCP port that is free on 127.0.0.1 right now (the kernel picks it).
free_port() {
  python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# wait_for_line FILE REGEX SECONDS PID: wait until FILE has a line matching REGEX; print that line.
# Fails early if PID dies.
wait_for_line() {
  local file=$1 re=$2 secs=$3 pid=${4:-} i line
  for ((i = 0; i < secs * 10; i++)); do
    if line=$(grep -E -m1 "$re" "$file" 2>/dev/null); then printf '%s\n' "$line"; return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# pid_alive PIDFILE: the process named in PIDFILE is running.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid PIDFILE: TERM the process in PIDFILE, wait up to 10 s, then KILL; remove the file.
stop_pid() {
  local f=$1 pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# The carto-sim binary, built when missing or older than its sources (cargo decides).
# The carto-sim binary, built first. CARTO_SIM_PROFILE=release builds it optimised (the benchmarks do: a debug sim
# spends the CPU that the side being measured needs on the same machine); tests use the quicker debug build.
carto_sim_bin() {
  local log=${1:-/dev/stderr} profile=debug flag=
  if [ "${CARTO_SIM_PROFILE:-debug}" = release ]; then profile=release flag=--release; fi
  (cd "$ROOT" && cargo build -q $flag -p carto-sim --bin carto-sim) >>"$log" 2>&1 || return 1
  printf '%s\n' "$CARGO_TARGET_DIR/$profile/carto-sim"
}

# take_lock DIR: one run at a time per state directory (several people share a working tree). A mkdir lock that
# records the owner's pid, so daemons started during the run don't inherit it; a dead owner's lock is taken over.
# Released by release_lock DIR (call it from an EXIT trap).
take_lock() {
  local l=$1 owner waited=
  mkdir -p "$(dirname "$l")"
  while ! mkdir "$l" 2>/dev/null; do
    owner=$(cat "$l/pid" 2>/dev/null || true)
    if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then rm -rf "$l"; continue; fi
    [ -n "$waited" ] || { say "waiting for another run (pid ${owner:-?}) holding $l ..."; waited=1; }
    sleep 1
  done
  echo $$ >"$l/pid"
}
release_lock() { [ "$(cat "$1/pid" 2>/dev/null)" = "$$" ] && rm -rf "$1"; return 0; }
