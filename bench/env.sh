# bench_up DIR: a fresh carto-sim (its settings exported: CARTO_SIM_URL, CARTO_SIM_BASE_URL, CARTO_SIM_API_KEY...)
# and a fresh local PostgreSQL cluster, both under DIR, the libpq variables pointing at the cluster; then
# PSQL (an array), now and sql_api (one request to the sim's /sql) for the benchmark scripts. Sourced by
# bench/read.sh and bench/aggregate.sh after scripts/lib.sh; their cleanup stops both.
bench_up() {
  local dir=$1 port
  "$ROOT/scripts/carto-sim-down" --dir "$dir/sim" --purge >/dev/null 2>&1 || true
  eval "$("$ROOT/scripts/carto-sim-up" --dir "$dir/sim" 2>"$dir/sim-up.log")"
  "$ROOT/scripts/pg-cluster" stop "$dir/local" >/dev/null 2>&1 || true
  rm -rf "$dir/local"
  port=$(free_port)
  "$ROOT/scripts/pg-cluster" start "$dir/local" "$port"
  export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres PGOPTIONS='-c lc_messages=C'
}
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
now() { date +%s.%N; }
sql_api() { curl -sS --max-time 1200 -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode "q=$1"; }
