#!/usr/bin/env bash
# Aggregates and joins computed by CARTO vs computed locally, against a throwaway carto-sim (issue #12).
#   [LINK=100mbit] [KEYS="100 1000"] [BENCH_CSV=FILE] bench/aggregate.sh [ROWS] [POLYGONS] [SUBSET]
#   (defaults: 1000000 points, 10000 polygons, SUBSET = the points for the naive local join, 2e7 / POLYGONS)
# Measures, best of 3 each unless said otherwise, in one run:
#   1. SELECT category, count(*), avg(value) FROM pts GROUP BY 1 (10 groups): pushed (one /sql request) vs forced
#      local (the rows read through /copyto, aggregated here) vs curl of the same SQL to /sql (CARTO alone);
#   2. SELECT count(*) FROM pts: pushed vs forced local;
#   3. points in polygons, SELECT poly.cartodb_id, count(*) FROM pts JOIN poly ON ST_Contains(...) GROUP BY 1, all
#      ROWS points against a grid of POLYGONS square cells covering them (each point in exactly one cell):
#      pushed (join + aggregate in one statement, CARTO's GiST indexes) vs
#      (a) "pull both sides": what a user without pushdown does — CREATE UNLOGGED TABLE AS SELECT from both foreign
#          tables (through /copyto), GiST indexes on both copies as CARTO has them, ANALYZE, the same join locally;
#          pull, index and join timed apart (pull and join best of 3, index once);
#      (b) the plan PostgreSQL makes over the two foreign scans when nothing is pushed (OFFSET 0: a nested loop,
#          points × polygons ST_Contains calls), timed once on the first SUBSET points and extrapolated linearly;
#   4. a local table of N ids (for each N in KEYS) joined to pts on cartodb_id, after ANALYZE pts: the
#      parameterized foreign scan (a nested loop of /sql lookups, one per id) vs the forced full read (OFFSET 0),
#      with the requests the sim saw for one run of each (its request log).
# Results are compared for equality (pushed vs local) and printed as markdown table rows; the times are appended
# to $BENCH_CSV (default bench/results-aggregate.csv; the rows of an earlier run with the same link are replaced)
# as `query,method,link,seconds`, and bench/plot.py --seconds draws bench/results-aggregate.png from it and prints
# the loopback and emulated-link columns side by side.
#
# LINK=<tc rate> (100mbit, 20mbit, 1gbit...) emulates a network link between CARTO and its clients: the traffic
# from and to the sim's HTTP port is shaped on lo by htb classes with a tbf leaf (rate LINK, burst 256kb, latency
# 100ms; bandwidth only, no added round-trip time: tc's netem is not available here). The sim's own connection
# to its PostgreSQL and the local psql connections stay unshaped, as they would be with a remote CARTO. It only
# shapes inside a private network namespace (e.g. `unshare -n`, with lo brought up) and refuses otherwise.
#
# "Forced local" reads the table through a subquery with OFFSET 0, which keeps the scan apart from what is above
# it. Uses the extension installed for $PG_CONFIG (a release build: cargo pgrx install --release).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../scripts/lib.sh"
export CARTO_SIM_PROFILE=${CARTO_SIM_PROFILE:-release}
ROWS=${1:-1000000}
POLYS_WANTED=${2:-10000}
GRID=$(python3 -c "import math; print(max(1, math.isqrt($POLYS_WANTED)))")
POLYS=$((GRID * GRID))
SUBSET=${3:-$(python3 -c "print(min($ROWS, max(1000, 20000000 // $POLYS)))")}
KEYS=${KEYS:-100 1000}
LINK=${LINK:-}
LABEL=${LINK:-loopback}
BENCH_CSV=${BENCH_CSV:-$HERE/results-aggregate.csv}
DIR=$ROOT/.run/bench-aggregate
mkdir -p "$DIR"

cleanup() {
  if [ -n "$LINK" ]; then tc qdisc del dev lo root >/dev/null 2>&1 || true; fi
  "$ROOT/scripts/carto-sim-down" --dir "$DIR/sim" >/dev/null 2>&1 || true
  "$ROOT/scripts/pg-cluster" stop "$DIR/local" >/dev/null 2>&1 || true
}
trap cleanup EXIT

. "$HERE/link.sh"  # shape_link PORT

. "$HERE/env.sh"  # bench_up DIR, PSQL, now, sql_api
bench_up "$DIR"
sim_port=$(printf '%s\n' "$CARTO_SIM_URL" | sed -E 's#^https?://[^/:]+:([0-9]+).*#\1#')
load() { cut -d' ' -f1-3 /proc/loadavg; }

say "carto-sim $CARTO_SIM_URL, local PostgreSQL port $PGPORT; creating $ROWS points and $POLYS polygons ($GRID × $GRID grid) on the sim..."
sql_api "DROP TABLE IF EXISTS bench_agg; DROP TABLE IF EXISTS bench_poly;
CREATE TABLE bench_agg (cartodb_id serial PRIMARY KEY, the_geom geometry(Point, 4326), category text, value numeric);
INSERT INTO bench_agg (the_geom, category, value)
SELECT ST_SetSRID(ST_MakePoint((g::bigint * 7919 % 100000) / 1000.0, (g::bigint * 104729 % 100000) / 1000.0), 4326),
       'category ' || (g % 10), (g::bigint * 31 % 100000) / 100.0
  FROM generate_series(1, $ROWS) g;
CREATE INDEX ON bench_agg USING gist (the_geom);
CREATE TABLE bench_poly (cartodb_id serial PRIMARY KEY, the_geom geometry(Polygon, 4326));
INSERT INTO bench_poly (the_geom)
SELECT ST_MakeEnvelope(-0.0005 + i * (100.0 / $GRID), -0.0005 + j * (100.0 / $GRID),
                       -0.0005 + (i + 1) * (100.0 / $GRID), -0.0005 + (j + 1) * (100.0 / $GRID), 4326)
  FROM generate_series(0, $GRID - 1) i, generate_series(0, $GRID - 1) j;
CREATE INDEX ON bench_poly USING gist (the_geom);
ANALYZE bench_agg; ANALYZE bench_poly" > "$DIR/create.json"
grep -q '"error"' "$DIR/create.json" && die "could not create the tables on the sim: $(head -c 500 "$DIR/create.json")"

if [ -n "$LINK" ]; then
  shape_link "$sim_port"
  say "traffic from/to the sim's port $sim_port shaped to $LINK (htb + tbf on lo, network namespace $(readlink /proc/self/ns/net))"
fi

"${PSQL[@]}" -v base_url="$CARTO_SIM_BASE_URL" -v api_key="$CARTO_SIM_API_KEY" <<'SQL'
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions 'postgis');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE pts (cartodb_id int, the_geom geometry(Point, 4326), category text, value numeric)
  SERVER carto OPTIONS (table_name 'bench_agg');
CREATE FOREIGN TABLE poly (cartodb_id int, the_geom geometry(Polygon, 4326)) SERVER carto OPTIONS (table_name 'bench_poly');
SQL

# run_once SQL [OUT]: one run of SQL through psql (unaligned output to OUT, else discarded); prints its seconds.
run_once() {
  local t0 out=${2:-/dev/null}
  t0=$(now)
  "${PSQL[@]}" -Atc "$1" >"$out"
  echo "$(now) - $t0" | bc -l
}
# best_of SQL [OUT]: the best wall time of 3 runs (the last run's output to OUT).
best_of() {
  local best=999999 t
  for _ in 1 2 3; do
    t=$(run_once "$1" "${2:-/dev/null}"); best=$(echo "if ($t < $best) $t else $best" | bc -l)
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
explain() { "${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) $1"; }
remote_sql() { explain "$1" | sed -n 's/^ *Remote SQL: //p' | head -1; }
relations() { explain "$1" | sed -n 's/^ *Relations: //p' | head -1; }
top_node() { "${PSQL[@]}" -Atc "EXPLAIN (COSTS OFF) $1" | head -1; }
same() { [ "$("${PSQL[@]}" -Atc "$1")" = "$("${PSQL[@]}" -Atc "$2")" ] && echo yes || echo NO; }
same_files() { cmp -s "$1" "$2" && echo yes || echo NO; }
# requests SQL: run SQL once with the sim's request log cleared before; prints "query=N copy_to=M ..." it saw.
requests() {
  curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
  "${PSQL[@]}" -Atc "$1" >/dev/null
  sleep 0.5  # a request is logged when its response body ends
  curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys,collections; c=collections.Counter(e["group"] for e in json.load(sys.stdin)); print(" ".join("%s=%d" % kv for kv in sorted(c.items())) or "none")'
}
f3() { printf %.3f "$1"; }
ratio() { printf "%.${3:-1}f" "$(echo "$1 / $2" | bc -l)"; }
CSV_ROWS=()
csv() { CSV_ROWS+=("$1,$2,$LABEL,$(printf %.4f "$3")"); }

say "load average before the run: $(load)"

# The link as the local side sees it: curl of /copyto of the two columns the pull reads.
t0=$(now)
link_bytes=$(curl -sS -o /dev/null -w '%{size_download}' -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql/copyto" \
  --data-urlencode "q=COPY (SELECT cartodb_id, the_geom FROM bench_agg) TO STDOUT")
link_s=$(echo "$(now) - $t0" | bc -l)
link_mbit=$(echo "$link_bytes * 8 / $link_s / 1000000" | bc -l)
say "curl /copyto of bench_agg (cartodb_id, the_geom): $link_bytes bytes in $(f3 "$link_s") s = $(printf %.0f "$link_mbit") Mbit/s"

GROUP_PUSHED="SELECT category, count(*), avg(value) FROM pts GROUP BY 1"
GROUP_LOCAL="SELECT category, count(*), avg(value) FROM (SELECT * FROM pts OFFSET 0) s GROUP BY 1"
GROUP_CARTO="SELECT category, count(*), avg(value) FROM bench_agg GROUP BY 1"
COUNT_PUSHED="SELECT count(*) FROM pts"
COUNT_LOCAL="SELECT count(*) FROM (SELECT * FROM pts OFFSET 0) s"
JOIN_PUSHED="SELECT g.cartodb_id, count(*) FROM pts p JOIN poly g ON ST_Contains(g.the_geom, p.the_geom) GROUP BY 1"
JOIN_PULLED="SELECT g.cartodb_id, count(*) FROM l_pts p JOIN l_poly g ON ST_Contains(g.the_geom, p.the_geom) GROUP BY 1"
JOIN_SUB_PUSHED="SELECT g.cartodb_id, count(*) FROM pts p JOIN poly g ON ST_Contains(g.the_geom, p.the_geom) WHERE p.cartodb_id <= $SUBSET GROUP BY 1"
JOIN_SUB_NAIVE="SELECT g.cartodb_id, count(*) FROM (SELECT * FROM pts WHERE cartodb_id <= $SUBSET OFFSET 0) p JOIN (SELECT * FROM poly OFFSET 0) g ON ST_Contains(g.the_geom, p.the_geom) GROUP BY 1"

say "pushed GROUP BY: $(top_node "$GROUP_PUSHED") — $(remote_sql "$GROUP_PUSHED")"
say "local GROUP BY:  $(top_node "$GROUP_LOCAL") — $(remote_sql "$GROUP_LOCAL")"
say "pushed spatial join: $(top_node "$JOIN_PUSHED") — Relations: $(relations "$JOIN_PUSHED") — Remote SQL: $(remote_sql "$JOIN_PUSHED")"
join_shipped=no
case "$(relations "$JOIN_PUSHED")" in "Aggregate on ((pts p) INNER JOIN (poly g))") join_shipped=yes ;; esac
[ "$join_shipped" = yes ] || warn "the spatial join did NOT ship as one remote statement; EXPLAIN VERBOSE:
$(explain "$JOIN_PUSHED")"
say "naive local join plan (subset of $SUBSET points):"; explain "$JOIN_SUB_NAIVE" | sed 's/^/    /' >&2

g_push=$(best_of "$GROUP_PUSHED"); say "GROUP BY pushed ${g_push}s"; csv "GROUP BY" "pushed" "$g_push"
g_local=$(best_of "$GROUP_LOCAL"); say "GROUP BY local ${g_local}s"; csv "GROUP BY" "forced local" "$g_local"
g_curl=$(curl_best_of "$GROUP_CARTO"); say "GROUP BY curl ${g_curl}s"; csv "GROUP BY" "curl /sql" "$g_curl"
c_push=$(best_of "$COUNT_PUSHED"); say "count pushed ${c_push}s"; csv "count(*)" "pushed" "$c_push"
c_local=$(best_of "$COUNT_LOCAL"); say "count local ${c_local}s"; csv "count(*)" "forced local" "$c_local"
g_same=$(same "$GROUP_PUSHED ORDER BY 1" "$GROUP_LOCAL ORDER BY 1")

# 3. The spatial join.
j_push=$(best_of "$JOIN_PUSHED ORDER BY 1" "$DIR/join-pushed.out"); say "spatial join pushed ${j_push}s"
csv "spatial join" "pushed" "$j_push"
j_curl=$(curl_best_of "SELECT g.cartodb_id, count(*) FROM bench_agg p JOIN bench_poly g ON ST_Contains(g.the_geom, p.the_geom) GROUP BY 1")
say "spatial join curl ${j_curl}s"; csv "spatial join" "curl /sql" "$j_curl"
carto_plan=$(sql_api "EXPLAIN SELECT g.cartodb_id, count(*) FROM bench_agg p JOIN bench_poly g ON ST_Contains(g.the_geom, p.the_geom) GROUP BY 1" \
  | python3 -c 'import json,sys; print("\n".join(r["QUERY PLAN"] for r in json.load(sys.stdin)["rows"]))')
say "CARTO's plan of the spatial join:"; printf '%s\n' "$carto_plan" | sed 's/^/    /' >&2
carto_nodes=$(printf '%s\n' "$carto_plan" | sed -nE 's/^ *(-> *)?(.*[^ ]) +\(cost.*/\2/p' | paste -sd'>' | sed 's/>/ → /g')
j_points=$(awk -F'|' '{s += $2} END {print s + 0}' "$DIR/join-pushed.out")
j_groups=$(wc -l <"$DIR/join-pushed.out")
say "  $j_groups polygons hold $j_points of the $ROWS points"
PULL="DROP TABLE IF EXISTS l_pts, l_poly;
CREATE UNLOGGED TABLE l_pts AS SELECT cartodb_id, the_geom FROM pts;
CREATE UNLOGGED TABLE l_poly AS SELECT cartodb_id, the_geom FROM poly"
say "pull plans: $(top_node "SELECT cartodb_id, the_geom FROM pts") — $(explain "SELECT cartodb_id, the_geom FROM pts" | grep -E 'CARTO (endpoint|transport)' | tr -s ' ' | tr '\n' ' ')/ poly: $(explain "SELECT cartodb_id, the_geom FROM poly" | grep -E 'CARTO (endpoint|transport)' | tr -s ' ' | tr '\n' ' ')"
pull_reqs=$(requests "$PULL")
j_pull=$(best_of "$PULL"); say "pull both sides ${j_pull}s (requests: $pull_reqs)"
j_index=$(run_once "CREATE INDEX ON l_pts USING gist (the_geom); CREATE INDEX ON l_poly USING gist (the_geom); ANALYZE l_pts; ANALYZE l_poly")
say "GiST indexes on both copies + ANALYZE ${j_index}s"
say "pulled join plan:"; "${PSQL[@]}" -Atc "EXPLAIN (COSTS OFF) $JOIN_PULLED" | sed 's/^/    /' >&2
j_join=$(best_of "$JOIN_PULLED ORDER BY 1" "$DIR/join-pulled.out"); say "join of the pulled copies ${j_join}s"
j_total=$(echo "$j_pull + $j_index + $j_join" | bc -l)
csv "spatial join" "pull both + index + join locally" "$j_total"
j_same=$(same_files "$DIR/join-pushed.out" "$DIR/join-pulled.out")
n_time=$(run_once "$JOIN_SUB_NAIVE ORDER BY 1" "$DIR/join-naive.out"); say "naive local join of $SUBSET points ${n_time}s (one run)"
n_extra=$(echo "$n_time * $ROWS / $SUBSET" | bc -l)
csv "spatial join" "naive local plan (extrapolated)" "$n_extra"
"${PSQL[@]}" -Atc "$JOIN_SUB_PUSHED ORDER BY 1" >"$DIR/join-sub-pushed.out"
n_same=$(same_files "$DIR/join-sub-pushed.out" "$DIR/join-naive.out")

# 4. A local table joined to the foreign one on its key. The planner's choice without statistics, with
# use_remote_estimate, then after ANALYZE pts (which the measurements use).
key_join() { echo "SELECT k.id, p.category, p.value, p.the_geom FROM keys_$1 k JOIN pts p ON p.cartodb_id = k.id"; }
join_node() { "${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) $1" | grep -oE 'Hash Join|Merge Join|Nested Loop|Remote SQL: .*\$[0-9]' | sed 's/Remote SQL: .*/parameterized/' | tr '\n' ' ' | sed 's/ $//'; }
key_plans=()
for n in $KEYS; do
  "${PSQL[@]}" -c "DROP TABLE IF EXISTS keys_$n; CREATE TABLE keys_$n AS SELECT (g::bigint * 7919 % $ROWS + 1)::int AS id FROM generate_series(1, $n) g; ANALYZE keys_$n"
  key_plans+=("$n ids: no statistics on pts: $(join_node "$(key_join "$n")")")
done
"${PSQL[@]}" -c "ALTER FOREIGN TABLE pts OPTIONS (ADD use_remote_estimate 'true')"
for n in $KEYS; do key_plans+=("$n ids: use_remote_estimate 'true': $(join_node "$(key_join "$n")")"); done
"${PSQL[@]}" -c "ALTER FOREIGN TABLE pts OPTIONS (DROP use_remote_estimate)"
t0=$(now); "${PSQL[@]}" -c "ANALYZE pts"; analyze_s=$(echo "$(now) - $t0" | bc -l)
say "ANALYZE pts ${analyze_s}s"
for n in $KEYS; do key_plans+=("$n ids: after ANALYZE pts: $(join_node "$(key_join "$n")")"); done
for n in $KEYS; do
  "${PSQL[@]}" -c "ALTER SERVER carto OPTIONS (ADD fdw_startup_cost '10')"
  key_plans+=("$n ids: after ANALYZE pts, fdw_startup_cost '10': $(join_node "$(key_join "$n")")")
  "${PSQL[@]}" -c "ALTER SERVER carto OPTIONS (DROP fdw_startup_cost)"
done
printf '  %s\n' "${key_plans[@]}" >&2
key_rows=()
for n in $KEYS; do
  KEY_JOIN=$(key_join "$n")
  KEY_FULL="SELECT k.id, p.category, p.value, p.the_geom FROM keys_$n k JOIN (SELECT * FROM pts OFFSET 0) p ON p.cartodb_id = k.id"
  plan=$(explain "$KEY_JOIN")
  say "join of $n local ids, the planner's plan:"; printf '%s\n' "$plan" | sed 's/^/    /' >&2
  chosen=no forced=""
  if printf '%s\n' "$plan" | grep -q 'Remote SQL: .*\$[0-9]'; then chosen=yes; fi
  if [ "$chosen" = no ]; then
    # Measure the parameterized plan anyway, with the planner's other joins off for that statement.
    forced=", measured with enable_hashjoin and enable_mergejoin off"
    say "  not parameterized by default; forcing with enable_hashjoin = off, enable_mergejoin = off:"
    PGOPTIONS="$PGOPTIONS -c enable_hashjoin=off -c enable_mergejoin=off" explain "$KEY_JOIN" | sed 's/^/    /' >&2
  fi
  PGOPTIONS="$PGOPTIONS -c enable_hashjoin=off -c enable_mergejoin=off" explain "$KEY_JOIN" | grep -q 'Remote SQL: .*\$[0-9]' \
    || warn "the join of $n ids is not parameterized even with hash and merge joins off"
  k_param=$(PGOPTIONS="$PGOPTIONS -c enable_hashjoin=off -c enable_mergejoin=off" best_of "$KEY_JOIN ORDER BY 1" "$DIR/key-param.out")
  k_param_reqs=$(PGOPTIONS="$PGOPTIONS -c enable_hashjoin=off -c enable_mergejoin=off" requests "$KEY_JOIN")
  k_full=$(best_of "$KEY_FULL ORDER BY 1" "$DIR/key-full.out")
  k_full_reqs=$(requests "$KEY_FULL")
  k_same=$(same_files "$DIR/key-param.out" "$DIR/key-full.out")
  say "local ids $n: parameterized ${k_param}s ($k_param_reqs), full read ${k_full}s ($k_full_reqs), same: $k_same"
  csv "join $n local ids" "parameterized scan" "$k_param"
  csv "join $n local ids" "full read (OFFSET 0)" "$k_full"
  key_rows+=("| join of $n local ids on \`cartodb_id\`: parameterized foreign scan (planner's choice: $chosen$forced) vs full read | $(f3 "$k_param") ($k_param_reqs) | $(f3 "$k_full") ($k_full_reqs) | **$(ratio "$k_full" "$k_param")×** | | | $k_same |")
done

load_after=$(load)
say "load average after the run: $load_after"

# The CSV: this link's earlier rows are replaced.
touch "$BENCH_CSV"
grep -v ",$LABEL,[0-9.]*\$" "$BENCH_CSV" >"$DIR/csv.tmp" || true
printf '%s\n' "${CSV_ROWS[@]}" >>"$DIR/csv.tmp"
mv "$DIR/csv.tmp" "$BENCH_CSV"
png=${BENCH_CSV%.csv}.png
python3 "$HERE/plot.py" --seconds "$BENCH_CSV" "$png" >"$DIR/plot.md" || warn "plot.py failed"

cat <<EOF

Link: $LABEL (curl /copyto of cartodb_id, the_geom: $link_bytes bytes in $(f3 "$link_s") s, $(printf %.0f "$link_mbit") Mbit/s). Load average (1, 5, 15 min) after the run: $load_after.

| $ROWS points, $POLYS polygons, $LABEL | pushed (s) | local (s) | local / pushed | CARTO by curl (s) | pushed / curl | same result |
|---|---:|---:|---:|---:|---:|---|
| GROUP BY category (10 groups), count, avg | $(f3 "$g_push") | $(f3 "$g_local") | **$(ratio "$g_local" "$g_push")×** | $(f3 "$g_curl") | **$(ratio "$g_push" "$g_curl" 2)** | $g_same |
| count(*) | $(f3 "$c_push") | $(f3 "$c_local") | **$(ratio "$c_local" "$c_push")×** | | | |
| points in polygons (ST_Contains), count per polygon; local = (a) pull both sides ($(f3 "$j_pull") s, $pull_reqs) + GiST indexes and ANALYZE ($(f3 "$j_index") s) + local join ($(f3 "$j_join") s); shipped as one statement: $join_shipped | $(f3 "$j_push") | $(f3 "$j_total") | **$(ratio "$j_total" "$j_push")×** (pull alone $(ratio "$j_pull" "$j_push")×) | $(f3 "$j_curl") | $(ratio "$j_push" "$j_curl" 2) | $j_same |
| the same; local = (b) PostgreSQL's plan over the two foreign scans (nested loop), $SUBSET points in $(f3 "$n_time") s, **extrapolated** to $ROWS | $(f3 "$j_push") | $(printf %.1f "$n_extra") (extrapolated) | **$(printf %.0f "$(echo "$n_extra / $j_push" | bc -l)")×** | | | $n_same (on $SUBSET points) |
$(printf '%s\n' "${key_rows[@]}")

The spatial join: $j_groups polygons hold $j_points of the $ROWS points; CARTO's plan: $carto_nodes. ANALYZE pts took $(f3 "$analyze_s") s.
The planner's join of the local ids with pts (join node, "parameterized" when the foreign scan is):
$(printf -- '- %s\n' "${key_plans[@]}")
Goals (issue #12): pushed GROUP BY within 1.5× of curl: $(ratio "$g_push" "$g_curl" 2) → $([ "$(echo "$g_push <= 1.5 * $g_curl" | bc -l)" = 1 ] && echo met || echo NOT met); ≥10× faster than local aggregation: $(ratio "$g_local" "$g_push")× → $([ "$(echo "$g_local >= 10 * $g_push" | bc -l)" = 1 ] && echo met || echo NOT met); pushed spatial join ≥10× faster than pulling both sides (a): $(ratio "$j_total" "$j_push")× → $([ "$(echo "$j_total >= 10 * $j_push" | bc -l)" = 1 ] && echo met || echo NOT met).

Side by side from $BENCH_CSV (bench/plot.py --seconds; plot $png):

$(cat "$DIR/plot.md")
EOF
