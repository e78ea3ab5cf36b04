#!/usr/bin/env bash
# Aggregates and joins computed by CARTO vs computed locally, against a throwaway carto-sim (issue #12).
#   bench/aggregate.sh [ROWS] [POLYGONS] [JOIN_POINTS]   (defaults 1000000 points, 200 polygons, 20000 points joined)
# Measures, best of 3 each, in one run:
#   1. SELECT category, count(*), avg(value) FROM ft GROUP BY 1 (10 groups): pushed (one /sql request) vs forced
#      local (the rows read through /copyto, aggregated here) vs curl of the same SQL to /sql (CARTO alone);
#   2. SELECT count(*) FROM ft: pushed vs forced local;
#   3. points in polygons, SELECT poly.id, count(*) FROM pts JOIN poly ON ST_Contains(...) GROUP BY 1 over the
#      first JOIN_POINTS points: pushed (join + aggregate in one statement, CARTO's GiST indexes) vs forced local
#      (both read, joined here by a nested loop: kept small, it grows as points × polygons).
# "Forced local" reads the table through a subquery with OFFSET 0, which keeps the scan apart from what
# is above it. Uses the extension installed for $PG_CONFIG (a release build: cargo pgrx install --release).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../scripts/lib.sh"
export CARTO_SIM_PROFILE=${CARTO_SIM_PROFILE:-release}
ROWS=${1:-1000000}
POLYS=${2:-200}
JOIN_POINTS=${3:-20000}
DIR=$ROOT/.run/bench-aggregate
mkdir -p "$DIR"

cleanup() {
  "$ROOT/scripts/carto-sim-down" --dir "$DIR/sim" >/dev/null 2>&1 || true
  "$ROOT/scripts/pg-cluster" stop "$DIR/local" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$ROOT/scripts/carto-sim-down" --dir "$DIR/sim" --purge >/dev/null 2>&1 || true
eval "$("$ROOT/scripts/carto-sim-up" --dir "$DIR/sim" 2>"$DIR/sim-up.log")"
"$ROOT/scripts/pg-cluster" stop "$DIR/local" >/dev/null 2>&1 || true
rm -rf "$DIR/local"
port=$(free_port)
"$ROOT/scripts/pg-cluster" start "$DIR/local" "$port"
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres PGOPTIONS='-c lc_messages=C'
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
now() { date +%s.%N; }
sql_api() { curl -sS --max-time 600 -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode "q=$1"; }

say "carto-sim $CARTO_SIM_URL, local PostgreSQL port $port; creating $ROWS points and $POLYS polygons on the sim..."
sql_api "DROP TABLE IF EXISTS bench_agg; DROP TABLE IF EXISTS bench_poly;
CREATE TABLE bench_agg (cartodb_id serial PRIMARY KEY, the_geom geometry(Point, 4326), category text, value numeric);
INSERT INTO bench_agg (the_geom, category, value)
SELECT ST_SetSRID(ST_MakePoint((g::bigint * 7919 % 100000) / 1000.0, (g::bigint * 104729 % 100000) / 1000.0), 4326),
       'category ' || (g % 10), (g::bigint * 31 % 100000) / 100.0
  FROM generate_series(1, $ROWS) g;
CREATE INDEX ON bench_agg USING gist (the_geom);
CREATE TABLE bench_poly (cartodb_id serial PRIMARY KEY, the_geom geometry(Polygon, 4326));
INSERT INTO bench_poly (the_geom)
SELECT ST_MakeEnvelope(x, y, x + 1.5, y + 1.5, 4326)
  FROM (SELECT (g * 37 % 97), (g * 53 % 97) FROM generate_series(1, $POLYS) g) AS c(x, y);
CREATE INDEX ON bench_poly USING gist (the_geom);
ANALYZE bench_agg; ANALYZE bench_poly" > "$DIR/create.json"
grep -q '"error"' "$DIR/create.json" && die "could not create the tables on the sim: $(head -c 500 "$DIR/create.json")"

"${PSQL[@]}" -v base_url="$CARTO_SIM_BASE_URL" -v api_key="$CARTO_SIM_API_KEY" <<'SQL'
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions 'postgis');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE pts (cartodb_id int, the_geom geometry(Point, 4326), category text, value numeric)
  SERVER carto OPTIONS (table_name 'bench_agg');
CREATE FOREIGN TABLE poly (cartodb_id int, the_geom geometry(Polygon, 4326)) SERVER carto OPTIONS (table_name 'bench_poly');
SQL

# best_of SQL: the best wall time of 3 runs of SQL through psql (output discarded), in seconds.
best_of() {
  local best=999999 t0 t
  for _ in 1 2 3; do
    t0=$(now)
    "${PSQL[@]}" -c "$1" >/dev/null
    t=$(echo "$(now) - $t0" | bc -l); best=$(echo "if ($t < $best) $t else $best" | bc -l)
  done
  echo "$best"
}
curl_best_of() {
  local best=999999 t0 t
  for _ in 1 2 3; do
    t0=$(now)
    sql_api "$1" >/dev/null
    t=$(echo "$(now) - $t0" | bc -l); best=$(echo "if ($t < $best) $t else $best" | bc -l)
  done
  echo "$best"
}
remote_sql() { "${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) $1" | sed -n 's/^ *Remote SQL: //p' | head -1; }
top_node() { "${PSQL[@]}" -Atc "EXPLAIN (COSTS OFF) $1" | head -1; }
same() { [ "$("${PSQL[@]}" -Atc "$1")" = "$("${PSQL[@]}" -Atc "$2")" ] && echo yes || echo NO; }

GROUP_PUSHED="SELECT category, count(*), avg(value) FROM pts GROUP BY 1"
GROUP_LOCAL="SELECT category, count(*), avg(value) FROM (SELECT * FROM pts OFFSET 0) s GROUP BY 1"
GROUP_CARTO="SELECT category, count(*), avg(value) FROM bench_agg GROUP BY 1"
COUNT_PUSHED="SELECT count(*) FROM pts"
COUNT_LOCAL="SELECT count(*) FROM (SELECT * FROM pts OFFSET 0) s"
JOIN_PUSHED="SELECT g.cartodb_id, count(*) FROM pts p JOIN poly g ON ST_Contains(g.the_geom, p.the_geom) WHERE p.cartodb_id <= $JOIN_POINTS GROUP BY 1"
JOIN_LOCAL="SELECT g.cartodb_id, count(*) FROM (SELECT * FROM pts WHERE cartodb_id <= $JOIN_POINTS OFFSET 0) p JOIN (SELECT * FROM poly OFFSET 0) g ON ST_Contains(g.the_geom, p.the_geom) GROUP BY 1"

say "pushed GROUP BY: $(top_node "$GROUP_PUSHED") — $(remote_sql "$GROUP_PUSHED")"
say "local GROUP BY:  $(top_node "$GROUP_LOCAL") — $(remote_sql "$GROUP_LOCAL")"
say "pushed join:     $(top_node "$JOIN_PUSHED") — $(remote_sql "$JOIN_PUSHED")"
g_push=$(best_of "$GROUP_PUSHED"); say "GROUP BY pushed ${g_push}s"
g_local=$(best_of "$GROUP_LOCAL"); say "GROUP BY local ${g_local}s"
g_curl=$(curl_best_of "$GROUP_CARTO"); say "GROUP BY curl ${g_curl}s"
c_push=$(best_of "$COUNT_PUSHED"); say "count pushed ${c_push}s"
c_local=$(best_of "$COUNT_LOCAL"); say "count local ${c_local}s"
j_push=$(best_of "$JOIN_PUSHED"); say "join pushed ${j_push}s"
j_local=$(best_of "$JOIN_LOCAL"); say "join local ${j_local}s"
g_same=$(same "$GROUP_PUSHED ORDER BY 1" "$GROUP_LOCAL ORDER BY 1")
j_same=$(same "$JOIN_PUSHED ORDER BY 1" "$JOIN_LOCAL ORDER BY 1")

cat <<EOF

| $ROWS points ($JOIN_POINTS joined), $POLYS polygons | pushed (s) | local (s) | local / pushed | CARTO by curl (s) | pushed / curl | same result |
|---|---:|---:|---:|---:|---:|---|
| GROUP BY category (10 groups), count, avg | $(printf %.3f "$g_push") | $(printf %.3f "$g_local") | **$(printf %.1f "$(echo "$g_local / $g_push" | bc -l)")×** | $(printf %.3f "$g_curl") | **$(printf %.2f "$(echo "$g_push / $g_curl" | bc -l)")** | $g_same |
| count(*) | $(printf %.3f "$c_push") | $(printf %.3f "$c_local") | **$(printf %.1f "$(echo "$c_local / $c_push" | bc -l)")×** | | | |
| points in polygons (ST_Contains), count per polygon | $(printf %.3f "$j_push") | $(printf %.3f "$j_local") | **$(printf %.1f "$(echo "$j_local / $j_push" | bc -l)")×** | | | $j_same |
EOF
