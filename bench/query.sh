#!/usr/bin/env bash
# carto.query of a large answer beside curl of the same /sql request, against a throwaway carto-sim (issue 22).
#   bench/query.sh [ROWS]            (default 2000000)
# Measures, best of REPEAT (default 3) runs each:
#   1. curl -d q=... to /dev/null: the time of the same POST /sql answer (JSON) on this machine;
#   2. SELECT count(*) FROM carto.query(...) in a fresh backend: its time and ratio to curl (goal <= 1.3x), and
#      that backend's peak memory (VmHWM of /proc/PID/status; goal <= 100 MB);
#   3. the same backend memory for ROWS/100 rows, so the growth with the answer's size shows (flat when it streams).
# Uses the extension installed for $PG_CONFIG (cargo pgrx install --release first). Prints a Markdown table.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../scripts/lib.sh"
export CARTO_SIM_PROFILE=${CARTO_SIM_PROFILE:-release}
ROWS=${1:-2000000}
REPEAT=${REPEAT:-3}
DIR=$ROOT/.run/bench-query
mkdir -p "$DIR"
cleanup() {
  "$ROOT/scripts/carto-sim-down" --dir "$DIR/sim" >/dev/null 2>&1 || true
  "$ROOT/scripts/pg-cluster" stop "$DIR/local" >/dev/null 2>&1 || true
}
trap cleanup EXIT
. "$HERE/env.sh"
bench_up "$DIR"
"${PSQL[@]}" -v base_url="$CARTO_SIM_BASE_URL" -v api_key="$CARTO_SIM_API_KEY" <<'SQL'
CREATE EXTENSION IF NOT EXISTS carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SQL
q() { echo "SELECT x, md5(x::text) AS h FROM generate_series(1, $1) x"; }

best() { sort -n | head -1; }
calc() { python3 -c "print($1)"; }
curl_once() {
  local t0 t1
  t0=$(now)
  curl -sS --max-time 1200 -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode "q=$(q "$1")" -o "$DIR/answer.json"
  t1=$(now)
  calc "$t1 - $t0"
}
# One backend: the query, then its own VmHWM (read by the same backend, so it is the one that ran it).
fdw_once() {
  local out
  out=$("${PSQL[@]}" -At <<SQL
\\timing on
SELECT count(*) FROM carto.query('carto', \$\$$(q "$1")\$\$);
SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmHWM:\\s+(\\d+) kB'))[1];
SQL
)
  # lines: count, "Time: N ms", VmHWM kB, "Time: ..."
  local count ms hwm
  count=$(echo "$out" | sed -n 1p); ms=$(echo "$out" | sed -n 2p | sed -E 's/Time: ([0-9.]+) ms.*/\1/'); hwm=$(echo "$out" | sed -n 3p)
  [ "$count" = "$1" ] || die "carto.query returned $count rows, not $1"
  echo "$(calc "$ms / 1000") $hwm"
}
curl_t=$(for _ in $(seq "$REPEAT"); do curl_once "$ROWS"; done | best)
bytes=$(stat -c %s "$DIR/answer.json")
fdw_runs=$(for _ in $(seq "$REPEAT"); do fdw_once "$ROWS"; done)
fdw_t=$(echo "$fdw_runs" | awk '{print $1}' | best)
fdw_hwm=$(echo "$fdw_runs" | awk '{print $2}' | sort -n | tail -1)
small=$((ROWS / 100))
small_hwm=$(fdw_once "$small" | awk '{print $2}')
printf '\n| what | rows | seconds | vs curl | backend VmHWM |\n|---|---|---|---|---|\n'
printf '| curl POST /sql (%s MB of JSON) | %s | %.2f | 1.00x | |\n' "$((bytes / 1000000))" "$ROWS" "$curl_t"
printf '| SELECT count(*) FROM carto.query(...) | %s | %.2f | %.2fx | %s MB |\n' "$ROWS" "$fdw_t" "$(calc "$fdw_t / $curl_t")" "$((fdw_hwm / 1024))"
printf '| the same, %s rows | %s | | | %s MB |\n' "$small" "$small" "$((small_hwm / 1024))"
